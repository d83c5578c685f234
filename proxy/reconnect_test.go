package proxy

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/podstamp/podstamp/enrich"
)

// gateListener is an upstream that is down (every connection is closed at
// accept, and its time reported) until up is set.
type gateListener struct {
	net.Listener
	up       atomic.Bool
	attempts chan time.Time
}

func (l *gateListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil || l.up.Load() {
			return c, err
		}
		c.Close()
		select {
		case l.attempts <- time.Now():
		default:
		}
	}
}

// TestUpstreamReconnectsPromptly: through a long gRPC upstream outage
// podstamp keeps redialling within its capped backoff, so the first export
// after the upstream returns succeeds within a client's usual retry window.
// The default backoff (100ms growing by 1.6x to 2s) runs here a tenth as
// fast, through an outage of at least 1.8s (18s at full scale) that ends
// just after an attempt. The next attempt is due within the cap and its
// jitter (240ms); the first export must be accepted within 250ms more, for
// the connection and the export, which do not scale. With gRPC's default
// backoff (1s growing by 1.6x to 120s) at the same scale, the attempts would
// come about 0.1, 0.26, 0.52, 0.93, 1.58, 2.63 and 4.3s after start-up: the
// outage would end at 2.63s and the next attempt come 1.7s later.
func TestUpstreamReconnectsPromptly(t *testing.T) {
	t.Parallel()
	const scale = 10
	def := DefaultConfig().UpstreamBackoff
	if def.MaxDelay != 2*time.Second || def.BaseDelay != 100*time.Millisecond {
		t.Fatalf("default backoff %+v: the scale of this test assumes 100ms to 2s", def)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &gateListener{Listener: inner, attempts: make(chan time.Time, 64)}
	srv := grpc.NewServer(grpc.ForceServerCodecV2(bytesCodec{}),
		grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
			var b []byte
			if err := stream.RecvMsg(&b); err != nil {
				return err
			}
			resp := []byte{}
			return stream.SendMsg(&resp)
		}))
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Stop(); <-done })

	var targets [numSignals]Target
	for _, sig := range enrich.Signals {
		targets[sig] = Target{Protocol: ProtocolGRPC, Endpoint: "http://" + inner.Addr().String(), Timeout: time.Minute}
	}
	backoff := def
	backoff.BaseDelay /= scale
	backoff.MaxDelay /= scale
	tp := newTestProxy(t, targets, func(c *Config, _ *Options) { c.UpstreamBackoff = backoff })
	body, _ := payload(t, enrich.Traces, 1)

	// The outage: exports fail, and podstamp's connection attempts come no
	// further apart than the cap (plus its jitter and some scheduling).
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	if _, err := tp.exportGRPC(ctx, enrich.Traces, body); err == nil {
		t.Fatal("export succeeded with the upstream down")
	}
	cancel()
	maxGap := time.Duration(float64(backoff.MaxDelay)*(1+backoff.Jitter)) + 100*time.Millisecond
	last, n := start, 0
	for last.Sub(start) < 18*time.Second/scale {
		select {
		case at := <-ln.attempts:
			if gap := at.Sub(last); n > 0 && gap > maxGap {
				t.Errorf("connection attempts %v apart during the outage, want at most %v", gap.Round(time.Millisecond), maxGap)
			}
			last, n = at, n+1
		case <-time.After(2 * maxGap):
			t.Fatalf("no connection attempt for %v after %d", 2*maxGap, n)
		}
	}
	t.Logf("%d connection attempts in an outage of %v", n, last.Sub(start).Round(time.Millisecond))

	ln.up.Store(true)
	back := time.Now()
	within := time.Duration(float64(backoff.MaxDelay)*(1+backoff.Jitter)) + 250*time.Millisecond
	ctx, cancel = context.WithTimeout(context.Background(), within)
	defer cancel()
	// The client retries like an OTLP exporter would, on UNAVAILABLE.
	for {
		_, err := tp.exportGRPC(ctx, enrich.Traces, body, grpc.WaitForReady(true))
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no export accepted within %v of the upstream's return: %v", within, err)
		}
	}
	t.Logf("first export accepted %v after the upstream returned", time.Since(back).Round(time.Millisecond))
}
