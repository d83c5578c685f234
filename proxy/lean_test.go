package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
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
	return echoOn(t, inner, wait)
}

// echoOn is echoServer on a listener of the caller's.
func echoOn(t *testing.T, inner net.Listener, wait func(ctx context.Context)) (*grpc.Server, *countingListener) {
	t.Helper()
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
	addrs, err := p.addresses(context.Background())
	if err != nil || len(addrs) != 1 {
		t.Fatalf("addresses of %s: %v %v", addr, addrs, err)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			<-start
			if c, err := p.dial(context.Background(), addrs[0]); err == nil {
				c.nc.Close()
				t.Error("dialled a closed port")
			}
		})
	}
	close(start)
	wg.Wait()
	p.dialMu.Lock()
	defer p.dialMu.Unlock()
	if n := addrs[0].retry.failures; n != 1 {
		t.Errorf("8 dials failing together counted %d failures, want 1", n)
	}
}

// setResolver makes the pool resolve its host with lookup, again every
// every and, after a failure, soon.
func (p *leanPool) setResolver(lookup func(ctx context.Context, host string) ([]string, error), every, soon time.Duration) {
	p.dialMu.Lock()
	defer p.dialMu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lookup, p.resolveEvery, p.resolveSoon = lookup, every, soon
}

// fakeDNS answers lookups of one name with the addresses last set, and
// counts them.
type fakeDNS struct {
	mu    sync.Mutex
	hosts []string
	err   error
	calls atomic.Int32
}

func (d *fakeDNS) set(err error, hosts ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.hosts, d.err = hosts, err
}

func (d *fakeDNS) lookup(_ context.Context, host string) ([]string, error) {
	d.calls.Add(1)
	d.mu.Lock()
	defer d.mu.Unlock()
	if host != "collectors.test" {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return slices.Clone(d.hosts), d.err
}

// loopbackUpstreams starts an echo server on each of ips (addresses of
// 127.0.0.0/8) on one port, and returns the port and each server's call
// count.
func loopbackUpstreams(t *testing.T, ips ...string) (string, []*atomic.Int32, []*grpc.Server) {
	t.Helper()
	noProxyEnv(t) // the upstreams' name is the tests' own
	for attempt := 0; ; attempt++ {
		probe, err := net.Listen("tcp", ips[0]+":0")
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(probe.Addr().String())
		probe.Close()
		free := true
		for _, ip := range ips {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, port))
			if err != nil {
				free = false
				break
			}
			l.Close()
		}
		if !free && attempt < 10 {
			continue
		}
		calls := make([]*atomic.Int32, len(ips))
		srvs := make([]*grpc.Server, len(ips))
		for i, ip := range ips {
			n := new(atomic.Int32)
			calls[i] = n
			srvs[i], _ = echoServer(t, net.JoinHostPort(ip, port), func(context.Context) { n.Add(1) })
		}
		return port, calls, srvs
	}
}

func counts(calls []*atomic.Int32) []int32 {
	out := make([]int32, len(calls))
	for i, c := range calls {
		out[i] = c.Load()
	}
	return out
}

// collectorsTargets sends every signal to the lean upstream
// collectors.test on port.
func collectorsTargets(port string) [numSignals]Target {
	return SameTarget(Target{Protocol: ProtocolGRPC, Endpoint: "http://collectors.test:" + port, Timeout: time.Minute, Transport: TransportLean})
}

// namedLeanProxy is a test proxy forwarding to collectors.test on port,
// whose name dns resolves, again every every (soon after a failure).
func namedLeanProxy(t *testing.T, port string, dns *fakeDNS, every, soon time.Duration) (*testProxy, *leanPool) {
	t.Helper()
	tp := newTestProxy(t, collectorsTargets(port))
	pool := leanPoolOf(t, tp)
	pool.setResolver(dns.lookup, every, soon)
	return tp, pool
}

// leanPoolOf is the connection pool of the proxy's lean exporters.
func leanPoolOf(t *testing.T, tp *testProxy) *leanPool {
	t.Helper()
	e, ok := tp.up.bySignal[enrich.Traces].(*leanExporter)
	if !ok {
		t.Fatalf("the traces exporter is %T, want the lean one", tp.up.bySignal[enrich.Traces])
	}
	return e.pool
}

