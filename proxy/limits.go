package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/podstamp/podstamp/enrich"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// Request-size defaults: no larger than what the OpenTelemetry Collector's
// OTLP receiver accepts by default, so nothing podstamp takes in is refused
// by a Collector behind it for its size.
const (
	// confighttp: defaultMaxRequestBodySize = 20 * 1024 * 1024 (server.go,
	// go.opentelemetry.io/collector/config/confighttp v1.71.0).
	defaultMaxRequestBytes = 20 << 20
	// configgrpc sets grpc.MaxRecvMsgSize only when max_recv_msg_size_mib is
	// set, so the receiver keeps grpc-go's
	// defaultServerMaxReceiveMessageSize = 1024 * 1024 * 4 (server.go,
	// google.golang.org/grpc v1.85.0).
	defaultMaxGRPCRequestBytes = 4 << 20
	// JSON costs far more to decode than its size: see jsonDecodeCost.
	defaultMaxJSONRequestBytes = 4 << 20
)

// Resource defaults; doc.go states the worst cases they lead to.
const (
	// The in-flight budget: the chart's limit is 256Mi; podstamp at rest
	// takes ~30 MiB, idle connections up to ~18 MiB (below), and the heap
	// may grow 40% past what is live before a collection (GOGC 40): 64 MiB
	// of requests in flight (~90 MiB of heap) stays clear of the limit, and
	// still holds one of the largest HTTP requests (body and forwarding
	// copy: 2 × 20 MiB) with room for others, or eight gRPC streams'
	// reservations at once.
	defaultMaxInflightBytes = 64 << 20
	// An idle accepted gRPC connection costs ~21 KiB (measured: three
	// goroutines, HTTP/2 state; it reads into a pooled buffer only when
	// bytes have arrived, capConn.ReadOnReady; it was ~85 KiB with a read
	// buffer of its own), an HTTP one ~14 KiB: 512 on each listener are
	// ~18 MiB, so 10,000 idle connections attempted at once stay within
	// 128 MiB with the heap's headroom; the rest are closed at accept. A node's 110 pods with an exporter per signal use
	// about 330 on a listener.
	defaultMaxConnections = 512
	// Pods have addresses of their own; only host-network pods share one.
	defaultMaxConnectionsPerPeer = 128
	// An exporter sends one request at a time per signal by default; a
	// Collector's exporter queue 10 per signal.
	defaultMaxRequestsPerPeer = 64
	// Above the Collector exporter's 10 consumers, well below gRPC's
	// unlimited default.
	defaultMaxStreamsPerConnection = 32
)

// retryAfter is the delay podstamp's own retryable refusals ask for.
const retryAfter = time.Second

// Reasons for refusing a request or connection (podstamp_rejected_total).
const (
	rejectBudget             = iota // the in-flight byte budget is spent
	rejectPerPeer                   // the peer has MaxRequestsPerPeer requests in flight
	rejectConnections               // the listener has MaxConnections connections
	rejectConnectionsPerPeer        // the peer has MaxConnectionsPerPeer connections
	rejectReadTimeout               // a request's body did not arrive within ReadTimeout
	rejectPerPeerBytes              // the peer holds MaxInflightBytesPerPeer of the budget
	numRejects
)

var rejectNames = [numRejects]string{"budget", "per_peer", "connections", "connections_per_peer", "read_timeout", "per_peer_bytes"}

var (
	errOverBudget  = errors.New("over the in-flight byte budget")
	errReadTimeout = errors.New("request body not received within the read timeout")
)

// limits are the proxy's bounds on what requests and connections may take.
type limits struct {
	budget          budget
	maxPeerBytes    int64 // of the budget, one peer address's share
	maxJSON         int64 // effective JSON limit: min(MaxJSONRequestBytes, MaxRequestBytes)
	grpcReserve     int64 // taken per gRPC stream before its message is read
	maxConns        int
	maxConnsPerPeer int
	maxPeerRequests int32
	readTimeout     time.Duration
	rejected        [numRejects]prometheus.Counter
	busy            [numRejects]*status.Status // retryable refusals: budget, per peer, per peer bytes

	mu        sync.Mutex
	peers     map[netip.Addr]*peerState
	grpcConns map[*capConn]struct{} // for sweepAll
}

