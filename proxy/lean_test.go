package proxy

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/podstamp/podstamp/enrich"
)

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// echoServer is a gRPC upstream on addr ("127.0.0.1:0" for any port) that
// answers every call with an empty message after wait (when set) returns.
func echoServer(t *testing.T, addr string, wait func(ctx context.Context)) (*grpc.Server, *countingListener) {
	t.Helper()
	inner, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ln := &countingListener{Listener: inner}
	srv := grpc.NewServer(grpc.ForceServerCodecV2(bytesCodec{}),
		grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
			var b []byte
			if err := stream.RecvMsg(&b); err != nil {
				return err
			}
			if wait != nil {
				wait(stream.Context())
			}
			resp := []byte{}
			return stream.SendMsg(&resp)
		}))
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return srv, ln
}

func leanTargets(addr string) [numSignals]Target {
	return SameTarget(Target{Protocol: ProtocolGRPC, Endpoint: "http://" + addr, Timeout: time.Minute, Transport: TransportLean})
}

// TestLeanReusesConnections: sequential exports of every signal share one
// upstream connection; concurrent ones use at most one each.
func TestLeanReusesConnections(t *testing.T) {
	_, ln := echoServer(t, "127.0.0.1:0", nil)
	tp := newTestProxy(t, leanTargets(ln.Addr().String()))
	for i := 0; i < 40; i++ {
		sig := enrich.Signals[i%len(enrich.Signals)]
		body, _ := payload(t, sig, 50)
		if _, err := tp.exportGRPC(context.Background(), sig, body); err != nil {
			t.Fatalf("export %d: %v", i, err)
		}
	}
	if n := ln.n.Load(); n != 1 {
		t.Fatalf("40 sequential exports opened %d upstream connections, want 1", n)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body, _ := payload(t, enrich.Traces, 200)
			for i := 0; i < 8; i++ {
				if _, err := tp.exportGRPC(context.Background(), enrich.Traces, body); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := ln.n.Load(); n > 1+8 {
		t.Errorf("8 concurrent senders opened %d upstream connections, want at most 9", n)
	}
}

// TestLeanUpstreamRestart: when the upstream goes away, abruptly or with
// GOAWAY, between two exports, the pooled connection is found dead before it
// is used and the next export succeeds on a new one.
func TestLeanUpstreamRestart(t *testing.T) {
	for _, graceful := range []bool{false, true} {
		name := "abrupt"
		if graceful {
			name = "goaway"
		}
		t.Run(name, func(t *testing.T) {
			srv, ln := echoServer(t, "127.0.0.1:0", nil)
			addr := ln.Addr().String()
			tp := newTestProxy(t, leanTargets(addr))
			body, _ := payload(t, enrich.Logs, 10)
			if _, err := tp.exportGRPC(context.Background(), enrich.Logs, body); err != nil {
				t.Fatal(err)
			}
			if graceful {
				// The idle connection answers the shutdown's PING within
				// a tending round; unanswered, the server waits 5s.
				start := time.Now()
				srv.GracefulStop()
				if d := time.Since(start); d > 3*time.Second {
					t.Errorf("the upstream's graceful stop took %v, held up by the idle connection", d.Round(time.Millisecond))
				}
			} else {
				srv.Stop()
			}
			_, ln2 := echoServer(t, addr, nil)
			for i := 0; i < 3; i++ {
				if _, err := tp.exportGRPC(context.Background(), enrich.Logs, body); err != nil {
					t.Fatalf("export %d after the restart: %v", i, err)
				}
			}
			if n := ln2.n.Load(); n != 1 {
				t.Errorf("the restarted upstream accepted %d connections, want 1", n)
			}
		})
	}
}

// TestLeanDeadlineAndCancel: the client's deadline reaches the upstream and
// ends the call there and at the client (DEADLINE_EXCEEDED); a cancelled
// client gets CANCELED; the connection of a call cut short is not reused,
// and the next export succeeds.
func TestLeanDeadlineAndCancel(t *testing.T) {
	var hold atomic.Bool
	sawDeadline := make(chan bool, 4)
	_, ln := echoServer(t, "127.0.0.1:0", func(ctx context.Context) {
		_, ok := ctx.Deadline()
		sawDeadline <- ok
		if hold.Load() {
			<-ctx.Done()
		}
	})
	tp := newTestProxy(t, leanTargets(ln.Addr().String()))
	body, _ := payload(t, enrich.Metrics, 10)

	hold.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err := tp.exportGRPC(ctx, enrich.Metrics, body)
	cancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("held past the deadline: %v, want DEADLINE_EXCEEDED", err)
	}
	if !<-sawDeadline {
		t.Error("the upstream saw no deadline")
	}

	ctx, cancel = context.WithCancel(context.Background())
	go func() {
		<-sawDeadline // the call reached the upstream
		cancel()
	}()
	_, err = tp.exportGRPC(ctx, enrich.Metrics, body)
	if status.Code(err) != codes.Canceled {
		t.Errorf("cancelled: %v, want CANCELED", err)
	}

	hold.Store(false)
	if _, err := tp.exportGRPC(context.Background(), enrich.Metrics, body); err != nil {
		t.Fatalf("export after the cut calls: %v", err)
	}
	<-sawDeadline
}

func TestLeanWireHelpers(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "1n", time.Nanosecond: "1n", 99999999: "99999999n", 100000000: "100000u",
		1500 * time.Millisecond: "1500000u", time.Minute: "60000000u", 2 * time.Hour: "7200000m",
	} {
		if got := grpcTimeout(d); got != want {
			t.Errorf("grpcTimeout(%v) = %q, want %q", d, got, want)
		}
	}
	for in, want := range map[string]string{"plain": "plain", "a%25b": "a%b", "caf%C3%A9": "café", "50%": "50%", "%zz": "%zz"} {
		if got := decodeGRPCMessage(in); got != want {
			t.Errorf("decodeGRPCMessage(%q) = %q, want %q", in, got, want)
		}
	}
	for _, ep := range []string{"unix:///tmp/sock", "dns:///no-port"} {
		if _, err := newLeanPool(ep, nil, "ua", defaultUpstreamBackoff); err == nil {
			t.Errorf("newLeanPool(%q) accepted", ep)
		}
	}
}

