//go:build linux

package proxy

import (
	"context"
	"testing"
	"time"

	"github.com/podstamp/podstamp/enrich"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestReusePortHandover: a second proxy binds the ports of a running one
// (SO_REUSEPORT); the first drains while a client keeps exporting over one
// connection that reconnects, and no export fails: the client moves to the
// second proxy.
func TestReusePortHandover(t *testing.T) {
	up := newGRPCUpstream(t)
	// Everything the upstream sees is drained here: the loop below sends
	// more than the recorder's buffer holds.
	stopDrain := make(chan struct{})
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for {
			select {
			case <-up.got:
			case <-stopDrain:
				return
			}
		}
	}()
	defer func() { close(stopDrain); <-drained }()

	old := newTestProxy(t, up.targets(), func(c *Config, _ *Options) { c.KeepAliveDrain = DefaultConfig().KeepAliveDrain })
	addr := old.GRPCAddr().String()
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(bytesCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	body, _ := payload(t, enrich.Traces, 1)
	export := func() error {
		var resp []byte
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return cc.Invoke(ctx, signals[enrich.Traces].method, &body, &resp)
	}
	// The client's connection is to the old proxy: it is alone on the port.
	if err := export(); err != nil {
		t.Fatal(err)
	}

	next := newTestProxy(t, up.targets(), func(c *Config, _ *Options) {
		c.GRPCListen, c.HTTPListen = addr, old.HTTPAddr().String()
	})

	// Exports while the old proxy serves, while it drains, and after.
	sent, failed := 0, 0
	exp := func() {
		if err := export(); err != nil {
			failed++
			t.Errorf("export %d failed during the handover: %v", sent, err)
		}
		sent++
	}
	for range 20 {
		exp()
	}
	old.cancel() // the old proxy drains
	for stopped := false; !stopped; {
		select {
		case err := <-old.done:
			close(old.done)
			if err != nil {
				t.Fatalf("old proxy: %v", err)
			}
			stopped = true
		default:
			exp()
		}
	}
	for range 50 {
		exp()
	}

	ok := map[string]string{"signal": "traces", "protocol": "grpc", "outcome": "ok"}
	oldN, nextN := counterValue(t, old, "podstamp_requests_total", ok), counterValue(t, next, "podstamp_requests_total", ok)
	if failed != 0 || oldN < 21 || nextN < 50 || oldN+nextN != float64(sent+1) {
		t.Errorf("sent %d+1, failed %d; the old proxy forwarded %v, the new one %v", sent, failed, oldN, nextN)
	}
}