// applyLimitDefaults fills the limit settings left zero.
func (c *Config) applyLimitDefaults() {
	setDefault(&c.MaxRequestBytes, defaultMaxRequestBytes)
	setDefault(&c.MaxGRPCRequestBytes, defaultMaxGRPCRequestBytes)
	setDefault(&c.MaxJSONRequestBytes, defaultMaxJSONRequestBytes)
	setDefault(&c.MaxInflightBytes, defaultMaxInflightBytes)
	setDefault(&c.MaxConnections, defaultMaxConnections)
	setDefault(&c.MaxConnectionsPerPeer, defaultMaxConnectionsPerPeer)
	setDefault(&c.MaxRequestsPerPeer, defaultMaxRequestsPerPeer)
	setDefault(&c.MaxStreamsPerConnection, defaultMaxStreamsPerConnection)
}

func setDefault[T int | int64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

func newLimits(cfg Config, reg prometheus.Registerer) (*limits, error) {
	l := &limits{
		maxJSON:         min(cfg.MaxJSONRequestBytes, cfg.MaxRequestBytes),
		grpcReserve:     grpcReservation(cfg.MaxGRPCRequestBytes),
		maxConns:        cfg.MaxConnections,
		maxConnsPerPeer: cfg.MaxConnectionsPerPeer,
		maxPeerRequests: int32(min(cfg.MaxRequestsPerPeer, 1<<30)),
		readTimeout:     cfg.ReadTimeout,
		peers:           map[netip.Addr]*peerState{},
		grpcConns:       map[*capConn]struct{}{},
	}
	l.budget.limit = cfg.MaxInflightBytes
	// One request of each kind must fit on its own, or it could never be
	// served and would be refused as retryable forever.
	need := max(l.grpcReserve, httpCost(cfg.MaxRequestBytes))
	if need > l.budget.limit {
		return nil, fmt.Errorf("MaxInflightBytes %d cannot hold one request of the largest size: it takes %d (gRPC: 2 × MaxGRPCRequestBytes; HTTP: 2 × MaxRequestBytes)", l.budget.limit, need)
	}
	// One address may hold only part of the budget, so a sender that keeps
	// it full (large requests, slow bodies) leaves room for every other pod.
	l.maxPeerBytes = cfg.MaxInflightBytesPerPeer
	if l.maxPeerBytes <= 0 {
		l.maxPeerBytes = max(l.budget.limit/2, need)
	}
	if l.maxPeerBytes < need {
		return nil, fmt.Errorf("MaxInflightBytesPerPeer %d cannot hold one request of the largest size: it takes %d", l.maxPeerBytes, need)
	}
	l.maxPeerBytes = min(l.maxPeerBytes, l.budget.limit)
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podstamp_rejected_total",
		Help: "Requests and connections refused for lack of resources, by reason: budget (the in-flight byte budget), per_peer (concurrent requests of one peer address), connections and connections_per_peer (closed at accept), read_timeout (a body slower than the read timeout).",
	}, []string{"reason"})
	inflight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "podstamp_inflight_bytes",
		Help: "Bytes of the in-flight budget held by requests now: bodies and the copies they need, and reservations of gRPC streams whose message is being received.",
	}, func() float64 { return float64(l.budget.used.Load()) })
	for _, c := range []prometheus.Collector{rejected, inflight} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for i := range numRejects {
		l.rejected[i] = rejected.WithLabelValues(rejectNames[i])
	}
	var err error
	if l.busy[rejectBudget], err = withRetryInfo(status.New(codes.ResourceExhausted,
		fmt.Sprintf("podstamp has %d bytes of requests in flight, its limit: retry later", l.budget.limit)), retryAfter); err != nil {
		return nil, err
	}
	if l.busy[rejectPerPeer], err = withRetryInfo(status.New(codes.ResourceExhausted,
		fmt.Sprintf("this address has %d requests in flight, podstamp's limit per peer: retry later", l.maxPeerRequests)), retryAfter); err != nil {
		return nil, err
	}
	if l.busy[rejectPerPeerBytes], err = withRetryInfo(status.New(codes.ResourceExhausted,
		fmt.Sprintf("this address has %d bytes of requests in flight, podstamp's limit per peer: retry later", l.maxPeerBytes)), retryAfter); err != nil {
		return nil, err
	}
	return l, nil
}