// TestLeanRedialBackoff: while the upstream refuses connections, a failed
// dial makes the next calls fail at once (UNAVAILABLE, naming the wait)
// instead of each dialling; once it is back, an export succeeds within the
// backoff's cap.
func TestLeanRedialBackoff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	b := defaultUpstreamBackoff
	b.BaseDelay, b.MaxDelay = 200*time.Millisecond, 400*time.Millisecond
	tp := newTestProxy(t, leanTargets(addr), func(c *Config, _ *Options) { c.UpstreamBackoff = b })
	body, _ := payload(t, enrich.Traces, 1)
	_, err = tp.exportGRPC(context.Background(), enrich.Traces, body)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("upstream down: %v, want UNAVAILABLE naming the refused connection", err)
	}
	_, err = tp.exportGRPC(context.Background(), enrich.Traces, body)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "next attempt in") {
		t.Fatalf("right after a failed dial: %v, want UNAVAILABLE without a dial", err)
	}
	echoServer(t, addr, nil)
	back := time.Now()
	for {
		_, err := tp.exportGRPC(context.Background(), enrich.Traces, body)
		if err == nil {
			break
		}
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("while redialling: %v", err)
		}
		if time.Since(back) > time.Duration(float64(b.MaxDelay)*(1+b.Jitter))+time.Second {
			t.Fatalf("no export accepted %v after the upstream returned: %v", time.Since(back).Round(time.Millisecond), err)
		}
		time.Sleep(20 * time.Millisecond) // a client's retry interval
	}
}