// TestLeanRoundRobin: an upstream name that resolves to several addresses
// (a headless Service) gets its calls round-robin, one address after the
// other, as grpc-go's round_robin policy sends them, even when calls come
// one at a time; each address keeps one connection.
func TestLeanRoundRobin(t *testing.T) {
	ips := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}
	port, calls, _ := loopbackUpstreams(t, ips...)
	dns := &fakeDNS{}
	dns.set(nil, "127.0.0.4", "127.0.0.2", "127.0.0.3", "127.0.0.2")
	tp, _ := namedLeanProxy(t, port, dns, time.Hour, time.Hour)
	body, _ := payload(t, enrich.Traces, 5)
	for i := range 30 {
		if _, err := tp.exportGRPC(context.Background(), enrich.Traces, body); err != nil {
			t.Fatalf("export %d: %v", i, err)
		}
	}
	if got := counts(calls); !slices.Equal(got, []int32{10, 10, 10}) {
		t.Errorf("30 sequential calls per address: %v, want 10 each", got)
	}
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			for range 10 {
				if _, err := tp.exportGRPC(context.Background(), enrich.Traces, body); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for i, n := range counts(calls) {
		if n < 25 || n > 35 {
			t.Errorf("%s got %d of 90 calls, want about 30", ips[i], n)
		}
	}
	if n := dns.calls.Load(); n != 1 {
		t.Errorf("resolved %d times, want once", n)
	}
}

// TestLeanReresolves: the name is resolved again while calls go on; an
// address that appears gets calls, one that disappears gets none and its
// idle connections are closed.
func TestLeanReresolves(t *testing.T) {
	ips := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}
	port, calls, _ := loopbackUpstreams(t, ips...)
	dns := &fakeDNS{}
	dns.set(nil, "127.0.0.2", "127.0.0.3")
	tp, pool := namedLeanProxy(t, port, dns, 100*time.Millisecond, 100*time.Millisecond)
	body, _ := payload(t, enrich.Traces, 5)
	export := func() {
		t.Helper()
		if _, err := tp.exportGRPC(context.Background(), enrich.Traces, body); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		export()
	}
	if got := counts(calls); !slices.Equal(got, []int32{2, 2, 0}) {
		t.Fatalf("calls before the change: %v, want [2 2 0]", got)
	}
	dns.set(nil, "127.0.0.3", "127.0.0.4")
	deadline := time.Now().Add(10 * time.Second)
	for calls[2].Load() == 0 { // the next resolution comes within a tending round
		if time.Now().After(deadline) {
			t.Fatalf("no call reached the new address in 10s (calls %v)", counts(calls))
		}
		export()
	}
	before := counts(calls)
	for range 10 {
		export()
	}
	after := counts(calls)
	if after[0] != before[0] || after[1]-before[1] != 5 || after[2]-before[2] != 5 {
		t.Errorf("10 calls after the change went %v -> %v, want none to the address gone and 5 to each other", before, after)
	}
	pool.mu.Lock()
	defer pool.mu.Unlock()
	for _, a := range pool.addrs {
		if strings.HasPrefix(a.addr, "127.0.0.2:") {
			t.Errorf("the address gone is still in the pool")
		}
	}
}