// grpcReservation is what a gRPC stream is charged before its message is
// read: the received message (compressed or not, at most max bytes, in the
// transport's buffers), and either its decompressed form or the contiguous
// copy the handler makes of it (at most max bytes again).
func grpcReservation(max int64) int64 { return 2 * pooledCap(int(max)) }

// httpCost is what an HTTP request with an n-byte body is charged, and a
// gRPC request once its n-byte message is in: the body in a pooled buffer,
// and the one copy forwarding may make of it (the stamped copy, or the
// body compressed for the upstream).
func httpCost(n int64) int64 { return pooledCap(int(n)) + forwardCost(n) }

func forwardCost(n int64) int64 { return pooledCap(int(n) + 4096) }

// jsonDecodeCost bounds what decoding a JSON request into pdata and
// encoding it as protobuf allocates, from a count of its objects and list
// items. Per '{' or ',' it measured 40-50 bytes for the exports SDKs send
// (2-3 times the JSON's size), and up to 205 bytes for requests made of
// empty objects or strings ({} exemplars, "" string tables): a JSON body of
// tiny items costs up to 136 times its size, which a factor on the size
// alone cannot bound without refusing ordinary requests.
func jsonDecodeCost(js []byte) int64 {
	return 256 * int64(bytes.Count(js, []byte{'{'})+bytes.Count(js, []byte{','}))
}

// peerState is what one peer address holds, over both listeners.
type peerState struct {
	addr     netip.Addr
	conns    int // under limits.mu
	requests atomic.Int32
	bytes    atomic.Int64 // of the budget
}

// acquire takes n bytes of the budget for peer ps (nil: no peer share
// applies), or returns why they do not fit: rejectPerPeerBytes or
// rejectBudget.
func (l *limits) acquire(ps *peerState, n int64) (int, bool) {
	if !l.budget.acquire(n) {
		return rejectBudget, false
	}
	if ps != nil && ps.bytes.Add(n) > l.maxPeerBytes {
		ps.bytes.Add(-n)
		l.budget.release(n)
		return rejectPerPeerBytes, false
	}
	return 0, true
}

// acquireWait is acquire that, when the bytes do not fit, waits up to
// budgetWait (or until done is closed) for others to give bytes back
// before it reports why they do not fit.
func (l *limits) acquireWait(ps *peerState, n int64, done <-chan struct{}) (int, bool) {
	why, ok := l.acquire(ps, n)
	if ok {
		return why, ok
	}
	b := &l.budget
	b.waiters.Add(1)
	defer b.waiters.Add(-1)
	timer := time.NewTimer(budgetWait)
	defer timer.Stop()
	for {
		freed := b.released()
		if why, ok = l.acquire(ps, n); ok {
			return why, ok
		}
		select {
		case <-freed:
		case <-timer.C:
			return l.acquire(ps, n)
		case <-done:
			return why, false
		}
	}
}

// release gives back n bytes acquired for ps.
func (l *limits) release(ps *peerState, n int64) {
	if ps != nil {
		ps.bytes.Add(-n)
	}
	l.budget.release(n)
}

// enter takes one of the peer's request slots.
func (ps *peerState) enter(max int32) bool {
	if ps.requests.Add(1) > max {
		ps.requests.Add(-1)
		return false
	}
	return true
}

func (ps *peerState) leave() { ps.requests.Add(-1) }

// capListener closes connections over its limits at accept: the listener's
// total and the peer address's. Accepting and closing at once is cheaper
// than leaving them in the kernel's queue, where they would wait for a
// slot that may never come.
type capListener struct {
	net.Listener
	l    *limits
	grpc bool
	n    int // open connections, under l.mu
}

func (l *limits) wrap(ln net.Listener, grpc bool) net.Listener {
	if ln == nil {
		return nil
	}
	return &capListener{Listener: ln, l: l, grpc: grpc}
}