// TestLeanHeadersAsGRPC: static upstream headers, binary ones included,
// reach the upstream as grpc-go's client sends them.
func TestLeanHeadersAsGRPC(t *testing.T) {
	for name, mk := range map[string]func(testing.TB) *upstream{"grpc-upstream": newGRPCUpstream, "lean-upstream": newLeanUpstream} {
		t.Run(name, func(t *testing.T) {
			up := mk(t)
			targets := up.targets()
			for i := range targets {
				targets[i].Headers = map[string]string{"X-Tenant": "shop", "x-id-bin": "\x00\x01\xfe\xff"}
			}
			tp := newTestProxy(t, targets)
			body, _ := payload(t, enrich.Logs, 1)
			if _, err := tp.exportGRPC(context.Background(), enrich.Logs, body); err != nil {
				t.Fatal(err)
			}
			md := up.next(t).header
			if got := md["x-tenant"]; len(got) != 1 || got[0] != "shop" {
				t.Errorf("x-tenant %q", got)
			}
			if got := md["x-id-bin"]; len(got) != 1 || got[0] != "\x00\x01\xfe\xff" {
				t.Errorf("x-id-bin %q", got)
			}
			if ua := md["user-agent"]; len(ua) == 0 || !strings.HasPrefix(ua[0], "podstamp/") {
				t.Errorf("user-agent %q", ua)
			}
		})
	}
}

// TestLeanCompressedAnswer: with gzip on the upstream leg, the upstream
// answers compressed too (gRPC answers in the call's encoding), and the
// client gets the answer's bytes.
func TestLeanCompressedAnswer(t *testing.T) {
	up := newLeanUpstream(t)
	targets := up.targets()
	for i := range targets {
		targets[i].Compression = "gzip"
	}
	answer := bytes.Repeat([]byte{0x0a, 0x03, 0x08, 0x05, 0x12}, 400) // compressible
	up.setAnswer(func(context.Context, received) upstreamAnswer { return upstreamAnswer{body: answer} })
	tp := newTestProxy(t, targets)
	body, _ := payload(t, enrich.Traces, 20)
	got, err := tp.exportGRPC(context.Background(), enrich.Traces, body)
	if err != nil {
		t.Fatal(err)
	}
	if r := up.next(t); !r.compressed {
		t.Error("the call went out uncompressed")
	}
	if !bytes.Equal(got, answer) {
		t.Errorf("client got %d bytes, want the upstream's %d", len(got), len(answer))
	}
}

// TestUpstreamAnswerLimit: an upstream answer over maxResponseBytes is
// refused (RESOURCE_EXHAUSTED), not read whole, on both gRPC transports.
func TestUpstreamAnswerLimit(t *testing.T) {
	for name, mk := range map[string]func(testing.TB) *upstream{"grpc-upstream": newGRPCUpstream, "lean-upstream": newLeanUpstream} {
		t.Run(name, func(t *testing.T) {
			up := mk(t)
			huge := make([]byte, maxResponseBytes+1)
			up.setAnswer(func(context.Context, received) upstreamAnswer { return upstreamAnswer{body: huge} })
			tp := newTestProxy(t, up.targets())
			body, _ := payload(t, enrich.Logs, 1)
			_, err := tp.exportGRPC(context.Background(), enrich.Logs, body)
			if status.Code(err) != codes.ResourceExhausted {
				t.Errorf("answer of %d bytes: %v, want RESOURCE_EXHAUSTED", len(huge), err)
			}
			up.next(t)
		})
	}
}

// TestLeanConcurrentDialFailuresCountOnce: dials that fail together put the
// next attempt off by one backoff step, not one step each.
func TestLeanConcurrentDialFailuresCountOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p, err := newLeanPool("dns:///"+addr, nil, "ua", defaultUpstreamBackoff)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			<-start
			if c, err := p.dial(context.Background()); err == nil {
				c.nc.Close()
				t.Error("dialled a closed port")
			}
		})
	}
	close(start)
	wg.Wait()
	p.dialMu.Lock()
	defer p.dialMu.Unlock()
	if p.failures != 1 {
		t.Errorf("8 dials failing together counted %d failures, want 1", p.failures)
	}
}