// TestLeanSkipsUnreachableAddress: an address that refuses connections is
// skipped (the call goes to the next one) and then left alone during its
// backoff; with none reachable, calls fail UNAVAILABLE naming the failure.
// A name that does not resolve fails the call the same way, and is not
// looked up again until its backoff has passed.
func TestLeanSkipsUnreachableAddress(t *testing.T) {
	port, calls, srvs := loopbackUpstreams(t, "127.0.0.2", "127.0.0.3")
	srvs[0].Stop()
	dns := &fakeDNS{}
	dns.set(nil, "127.0.0.2", "127.0.0.3")
	tp, pool := namedLeanProxy(t, port, dns, time.Hour, time.Hour)
	body, _ := payload(t, enrich.Traces, 5)
	for i := range 10 {
		if _, err := tp.exportGRPC(context.Background(), enrich.Traces, body); err != nil {
			t.Fatalf("export %d with one address down: %v", i, err)
		}
	}
	if n := calls[1].Load(); n != 10 {
		t.Errorf("the reachable address got %d of 10 calls", n)
	}
	pool.dialMu.Lock()
	failures := pool.addrs[0].retry.failures
	pool.dialMu.Unlock()
	if failures != 1 {
		t.Errorf("the unreachable address failed %d dials, want 1 (then skipped during its backoff)", failures)
	}
	srvs[1].Stop()
	_, err := tp.exportGRPC(context.Background(), enrich.Traces, body)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "none of 2 addresses") {
		t.Errorf("every address down: %v, want UNAVAILABLE naming both", err)
	}

	dns2 := &fakeDNS{}
	dns2.set(&net.DNSError{Err: "server misbehaving", Name: "collectors.test", IsTemporary: true})
	tp2, _ := namedLeanProxy(t, port, dns2, time.Hour, time.Hour)
	for i, want := range []string{"server misbehaving", "next attempt in"} {
		_, err := tp2.exportGRPC(context.Background(), enrich.Traces, body)
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), want) {
			t.Errorf("call %d, name not resolved: %v, want UNAVAILABLE with %q", i, err, want)
		}
	}
	if n := dns2.calls.Load(); n != 1 {
		t.Errorf("looked up %d times within the backoff, want once", n)
	}
}

// holdingServer is an echoServer that holds every call until release is
// closed (or the call ends), telling arrived of each.
func holdingServer(t *testing.T) (ln *countingListener, arrived <-chan struct{}, release chan struct{}) {
	t.Helper()
	release = make(chan struct{})
	got := make(chan struct{}, 16)
	_, ln = echoServer(t, "127.0.0.1:0", func(ctx context.Context) {
		got <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
	})
	return ln, got, release
}

// TestLeanActiveConnectionsBounded: the calls in progress on one upstream,
// each on a connection of its own, are bounded; a call beyond waits for one
// to finish and, when its deadline comes first, fails DEADLINE_EXCEEDED
// (which exporters retry) without opening a connection.
func TestLeanActiveConnectionsBounded(t *testing.T) {
	ln, arrived, release := holdingServer(t)
	p, err := newLeanPool("dns:///"+ln.Addr().String(), nil, "ua", defaultUpstreamBackoff)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	p.active = make(chan struct{}, 3)
	e := &leanExporter{pool: p, method: signals[enrich.Traces].method, timeout: time.Minute, maxSend: 1 << 20}
	body, _ := payload(t, enrich.Traces, 5)
	call := func(ctx context.Context) error {
		_, err := e.export(ctx, mem.BufferSlice{mem.SliceBuffer(bytes.Clone(body))}, nil)
		return err
	}
	errs := make(chan error, 5)
	for range 3 {
		go func() { errs <- call(context.Background()) }()
	}
	for range 3 {
		<-arrived
	}
	for range 2 {
		go func() { errs <- call(context.Background()) }()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	err = call(ctx)
	cancel()
	if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "one of the 3 upstream connections") {
		t.Errorf("a call beyond the bound: %v, want DEADLINE_EXCEEDED while waiting for a connection", err)
	}
	close(release)
	for range 5 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := ln.n.Load(); n != 3 {
		t.Errorf("the upstream accepted %d connections, want 3", n)
	}
}

// noProxyEnv clears the proxy settings of the environment for the test.
func noProxyEnv(t *testing.T) {
	for _, k := range []string{"HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"} {
		t.Setenv(k, "")
	}
}

// connectProxy is an HTTP proxy that serves CONNECT only: it checks the
// credentials, dials what the tunnel names (with name mapped through
// names), and copies bytes both ways. It records the authorities asked
// for.
type connectProxy struct {
	ln    net.Listener
	auth  string // the Proxy-Authorization it requires
	names map[string]string
	mu    sync.Mutex
	asked []string
}