func (cl *capListener) Accept() (net.Conn, error) {
	for {
		c, err := cl.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if cc := cl.admit(c); cc != nil {
			return cc, nil
		}
		c.Close()
	}
}

func (cl *capListener) admit(c net.Conn) *capConn {
	addr := netip.Addr{}
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		addr = ta.AddrPort().Addr().Unmap()
	}
	l := cl.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if cl.n >= l.maxConns {
		l.rejected[rejectConnections].Inc()
		return nil
	}
	ps := l.peers[addr]
	if ps == nil {
		ps = &peerState{addr: addr}
		l.peers[addr] = ps
	} else if ps.conns >= l.maxConnsPerPeer {
		l.rejected[rejectConnectionsPerPeer].Inc()
		return nil
	}
	ps.conns++
	cl.n++
	cc := &capConn{Conn: c, ln: cl, peer: ps}
	if cl.grpc {
		l.grpcConns[cc] = struct{}{}
	}
	return cc
}

// capConn is an accepted connection, counted until it is closed. On the
// gRPC listener it also keeps the reservations of its streams whose
// message is still being received.
type capConn struct {
	net.Conn
	ln        *capListener
	peer      *peerState
	closeOnce sync.Once

	mu      sync.Mutex
	closed  bool
	pending []pendingStream
	watch   *time.Timer // fires when the oldest pending stream may be too slow

	rd readyReader // ReadOnReady's (readready_unix.go)
}

// pendingStream is a gRPC stream that passed the tap: it holds
// limits.grpcReserve bytes of the budget and one of its peer's request
// slots until the handler takes them over (its message is in), or until
// the stream ended without the handler taking them (gRPC refused it after
// the tap, or the client reset it) and a sweep gives them back.
type pendingStream struct {
	done  <-chan struct{} // the stream context's; the handler's is the same
	since time.Time
}

func (c *capConn) Close() error {
	c.closeOnce.Do(func() {
		l := c.ln.l
		c.mu.Lock()
		c.closed = true
		for range c.pending {
			c.releasePending()
		}
		c.pending = nil
		if c.watch != nil {
			c.watch.Stop()
		}
		c.mu.Unlock()
		l.mu.Lock()
		c.ln.n--
		if c.peer.conns--; c.peer.conns == 0 && l.peers[c.peer.addr] == c.peer {
			delete(l.peers, c.peer.addr)
		}
		delete(l.grpcConns, c)
		l.mu.Unlock()
	})
	return c.Conn.Close()
}

func (c *capConn) releasePending() {
	c.ln.l.release(c.peer, c.ln.l.grpcReserve)
	c.peer.leave()
}

// sweepLocked gives back what streams that ended without their handler
// taking it over held.
func (c *capConn) sweepLocked() {
	for i := 0; i < len(c.pending); {
		select {
		case <-c.pending[i].done:
			c.releasePending()
			last := len(c.pending) - 1
			c.pending[i] = c.pending[last]
			c.pending[last] = pendingStream{}
			c.pending = c.pending[:last]
		default:
			i++
		}
	}
}

// sweepAll sweeps every gRPC connection: before refusing for lack of
// budget, take back what ended streams still hold.
func (l *limits) sweepAll() {
	l.mu.Lock()
	conns := make([]*capConn, 0, len(l.grpcConns))
	for c := range l.grpcConns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.mu.Lock()
		c.sweepLocked()
		c.mu.Unlock()
	}
}

