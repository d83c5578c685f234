package proxy

import (
	"context"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/podstamp/podstamp/enrich"
)

// TestUpstreamReconnectsPromptly: after a long gRPC upstream outage, podstamp
// reconnects within its capped backoff, so the first export after the
// upstream returns succeeds within a client's usual retry window. The
// default backoff (100ms growing by 1.6x to 2s) runs here a tenth as fast:
// 10ms growing to 200ms, through an outage of 900ms (18s at full scale),
// after which the first export must be accepted within 350ms (3.5s). Without
// the cap the attempts would come about 10, 26, 52, 93, 158, 263, 431, 700
// and 1130ms after start-up, each waiting longer than the last.
func TestUpstreamReconnectsPromptly(t *testing.T) {
	t.Parallel()
	const scale = 10
	// A port below the ephemeral range: the proxy's own connection attempts
	// to a closed ephemeral port can connect to themselves and take it.
	var addr string
	for port := 20000 + os.Getpid()%5000; addr == ""; port++ {
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			addr = ln.Addr().String()
			ln.Close() // the upstream is down from the start
		}
	}

	var targets [numSignals]Target
	for _, sig := range enrich.Signals {
		targets[sig] = Target{Protocol: ProtocolGRPC, Endpoint: "http://" + addr, Timeout: time.Minute}
	}
	if def := DefaultConfig().UpstreamBackoff; def.MaxDelay != 2*time.Second || def.BaseDelay != 100*time.Millisecond {
		t.Fatalf("default backoff %+v: the scale of this test assumes 100ms to 2s", def)
	}
	tp := newTestProxy(t, targets, func(c *Config, _ *Options) {
		c.UpstreamBackoff = DefaultConfig().UpstreamBackoff
		c.UpstreamBackoff.BaseDelay /= scale
		c.UpstreamBackoff.MaxDelay /= scale
	})
	body, _ := payload(t, enrich.Traces, 1)

	// The outage: exports fail while the upstream is away.
	outage := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 18*time.Second/scale/2)
	if _, err := tp.exportGRPC(ctx, enrich.Traces, body); err == nil {
		t.Fatal("export succeeded with the upstream down")
	}
	cancel()
	time.Sleep(18*time.Second/scale - time.Since(outage)) // the outage's length is what is under test

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("upstream address %s taken meanwhile: %v", addr, err)
	}
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

	back := time.Now()
	ctx, cancel = context.WithTimeout(context.Background(), 3500*time.Millisecond/scale)
	defer cancel()
	// The client retries like an OTLP exporter would, on UNAVAILABLE.
	for {
		_, err := tp.exportGRPC(ctx, enrich.Traces, body, grpc.WaitForReady(true))
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no export accepted within %v of the upstream's return: %v", 3500*time.Millisecond/scale, err)
		}
	}
	t.Logf("first export accepted %v after the upstream returned", time.Since(back).Round(time.Millisecond))
}