func newConnectProxy(t *testing.T, auth string, names map[string]string) *connectProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp := &connectProxy{ln: ln, auth: auth, names: names}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { cp.serve(c) })
		}
	})
	return cp
}

func (cp *connectProxy) serve(c net.Conn) {
	defer c.Close()
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil {
		return
	}
	cp.mu.Lock()
	cp.asked = append(cp.asked, req.Host)
	cp.mu.Unlock()
	if req.Method != http.MethodConnect || req.Header.Get("Proxy-Authorization") != cp.auth {
		io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
		return
	}
	host, port, _ := net.SplitHostPort(req.Host)
	if ip, ok := cp.names[host]; ok {
		host = ip
	}
	up, err := net.Dial("tcp", net.JoinHostPort(host, port))
	if err != nil {
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer up.Close()
	io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	done := make(chan struct{})
	go func() { io.Copy(up, c); up.(*net.TCPConn).CloseWrite(); close(done) }()
	io.Copy(c, up)
	c.(*net.TCPConn).CloseWrite()
	<-done
}

// TestLeanThroughProxy: with HTTPS_PROXY set, as grpc-go's client does,
// the lean client tunnels through the proxy (CONNECT naming the upstream's
// host, credentials as Basic Proxy-Authorization) and leaves the name to
// it; NO_PROXY and loopback upstreams go direct; a proxy that refuses the
// tunnel fails the call UNAVAILABLE naming its answer; a proxy URL of
// another scheme is refused at start.
func TestLeanThroughProxy(t *testing.T) {
	_, ln := echoServer(t, "127.0.0.1:0", nil)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	cp := newConnectProxy(t, "Basic "+base64.StdEncoding.EncodeToString([]byte("otel:s3cret")),
		map[string]string{"collectors.test": "127.0.0.1"})
	body, _ := payload(t, enrich.Traces, 5)

	noProxyEnv(t)
	t.Setenv("HTTPS_PROXY", "http://otel:s3cret@"+cp.ln.Addr().String())
	tp := newTestProxy(t, collectorsTargets(port))
	for i := range 3 {
		if _, err := tp.exportGRPC(context.Background(), enrich.Traces, body); err != nil {
			t.Fatalf("export %d through the proxy: %v", i, err)
		}
	}
	cp.mu.Lock()
	asked := slices.Clone(cp.asked)
	cp.mu.Unlock()
	if !slices.Equal(asked, []string{"collectors.test:" + port}) {
		t.Errorf("the proxy was asked for %v, want one tunnel to collectors.test:%s", asked, port)
	}

	t.Setenv("HTTPS_PROXY", "http://otel:wrong@"+cp.ln.Addr().String())
	tp = newTestProxy(t, collectorsTargets(port))
	_, err := tp.exportGRPC(context.Background(), enrich.Traces, body)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "407") || strings.Contains(err.Error(), "wrong") {
		t.Errorf("proxy refusing the tunnel: %v, want UNAVAILABLE naming its 407, without the password", err)
	}

	t.Setenv("NO_PROXY", "collectors.test")
	if p, err := newLeanPool("dns:///collectors.test:"+port, nil, "ua", defaultUpstreamBackoff); err != nil || p.proxy != nil {
		t.Errorf("NO_PROXY naming the host: proxy %v, %v; want direct", p.proxy, err)
	} else {
		p.close()
	}
	t.Setenv("NO_PROXY", "")
	if p, err := newLeanPool("dns:///127.0.0.1:"+port, nil, "ua", defaultUpstreamBackoff); err != nil || p.proxy != nil {
		t.Errorf("loopback upstream: proxy %v, %v; want direct", p.proxy, err)
	} else {
		p.close()
	}
	t.Setenv("HTTPS_PROXY", "socks5://"+cp.ln.Addr().String())
	if _, err := newLeanPool("dns:///collectors.test:"+port, nil, "ua", defaultUpstreamBackoff); err == nil || !strings.Contains(err.Error(), "http:// proxies only") {
		t.Errorf("a socks5 proxy: %v, want refused", err)
	}
}