// reserve takes a peer slot and grpcReserve bytes for a stream about to be
// read, or returns the reason it cannot (rejectBudget, rejectPerPeer,
// rejectPerPeerBytes, or -1 when the connection is closing).
func (c *capConn) reserve(done <-chan struct{}) (int, bool) {
	l := c.ln.l
	c.mu.Lock()
	c.sweepLocked()
	c.mu.Unlock()
	if !c.peer.enter(l.maxPeerRequests) {
		return rejectPerPeer, false
	}
	if _, ok := l.acquire(c.peer, l.grpcReserve); !ok {
		l.sweepAll()
		// The tap runs on the connection's reader: wait only briefly.
		if why, ok := l.acquireWait(c.peer, l.grpcReserve, done); !ok {
			c.peer.leave()
			return why, false
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed { // closing under the stream: gRPC fails it anyway
		c.releasePending()
		return -1, false
	}
	c.pending = append(c.pending, pendingStream{done: done, since: time.Now()})
	if len(c.pending) == 1 {
		if c.watch == nil {
			c.watch = time.AfterFunc(l.readTimeout, c.checkSlow)
		} else {
			c.watch.Reset(l.readTimeout)
		}
	}
	return 0, true
}

// take hands the reservation of the stream whose context is done over to
// its handler, reporting whether it was still there.
func (c *capConn) take(done <-chan struct{}) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, ps := range c.pending {
		if ps.done == done {
			last := len(c.pending) - 1
			c.pending[i] = c.pending[last]
			c.pending[last] = pendingStream{}
			c.pending = c.pending[:last]
			return true
		}
	}
	return false
}

// checkSlow closes the connection when a stream's message has been arriving
// for longer than the read timeout: it is the only way to stop a gRPC
// transport from receiving (and buffering) a stream, and what the HTTP
// server does with a slow body too. Otherwise it looks again when the
// oldest stream will be due.
func (c *capConn) checkSlow() {
	l := c.ln.l
	c.mu.Lock()
	c.sweepLocked()
	if c.closed || len(c.pending) == 0 {
		c.mu.Unlock()
		return
	}
	oldest := c.pending[0].since
	for _, ps := range c.pending[1:] {
		if ps.since.Before(oldest) {
			oldest = ps.since
		}
	}
	wait := l.readTimeout - time.Since(oldest)
	if wait > 0 {
		c.watch.Reset(wait)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	l.rejected[rejectReadTimeout].Inc()
	c.Close()
}

// grpcConnOf returns the connection of a gRPC stream, if it came through a
// capListener.
func grpcConnOf(ctx context.Context) *capConn {
	if pr, ok := peer.FromContext(ctx); ok {
		if ci, ok := pr.AuthInfo.(connInfo); ok {
			return ci.conn
		}
	}
	return nil
}

// tapLimits is the limits' part of the gRPC tap: before a stream's message
// is read, it takes the stream's reservation and a request slot of its
// peer, or refuses the stream with RESOURCE_EXHAUSTED and RetryInfo.
func (p *Proxy) tapLimits(ctx context.Context, info *tap.Info) (context.Context, error) {
	sig, ok := signalByMethod(info.FullMethodName)
	if !ok {
		return ctx, nil // gRPC answers UNIMPLEMENTED without reading it
	}
	c := grpcConnOf(ctx)
	if c == nil {
		return ctx, nil // the handler charges after the message is in
	}
	if why, ok := c.reserve(ctx.Done()); !ok {
		if why < 0 {
			return ctx, status.Error(codes.Unavailable, "connection closing: retry")
		}
		return ctx, p.reject(sig, protoGRPC, why).Err()
	}
	return ctx, nil
}

// reject counts a refusal of a request (rejectBudget or rejectPerPeer) and
// returns the retryable status the client gets.
func (p *Proxy) reject(sig enrich.Signal, proto, why int) *status.Status {
	p.lim.rejected[why].Inc()
	p.count(sig, proto, outcomeRejected, 0)
	return p.lim.busy[why]
}

// rejectHTTP answers a refused OTLP/HTTP request: 429 with Retry-After.
// The body may be unread: the connection closes rather than drain it.
func (p *Proxy) rejectHTTP(w http.ResponseWriter, isJSON bool, sig enrich.Signal, why int) {
	st := p.reject(sig, protoHTTP, why)
	w.Header().Set("Connection", "close")
	writeStatus(w, isJSON, http.StatusTooManyRequests, retryAfterHeader(retryAfter), st)
}

// signalByMethod returns the signal of a gRPC Export method.
func signalByMethod(method string) (enrich.Signal, bool) {
	for i := range signals {
		if signals[i].method == method {
			return signals[i].sig, true
		}
	}
	return 0, false
}
