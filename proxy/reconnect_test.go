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
// reconnects within its capped backoff (2s), so the first export after the
// upstream returns succeeds within a client's usual retry window. With
// gRPC's default backoff (1s growing by 1.6x to 120s) the attempts come about
// 1, 2.6, 5.2, 9.3, 15.8 and 26.3s after start-up, so after an 18s outage the
// first export would wait several seconds more.
func TestUpstreamReconnectsPromptly(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("waits through an 18s upstream outage")
	}
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
	tp := newTestProxy(t, targets)
	body, _ := payload(t, enrich.Traces, 1)

	// The outage: exports fail while the upstream is away.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	if _, err := tp.exportGRPC(ctx, enrich.Traces, body); err == nil {
		t.Fatal("export succeeded with the upstream down")
	}
	cancel()
	time.Sleep(18 * time.Second) // the outage's length is what is under test

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
	ctx, cancel = context.WithTimeout(context.Background(), 3500*time.Millisecond)
	defer cancel()
	// The client retries like an OTLP exporter would, on UNAVAILABLE.
	for {
		_, err := tp.exportGRPC(ctx, enrich.Traces, body, grpc.WaitForReady(true))
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no export accepted within 3.5s of the upstream's return: %v", err)
		}
	}
	t.Logf("first export accepted %v after the upstream returned", time.Since(back).Round(time.Millisecond))
}