// TestAutoTransport: TransportAuto forwards on the lean transport to a
// host:port endpoint and on grpc-go's client to a unix socket, which the
// lean transport cannot dial; exports through the proxy reach both.
func TestAutoTransport(t *testing.T) {
	_, tcp := echoServer(t, "127.0.0.1:0", nil)
	sock := filepath.Join(t.TempDir(), "upstream.sock")
	inner, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	_, unix := echoOn(t, inner, nil)

	for _, c := range []struct {
		endpoint string
		ln       *countingListener
		lean     bool
	}{
		{"http://" + tcp.Addr().String(), tcp, true},
		{"dns:///" + tcp.Addr().String(), tcp, true},
		{"unix:" + sock, unix, false},
	} {
		t.Run(c.endpoint, func(t *testing.T) {
			targets := SameTarget(Target{Protocol: ProtocolGRPC, Endpoint: c.endpoint, Insecure: true, Timeout: time.Minute, Transport: TransportAuto})
			if got := targets[enrich.Traces].GRPCClient(); (got == TransportLean) != c.lean {
				t.Errorf("GRPCClient() = %q, want lean: %v", got, c.lean)
			}
			tp := newTestProxy(t, targets)
			for _, sig := range enrich.Signals {
				_, isLean := tp.up.bySignal[sig].(*leanExporter)
				if isLean != c.lean {
					t.Fatalf("%s exporter is %T, want lean: %v", sig, tp.up.bySignal[sig], c.lean)
				}
			}
			before := c.ln.n.Load()
			body, _ := payload(t, enrich.Logs, 10)
			if _, err := tp.exportGRPC(context.Background(), enrich.Logs, body); err != nil {
				t.Fatalf("export: %v", err)
			}
			if c.ln.n.Load() == before && c.lean {
				t.Errorf("the lean export opened no connection to the upstream")
			}
		})
	}
	if unix.n.Load() == 0 {
		t.Error("the unix socket upstream accepted no connection")
	}
}

// TestLeanUpstreamBoundThroughIngress: the bound on calls in progress to one
// upstream, attacked through podstamp's gRPC listener: exports beyond it
// wait for a connection instead of dialling more, one whose deadline passes
// meanwhile gets DEADLINE_EXCEEDED (which OTLP clients retry), and the ones
// that waited are forwarded once connections are free.
func TestLeanUpstreamBoundThroughIngress(t *testing.T) {
	ln, arrived, release := holdingServer(t)
	tp := newTestProxy(t, leanTargets(ln.Addr().String()))
	e := tp.up.bySignal[enrich.Traces].(*leanExporter)
	e.pool.active = make(chan struct{}, 3) // before any export: 512 in podstamp
	body, _ := payload(t, enrich.Traces, 5)
	errs := make(chan error, 5)
	for range 3 {
		go func() { _, err := tp.exportGRPC(context.Background(), enrich.Traces, body); errs <- err }()
	}
	for range 3 {
		<-arrived
	}
	for range 2 {
		go func() { _, err := tp.exportGRPC(context.Background(), enrich.Traces, body); errs <- err }()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err := tp.exportGRPC(ctx, enrich.Traces, body)
	cancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("an export beyond the bound: %v, want DEADLINE_EXCEEDED", err)
	}
	// The client gives up when its deadline passes; podstamp's side of the
	// call may still be waiting. Release the upstream once it is done (3
	// calls upstream, 2 waiting), or that call could take a freed
	// connection just as its deadline passes and close it mid-call.
	for until := time.Now().Add(10 * time.Second); counterValue(t, tp, "podstamp_inflight_requests", nil) != 5; {
		if time.Now().After(until) {
			t.Fatalf("podstamp has %v exports in flight, want 5", counterValue(t, tp, "podstamp_inflight_requests", nil))
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case <-arrived:
		t.Error("the upstream got a call beyond the bound")
	default:
	}
	close(release)
	for range 5 {
		if err := <-errs; err != nil {
			t.Errorf("an export that waited for a connection: %v", err)
		}
	}
	if n := ln.n.Load(); n != 3 {
		t.Errorf("the upstream accepted %d connections, want 3", n)
	}
}
