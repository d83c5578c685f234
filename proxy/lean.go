package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http/httpproxy"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Transports of an OTLP/gRPC upstream.
const (
	TransportGRPC = "grpc" // grpc-go's client (the default of Target)
	TransportLean = "lean" // leanExporter
	// TransportAuto is TransportLean for the targets it serves (host:port,
	// dns:///host:port, passthrough:///host:port: every OTLP endpoint of the
	// form http(s)://host[:port] or host:port) and TransportGRPC for the rest
	// (unix sockets, DNS servers named in the target, other resolvers).
	TransportAuto = "auto"
)

// leanHostPort returns the host:port a gRPC target names, if the lean
// transport can serve it.
func leanHostPort(target string) (string, bool) {
	addr := target
	for _, scheme := range []string{"dns:///", "passthrough:///"} {
		addr = strings.TrimPrefix(addr, scheme)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil || strings.Contains(addr, "://") || strings.HasPrefix(addr, "unix:") {
		return "", false
	}
	return addr, true
}

// leanExporter forwards OTLP/gRPC calls on HTTP/2 connections of its own
// (golang.org/x/net/http2's framer), one call at a time per connection: the
// goroutine that calls export writes the call and reads its answer itself.
// grpc-go's client hands every call to a writer goroutine and its answer
// back from a reader goroutine; at a few hundred calls a second those
// hand-offs are most of what forwarding costs (bench/cmd/runner/tried.md).
//
// Connections wait in an idle pool between calls. Before one is reused, its
// socket is peeked without blocking: a connection the upstream closed or sent
// GOAWAY on is dropped, and control frames waiting on it (SETTINGS, PING,
// WINDOW_UPDATE) are handled first. A call the upstream refused unprocessed
// (GOAWAY naming an earlier stream, REFUSED_STREAM) is retried once on a new
// connection; any other failure is the caller's, with the gRPC code the
// answer or the failure maps to.
type leanExporter struct {
	pool    *leanPool
	method  string
	static  []string // key, value pairs
	gzip    bool
	maxSend int
	timeout time.Duration
}

// leanPool dials and keeps the connections to one upstream: an idle pool
// per resolved address, and calls that go round-robin over the addresses,
// as grpc-go's round_robin policy sends them.
type leanPool struct {
	host, port string
	literal    bool     // host is an IP address, or a proxy resolves it: nothing to resolve
	proxy      *url.URL // an HTTP proxy that connections tunnel through (CONNECT), or nil
	authority  string
	tls        *tls.Config // nil: plaintext
	userAgent  string
	dialer     net.Dialer
	next       atomic.Uint32 // round robin over addrs, per call

	// active bounds the calls in progress, each on a connection of its
	// own: more wait for one to finish, within their deadline.
	active chan struct{}

	// A failed dial makes the next ones to that address wait out a capped
	// backoff, during which calls skip it; when every address is waiting,
	// calls fail at once (UNAVAILABLE), as grpc-go's do. A failed first
	// resolution is put off the same way.
	backoff backoff.Config
	dialMu  sync.Mutex
	resolve leanRetry // the first resolution's, under dialMu

	// The resolver and its intervals (leanResolveEvery, leanResolveSoon);
	// set under dialMu and mu.
	lookup                    func(ctx context.Context, host string) ([]string, error)
	resolveEvery, resolveSoon time.Duration

	mu         sync.Mutex
	addrs      []*leanAddr // the last resolution's, sorted; nil before the first
	resolvedAt time.Time
	reresolve  bool // a dial failed or an upstream left: resolve again soon
	resolving  bool
	closed     bool
	ctx        context.Context // ended by close: ends tend and resolutions
	cancel     context.CancelFunc
	done       chan struct{}
	wg         sync.WaitGroup // background resolutions
}

// leanAddr is one resolved address of the upstream and its idle
// connections.
type leanAddr struct {
	addr  string      // host:port
	idle  []*leanConn // under the pool's mu, most recently used last
	gone  bool        // no longer resolved: its connections are closed when put back
	retry leanRetry   // under the pool's dialMu
}

// leanRetry is the backoff state of dials that keep failing.
type leanRetry struct {
	failures int
	retryAt  time.Time
	lastErr  error
}

const (
	leanMaxIdle = 64 // per address
	// leanMaxActive bounds the connections carrying a call at once (per
	// upstream): the upstream's connections from one podstamp, and the
	// 20-25 KiB of buffers and tables each holds. Calls in flight are
	// otherwise bounded only by the peers' request limits and the budget,
	// whose charge for a small request is far less than a connection.
	leanMaxActive   = 512
	leanIdleTimeout = 60 * time.Second
	leanMaxHeader   = 16 << 10
	// leanResolveEvery is how often a host name is resolved again, so
	// upstreams behind it (a headless Service's pods) that come and go get
	// calls; after a failed dial or a GOAWAY, leanResolveSoon.
	leanResolveEvery = 30 * time.Second
	leanResolveSoon  = 5 * time.Second
)

// newLeanPool serves a gRPC target of the form "dns:///host:port" or
// "passthrough:///host:port" (what ParseEndpoint makes of OTLP endpoints).
func newLeanPool(target string, tc *tls.Config, userAgent string, reconnect backoff.Config) (*leanPool, error) {
	addr, ok := leanHostPort(target)
	if !ok {
		return nil, fmt.Errorf("the lean transport needs a host:port endpoint, not %q", target)
	}
	host, port, _ := net.SplitHostPort(addr)
	// HTTPS_PROXY and NO_PROXY, as grpc-go's client reads them (the https
	// scheme whatever the upstream's TLS).
	proxyURL, err := httpproxy.FromEnvironment().ProxyFunc()(&url.URL{Scheme: "https", Host: addr})
	if err != nil {
		return nil, fmt.Errorf("HTTPS_PROXY: %w", err)
	}
	if proxyURL != nil && proxyURL.Scheme != "http" {
		return nil, fmt.Errorf("HTTPS_PROXY %s: the lean transport tunnels through http:// proxies only", proxyURL.Redacted())
	}
	p := &leanPool{host: host, port: port, authority: addr, userAgent: userAgent, backoff: reconnect, proxy: proxyURL,
		literal: net.ParseIP(host) != nil || proxyURL != nil, lookup: net.DefaultResolver.LookupHost,
		resolveEvery: leanResolveEvery, resolveSoon: leanResolveSoon,
		dialer: net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second},
		done:   make(chan struct{}), active: make(chan struct{}, leanMaxActive)}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	go p.tend()
	if tc != nil {
		p.tls = tc.Clone()
		p.tls.NextProtos = []string{"h2"}
		if p.tls.ServerName == "" {
			p.tls.ServerName = host
		}
	}
	return p, nil
}

func (p *leanPool) close() error {
	p.mu.Lock()
	p.cancel()
	p.closed = true
	for _, a := range p.addrs {
		for _, c := range a.idle {
			_ = c.nc.Close()
		}
		a.idle = nil
	}
	p.mu.Unlock()
	<-p.done
	p.wg.Wait()
	return nil
}

// leanTendEvery is how often idle connections are looked at.
const leanTendEvery = time.Second

// tend looks at the idle connections every leanTendEvery, as a reader
// goroutine would at once: it answers the upstream's PINGs (a server that
// shuts down gracefully waits for that answer), applies its SETTINGS, and
// closes connections the upstream closed, sent GOAWAY on, or that sat idle
// for leanIdleTimeout. It also starts the host's resolution when one is due.
func (p *leanPool) tend() {
	defer close(p.done)
	t := time.NewTicker(leanTendEvery)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		}
		p.mu.Lock()
		addrs := p.addrs
		idle := make([][]*leanConn, len(addrs))
		for i, a := range addrs {
			idle[i], a.idle = a.idle, nil
		}
		p.resolveDueLocked()
		p.mu.Unlock()
		left := false
		for i := range idle {
			keep := idle[i][:0]
			for _, c := range idle[i] {
				if time.Since(c.lastUsed) < leanIdleTimeout && c.alive() {
					keep = append(keep, c)
					continue
				}
				left = left || c.goneAway
				_ = c.nc.Close()
			}
			idle[i] = keep
		}
		p.mu.Lock()
		p.reresolve = p.reresolve || left
		for i, a := range addrs {
			if p.closed || a.gone {
				for _, c := range idle[i] {
					_ = c.nc.Close()
				}
				continue
			}
			// Those put back meanwhile were used more recently.
			a.idle = append(idle[i], a.idle...)
		}
		p.mu.Unlock()
	}
}

// resolveDueLocked starts resolving the host again in the background when
// the last resolution is old, or a failure asked for one and the last is
// not recent. Calls go on with the addresses they have meanwhile.
func (p *leanPool) resolveDueLocked() {
	if p.literal || p.addrs == nil || p.resolving || p.closed {
		return
	}
	age := time.Since(p.resolvedAt)
	if age < p.resolveEvery && !(p.reresolve && age >= p.resolveSoon) {
		return
	}
	p.resolving = true
	lookup := p.lookup
	p.wg.Go(func() {
		ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
		defer cancel()
		hosts, err := lookup(ctx, p.host)
		p.mu.Lock()
		defer p.mu.Unlock()
		p.resolving = false
		p.resolvedAt, p.reresolve = time.Now(), false
		if err == nil && len(hosts) > 0 && !p.closed {
			// A failed resolution keeps the addresses it had, as grpc-go's
			// resolver does.
			p.setAddrsLocked(hosts)
		}
	})
}

// setAddrsLocked makes hosts the upstream's addresses. An address that
// stays keeps its idle connections and backoff; one that goes has its idle
// connections closed.
func (p *leanPool) setAddrsLocked(hosts []string) {
	had := make(map[string]*leanAddr, len(p.addrs))
	for _, a := range p.addrs {
		had[a.addr] = a
	}
	addrs := make([]*leanAddr, 0, len(hosts))
	seen := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		hp := net.JoinHostPort(h, p.port)
		if seen[hp] {
			continue
		}
		seen[hp] = true
		a := had[hp]
		if a == nil {
			a = &leanAddr{addr: hp}
		}
		delete(had, hp)
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, func(a, b *leanAddr) int { return strings.Compare(a.addr, b.addr) })
	for _, a := range had {
		a.gone = true
		for _, c := range a.idle {
			_ = c.nc.Close()
		}
		a.idle = nil
	}
	p.addrs = addrs
}

// addresses returns the upstream's addresses, resolving the host the first
// time.
func (p *leanPool) addresses(ctx context.Context) ([]*leanAddr, error) {
	p.mu.Lock()
	addrs := p.addrs
	p.mu.Unlock()
	if addrs != nil {
		return addrs, nil
	}
	p.dialMu.Lock()
	defer p.dialMu.Unlock()
	p.mu.Lock()
	addrs = p.addrs
	p.mu.Unlock()
	if addrs != nil { // another call resolved it meanwhile
		return addrs, nil
	}
	if wait := time.Until(p.resolve.retryAt); wait > 0 {
		return nil, fmt.Errorf("%w (next attempt in %v)", p.resolve.lastErr, wait.Round(time.Millisecond))
	}
	hosts := []string{p.host}
	if !p.literal {
		var err error
		if hosts, err = p.lookup(ctx, p.host); err == nil && len(hosts) == 0 {
			err = fmt.Errorf("no addresses for %s", p.host)
		}
		if err != nil {
			if ctx.Err() == nil {
				p.resolve.failed(err, p.backoff)
			}
			return nil, err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.resolve = leanRetry{}
	p.resolvedAt = time.Now()
	p.setAddrsLocked(hosts)
	return p.addrs, nil
}

// failed counts a failure: the next attempt waits out the backoff's next
// step. Failures that overlap are one: only one that comes when no other
// has put the next attempt off escalates.
func (r *leanRetry) failed(err error, b backoff.Config) {
	r.lastErr = err
	if now := time.Now(); !now.Before(r.retryAt) {
		r.failures++
		r.retryAt = now.Add(backoffDelay(b, r.failures))
	}
}

// get returns a live connection for one call: an idle one to the next
// address in turn, or a new one. An address waiting out its dial backoff
// is skipped; when none can be reached, the error is the last address's.
func (p *leanPool) get(ctx context.Context) (*leanConn, error) {
	addrs, err := p.addresses(ctx)
	if err != nil {
		return nil, err
	}
	start := int(p.next.Add(1) % uint32(len(addrs)))
	for k := range addrs {
		a := addrs[(start+k)%len(addrs)]
		if c := p.idleConn(a); c != nil {
			return c, nil
		}
		var c *leanConn
		if c, err = p.dial(ctx, a); err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	if len(addrs) > 1 {
		err = fmt.Errorf("none of %d addresses: %w", len(addrs), err)
	}
	return nil, err
}

// idleConn returns a's most recently used idle connection that is alive,
// or nil.
func (p *leanPool) idleConn(a *leanAddr) *leanConn {
	for {
		p.mu.Lock()
		n := len(a.idle)
		if n == 0 {
			p.mu.Unlock()
			return nil
		}
		c := a.idle[n-1]
		a.idle = a.idle[:n-1]
		p.mu.Unlock()
		if time.Since(c.lastUsed) < leanIdleTimeout && c.alive() {
			return c
		}
		_ = c.nc.Close()
		if c.goneAway {
			p.mu.Lock()
			p.reresolve = true
			p.mu.Unlock()
		}
	}
}

// put returns c to its address's idle pool, or closes it.
func (p *leanPool) put(c *leanConn) {
	c.lastUsed = time.Now()
	a := c.addr
	p.mu.Lock()
	if p.closed || c.goneAway || a.gone || len(a.idle) >= leanMaxIdle {
		p.reresolve = p.reresolve || c.goneAway
		p.mu.Unlock()
		_ = c.nc.Close()
		return
	}
	// The least recently used come first; close those idle too long.
	stale := 0
	for stale < len(a.idle) && c.lastUsed.Sub(a.idle[stale].lastUsed) >= leanIdleTimeout {
		_ = a.idle[stale].nc.Close()
		stale++
	}
	a.idle = append(a.idle[stale:], c)
	p.mu.Unlock()
}

func (p *leanPool) dial(ctx context.Context, a *leanAddr) (*leanConn, error) {
	p.dialMu.Lock()
	if wait := time.Until(a.retry.retryAt); wait > 0 {
		err := a.retry.lastErr
		p.dialMu.Unlock()
		return nil, fmt.Errorf("%w (next attempt in %v)", err, wait.Round(time.Millisecond))
	}
	p.dialMu.Unlock()
	c, err := p.dialOnce(ctx, a)
	p.dialMu.Lock()
	defer p.dialMu.Unlock()
	switch {
	case err == nil:
		a.retry = leanRetry{}
	case ctx.Err() == nil:
		a.retry.failed(err, p.backoff)
		p.mu.Lock()
		p.reresolve = true
		p.mu.Unlock()
	}
	return c, err
}

// backoffDelay is the wait after the n-th failure in a row.
func backoffDelay(b backoff.Config, n int) time.Duration {
	d := float64(b.BaseDelay)
	for i := 1; i < n && d < float64(b.MaxDelay); i++ {
		d *= b.Multiplier
	}
	d = min(d, float64(b.MaxDelay))
	d *= 1 + b.Jitter*(2*rand.Float64()-1)
	return time.Duration(d)
}

func (p *leanPool) dialOnce(ctx context.Context, a *leanAddr) (*leanConn, error) {
	var nc net.Conn
	var err error
	if p.proxy != nil {
		nc, err = p.tunnel(ctx, a.addr)
	} else {
		nc, err = p.dialer.DialContext(ctx, "tcp", a.addr)
	}
	if err != nil {
		return nil, err
	}
	c := &leanConn{nc: nc, addr: a, nextID: 1, connWin: 65535, initWin: 65535, maxFrame: 16384}
	if sc, ok := nc.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	if p.tls != nil {
		tc := tls.Client(nc, p.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = nc.Close()
			return nil, err
		}
		if tc.ConnectionState().NegotiatedProtocol != "h2" {
			_ = nc.Close()
			return nil, errors.New("the upstream did not negotiate HTTP/2 (ALPN h2)")
		}
		c.nc = tc
	}
	c.br = bufio.NewReaderSize(c.nc, 16<<10)
	_, c.vectored = c.nc.(*net.TCPConn)
	c.fr = http2.NewFramer((*leanOut)(c), c.br)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = leanMaxHeader
	c.fr.SetMaxReadFrameSize(16 << 10) // SETTINGS_MAX_FRAME_SIZE's default, which the client keeps
	c.enc = hpack.NewEncoder(&c.hbuf)
	c.scheme = "http"
	if p.tls != nil {
		c.scheme = "https"
	}
	// The preface and settings go out with the first call's frames.
	c.out = append(c.out, http2.ClientPreface...)
	if err := c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: grpcStreamWindow},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: leanMaxHeader}); err != nil {
		_ = c.nc.Close()
		return nil, err
	}
	if err := c.fr.WriteWindowUpdate(0, grpcConnWindow-65535); err != nil {
		_ = c.nc.Close()
		return nil, err
	}
	return c, nil
}

// tunnel connects to addr through the HTTP proxy (CONNECT), as grpc-go's
// client does: credentials of the proxy's URL go as Basic
// Proxy-Authorization, and the proxy resolves the name.
func (p *leanPool) tunnel(ctx context.Context, addr string) (net.Conn, error) {
	proxyAddr := p.proxy.Host
	if p.proxy.Port() == "" {
		proxyAddr = net.JoinHostPort(p.proxy.Hostname(), "80")
	}
	nc, err := p.dialer.DialContext(ctx, "tcp", proxyAddr)
	if err != nil {
		return nil, fmt.Errorf("proxy %s: %w", p.proxy.Redacted(), err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	} else {
		_ = nc.SetDeadline(time.Now().Add(p.dialer.Timeout))
	}
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Host: addr}, Host: addr, Header: http.Header{}}
	if p.userAgent != "" {
		req.Header.Set("User-Agent", p.userAgent)
	}
	if u := p.proxy.User; u != nil {
		pw, _ := u.Password()
		req.Header.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pw)))
	}
	fail := func(err error) (net.Conn, error) {
		_ = nc.Close()
		return nil, fmt.Errorf("proxy %s: CONNECT %s: %w", p.proxy.Redacted(), addr, err)
	}
	if err := req.Write(nc); err != nil {
		return fail(err)
	}
	// The answer's head is read a byte at a time: what follows it is the
	// upstream's (an HTTP/2 server speaks first), and stays in the socket.
	head := make([]byte, 0, 256)
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		if len(head) == 8<<10 {
			return fail(errors.New("answer head over 8 KiB"))
		}
		var b [1]byte
		if _, err := io.ReadFull(nc, b[:]); err != nil {
			return fail(err)
		}
		head = append(head, b[0])
	}
	line, _, _ := bytes.Cut(head, []byte("\r\n"))
	proto, st, _ := strings.Cut(string(line), " ")
	if !strings.HasPrefix(proto, "HTTP/1.") {
		return fail(fmt.Errorf("not an HTTP answer: %q", line))
	}
	if code, _, _ := strings.Cut(st, " "); code != "200" {
		return fail(fmt.Errorf("%s", st))
	}
	_ = nc.SetDeadline(time.Time{})
	return nc, nil
}

// leanConn is one HTTP/2 connection, used by one call at a time.
type leanConn struct {
	nc       net.Conn
	addr     *leanAddr
	raw      syscall.RawConn // of the TCP socket under nc, for alive
	br       *bufio.Reader
	out      []byte      // frames waiting to be written: the framer's, and DATA unless vectored
	vectored bool        // a TCP connection: DATA goes out with writev, from the caller's buffers
	vec      net.Buffers // DATA frames waiting to be written after out
	hdrs     []byte      // their frame headers
	fr       *http2.Framer
	hbuf     bytes.Buffer
	enc      *hpack.Encoder
	scheme   string
	nextID   uint32
	connWin  int64 // bytes we may still send on the connection
	initWin  int64 // the upstream's initial stream window
	maxFrame int
	recv     int // bytes received since our last connection WINDOW_UPDATE
	goneAway bool
	lastUsed time.Time
}

// alive reports whether an idle connection can carry a call: the upstream
// has not closed it or sent GOAWAY. Frames waiting on it are handled.
func (c *leanConn) alive() bool {
	for !c.goneAway {
		if c.br.Buffered() == 0 {
			switch pending(c.raw) {
			case pendingNone:
				return true
			case pendingClosed:
				return false
			}
		}
		// Something is waiting: it cannot block for long.
		_ = c.nc.SetReadDeadline(time.Now().Add(time.Second))
		f, err := c.fr.ReadFrame()
		_ = c.nc.SetReadDeadline(time.Time{})
		if err != nil {
			return false
		}
		if _, err := c.control(f, 0, nil); err != nil {
			return false
		}
		if c.flush() != nil {
			return false
		}
	}
	return false
}

// control handles a frame that is not part of stream id's answer; streamWin
// is the stream's send window, adjusted by SETTINGS and WINDOW_UPDATE. It
// returns whether the upstream refused stream id unprocessed (GOAWAY).
func (c *leanConn) control(f http2.Frame, id uint32, streamWin *int64) (refused bool, err error) {
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if f.IsAck() {
			return false, nil
		}
		err := f.ForeachSetting(func(s http2.Setting) error {
			switch s.ID {
			case http2.SettingInitialWindowSize:
				if streamWin != nil {
					*streamWin += int64(s.Val) - c.initWin
				}
				c.initWin = int64(s.Val)
			case http2.SettingMaxFrameSize:
				c.maxFrame = int(s.Val)
			case http2.SettingHeaderTableSize:
				c.enc.SetMaxDynamicTableSizeLimit(s.Val)
			}
			return nil
		})
		if err != nil {
			return false, err
		}
		return false, c.fr.WriteSettingsAck()
	case *http2.WindowUpdateFrame:
		switch {
		case f.StreamID == 0:
			c.connWin += int64(f.Increment)
		case f.StreamID == id && streamWin != nil:
			*streamWin += int64(f.Increment)
		}
	case *http2.PingFrame:
		if !f.IsAck() {
			return false, c.fr.WritePing(true, f.Data)
		}
	case *http2.GoAwayFrame:
		c.goneAway = true
		return id != 0 && f.LastStreamID < id, nil
	}
	return false, nil
}

// aLongTimeAgo is a deadline in the past: it makes blocked I/O return.
var aLongTimeAgo = time.Unix(1, 0)

// leanAnswer is what call read of one answer.
type leanAnswer struct {
	httpStatus int
	encoding   string // grpc-encoding of the answer
	grpcStatus string
	message    string
	details    string
	data       []byte
}

// call sends one call and reads its answer. clean reports that the
// connection can carry another call; refused that the upstream did not
// process this one.
func (c *leanConn) call(ctx context.Context, e *leanExporter, body mem.BufferSlice, compressed bool, hdr []string) (a leanAnswer, clean, refused bool, err error) {
	id := c.nextID
	c.nextID += 2
	if c.nextID >= 1<<30 {
		c.goneAway = true // no more stream ids: let it go after this call
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.nc.SetDeadline(dl)
	} else {
		_ = c.nc.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(aLongTimeAgo) })
	defer stop()

	c.hbuf.Reset()
	field := func(k, v string) { _ = c.enc.WriteField(hpack.HeaderField{Name: k, Value: v}) }
	field(":method", "POST")
	field(":scheme", c.scheme)
	field(":path", e.method)
	field(":authority", e.pool.authority)
	field("content-type", "application/grpc")
	field("user-agent", e.pool.userAgent)
	field("te", "trailers")
	if dl, ok := ctx.Deadline(); ok {
		field("grpc-timeout", grpcTimeout(time.Until(dl)))
	}
	if e.gzip {
		field("grpc-accept-encoding", "gzip")
	}
	if compressed {
		field("grpc-encoding", "gzip")
	}
	for _, kv := range [2][]string{hdr, e.static} {
		for i := 0; i+1 < len(kv); i += 2 {
			k, v := strings.ToLower(kv[i]), kv[i+1]
			if leanReserved(k) {
				continue
			}
			if strings.HasSuffix(k, "-bin") {
				v = base64.RawStdEncoding.EncodeToString([]byte(v)) // as gRPC sends binary metadata
			}
			field(k, v)
		}
	}
	if c.hbuf.Len() > c.maxFrame {
		return a, false, false, status.Error(codes.Internal, "upstream call headers larger than a frame")
	}
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true}); err != nil {
		return a, false, false, err
	}

	// DATA: the gRPC length prefix, then the body's buffers, in frames the
	// windows allow; while they do not, read frames (WINDOW_UPDATE).
	var prefix [5]byte
	parts := messageParts(&prefix, compressed, body)
	streamWin := c.initWin
	ended := false
	sawHeaders := false
	streamRecv := 0
	for !ended {
		for len(parts) > 0 {
			n := min(len(parts[0]), c.maxFrame, int(min(c.connWin, streamWin)))
			if n <= 0 {
				break
			}
			if err := c.writeData(id, parts[0][:n], n == len(parts[0]) && len(parts) == 1); err != nil {
				return a, false, false, err
			}
			c.connWin -= int64(n)
			streamWin -= int64(n)
			if parts[0] = parts[0][n:]; len(parts[0]) == 0 {
				parts = parts[1:]
			}
		}
		if err := c.flush(); err != nil {
			return a, false, false, err
		}
		f, err := c.fr.ReadFrame()
		if err != nil {
			return a, false, false, err
		}
		if sid := f.Header().StreamID; sid != id || f.Header().Type == http2.FrameWindowUpdate {
			refused, err := c.control(f, id, &streamWin)
			if err != nil {
				return a, false, false, err
			}
			if refused {
				return a, false, true, errors.New("the upstream is going away and did not take the call")
			}
			continue
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			for _, hf := range f.Fields {
				switch hf.Name {
				case ":status":
					if !sawHeaders {
						a.httpStatus, _ = strconv.Atoi(hf.Value)
					}
				case "grpc-encoding":
					a.encoding = hf.Value
				case "grpc-status":
					a.grpcStatus = hf.Value
				case "grpc-message":
					a.message = hf.Value
				case "grpc-status-details-bin":
					a.details = hf.Value
				}
			}
			sawHeaders = true
			ended = f.StreamEnded()
		case *http2.DataFrame:
			if len(a.data)+len(f.Data()) > maxResponseBytes+5 {
				return a, false, false, status.Errorf(codes.ResourceExhausted, "upstream answer over the %d byte limit", maxResponseBytes)
			}
			a.data = append(a.data, f.Data()...)
			c.recv += int(f.Length)
			streamRecv += int(f.Length)
			if c.recv >= grpcConnWindow/4 {
				if err := c.fr.WriteWindowUpdate(0, uint32(c.recv)); err != nil {
					return a, false, false, err
				}
				c.recv = 0
			}
			if !f.StreamEnded() && streamRecv >= grpcStreamWindow/4 {
				if err := c.fr.WriteWindowUpdate(id, uint32(streamRecv)); err != nil {
					return a, false, false, err
				}
				streamRecv = 0
			}
			ended = f.StreamEnded()
		case *http2.RSTStreamFrame:
			if f.ErrCode == http2.ErrCodeRefusedStream {
				return a, false, true, errors.New("the upstream refused the stream")
			}
			return a, false, false, status.Errorf(rstCode(f.ErrCode), "upstream reset the call: %v", f.ErrCode)
		}
	}
	// Give back what the answer used of the connection's window, so that a
	// long-lived connection never runs it down.
	if c.recv > 0 {
		if err := c.fr.WriteWindowUpdate(0, uint32(c.recv)); err == nil {
			c.recv = 0
		}
	}
	// A cancellation that came as the answer did may still be setting the
	// connection's deadline: then another call must not have it.
	clean = stop() && len(parts) == 0
	_ = c.nc.SetDeadline(time.Time{})
	return a, clean, false, nil
}

// messageParts is a gRPC message as DATA payload: its length prefix (in
// prefix), then msg's buffers.
func messageParts(prefix *[5]byte, compressed bool, msg mem.BufferSlice) [][]byte {
	prefix[0] = 0
	if compressed {
		prefix[0] = 1
	}
	binary.BigEndian.PutUint32(prefix[1:], uint32(msg.Len()))
	parts := make([][]byte, 0, len(msg)+1)
	parts = append(parts, prefix[:])
	for _, b := range msg {
		if d := b.ReadOnlyData(); len(d) > 0 {
			parts = append(parts, d)
		}
	}
	return parts
}

// leanOut is the framer's writer: frames gather in out until flush.
type leanOut leanConn

func (w *leanOut) Write(p []byte) (int, error) {
	w.out = append(w.out, p...)
	return len(p), nil
}

// leanMaxVec bounds the DATA frames gathered for one writev.
const leanMaxVec = 256

// writeData adds one DATA frame. On a TCP connection its payload stays in
// the caller's buffer and goes out with the next flush's writev; otherwise
// (TLS) it is copied after the other frames.
func (c *leanConn) writeData(id uint32, p []byte, end bool) error {
	var h [9]byte
	h[0], h[1], h[2] = byte(len(p)>>16), byte(len(p)>>8), byte(len(p))
	h[3] = byte(http2.FrameData)
	if end {
		h[4] = byte(http2.FlagDataEndStream)
	}
	binary.BigEndian.PutUint32(h[5:], id)
	if !c.vectored {
		c.out = append(append(c.out, h[:]...), p...)
		return nil
	}
	if len(c.hdrs)+9 > cap(c.hdrs) { // the headers' array is full: vec points into it
		if err := c.flush(); err != nil {
			return err
		}
		if cap(c.hdrs) < 9*leanMaxVec {
			c.hdrs = make([]byte, 0, 9*leanMaxVec)
		}
	}
	c.hdrs = append(c.hdrs, h[:]...)
	c.vec = append(c.vec, c.hdrs[len(c.hdrs)-9:], p)
	return nil
}

// flush writes the frames waiting: out, then the DATA frames in one
// writev.
func (c *leanConn) flush() error {
	var err error
	switch {
	case len(c.vec) > 0:
		bufs := make(net.Buffers, 0, len(c.vec)+1)
		if len(c.out) > 0 {
			bufs = append(bufs, c.out)
		}
		bufs = append(bufs, c.vec...)
		_, err = bufs.WriteTo(c.nc)
		clear(c.vec) // drop the references to the caller's buffers
		c.vec, c.hdrs = c.vec[:0], c.hdrs[:0]
	case len(c.out) > 0:
		_, err = c.nc.Write(c.out)
	}
	c.out = c.out[:0]
	if cap(c.out) > 64<<10 {
		c.out = nil
	}
	return err
}

// leanReserved is a header the call sets itself or HTTP/2 forbids.
func leanReserved(k string) bool {
	switch k {
	case "content-type", "user-agent", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding",
		"connection", "host", "transfer-encoding", "upgrade", "keep-alive", "proxy-connection":
		return true
	}
	return k == "" || k[0] == ':'
}

func (e *leanExporter) export(ctx context.Context, body mem.BufferSlice, hdr []string) (mem.BufferSlice, error) {
	defer func() { body.Free() }() // body may be replaced by its compressed form
	ctx, cancel := withUpstreamTimeout(ctx, e.timeout)
	defer cancel()
	if body.Len() > e.maxSend {
		return nil, status.Errorf(codes.ResourceExhausted, "trying to send message larger than max (%d vs. %d)", body.Len(), e.maxSend)
	}
	if e.gzip {
		body = gzipBuffers(body)
	}
	select {
	case e.pool.active <- struct{}{}:
	default:
		select {
		case e.pool.active <- struct{}{}:
		case <-ctx.Done():
			return nil, status.Errorf(status.FromContextError(ctx.Err()).Code(),
				"%v while waiting for one of the %d upstream connections in use", ctx.Err(), cap(e.pool.active))
		}
	}
	defer func() { <-e.pool.active }()
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, status.FromContextError(err).Err()
		}
		c, err := e.pool.get(ctx)
		if err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return nil, status.FromContextError(cerr).Err()
			}
			return nil, status.Errorf(codes.Unavailable, "upstream unreachable: %v", err)
		}
		a, clean, refused, err := c.call(ctx, e, body, e.gzip, hdr)
		if err != nil {
			_ = c.nc.Close()
			if refused && attempt == 0 {
				continue
			}
			if cerr := ctx.Err(); cerr != nil {
				return nil, status.FromContextError(cerr).Err()
			}
			if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
				return nil, status.Error(codes.DeadlineExceeded, context.DeadlineExceeded.Error())
			}
			if _, ok := status.FromError(err); ok && status.Code(err) != codes.Unknown {
				return nil, err
			}
			return nil, status.Errorf(codes.Unavailable, "upstream connection: %v", err)
		}
		if clean {
			e.pool.put(c)
		} else {
			_ = c.nc.Close()
		}
		return a.result()
	}
}

// result is the answer as export returns it: the message, or the status.
func (a *leanAnswer) result() (mem.BufferSlice, error) {
	if a.grpcStatus == "" {
		if a.httpStatus != 200 {
			return nil, status.Errorf(httpStatusCode(a.httpStatus), "upstream answered HTTP %d without a gRPC status", a.httpStatus)
		}
		return nil, status.Error(codes.Internal, "upstream answer without grpc-status")
	}
	code, err := strconv.ParseUint(a.grpcStatus, 10, 32)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "upstream answer with a malformed grpc-status %q", a.grpcStatus)
	}
	if code != 0 {
		if a.details != "" {
			if raw, err := decodeBinHeader(a.details); err == nil {
				sp := &spb.Status{}
				if proto.Unmarshal(raw, sp) == nil && sp.Code == int32(code) {
					return nil, status.FromProto(sp).Err()
				}
			}
		}
		return nil, status.New(codes.Code(code), decodeGRPCMessage(a.message)).Err()
	}
	if len(a.data) < 5 {
		return nil, status.Error(codes.Internal, "upstream answer without a message")
	}
	n := binary.BigEndian.Uint32(a.data[1:5])
	msg := a.data[5:]
	if int(n) != len(msg) {
		return nil, status.Errorf(codes.Internal, "upstream answer of %d bytes announced %d", len(msg), n)
	}
	if a.data[0] == 1 {
		if a.encoding != "gzip" {
			return nil, status.Errorf(codes.Internal, "upstream answer compressed with %q", a.encoding)
		}
		zr, err := newGzipReader(bytes.NewReader(msg))
		if err != nil {
			return nil, status.Errorf(codes.Internal, "upstream answer: %v", err)
		}
		msg, err = readLimited(zr, -1, maxResponseBytes)
		zr.Close()
		if err != nil {
			return nil, status.Errorf(codes.Internal, "upstream answer: %v", err)
		}
	}
	return mem.BufferSlice{mem.SliceBuffer(msg)}, nil
}

// grpcTimeout encodes d as a grpc-timeout value: at most 8 digits, in the
// finest unit that fits, rounded up.
func grpcTimeout(d time.Duration) string {
	if d <= 0 {
		return "1n"
	}
	for _, u := range []struct {
		unit time.Duration
		c    string
	}{{time.Nanosecond, "n"}, {time.Microsecond, "u"}, {time.Millisecond, "m"}, {time.Second, "S"}, {time.Minute, "M"}, {time.Hour, "H"}} {
		if v := (d + u.unit - 1) / u.unit; v <= 99999999 {
			return strconv.FormatInt(int64(v), 10) + u.c
		}
	}
	return "99999999H"
}

// decodeGRPCMessage undoes grpc-message's percent-encoding.
func decodeGRPCMessage(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// decodeBinHeader decodes a -bin header value (base64, padded or not).
func decodeBinHeader(v string) ([]byte, error) {
	if len(v)%4 == 0 {
		return base64.StdEncoding.DecodeString(v)
	}
	return base64.RawStdEncoding.DecodeString(v)
}

// httpStatusCode maps an HTTP status without a gRPC status as gRPC does.
func httpStatusCode(s int) codes.Code {
	switch s {
	case 400:
		return codes.Internal
	case 401:
		return codes.Unauthenticated
	case 403:
		return codes.PermissionDenied
	case 404:
		return codes.Unimplemented
	case 429, 502, 503, 504:
		return codes.Unavailable
	}
	return codes.Unknown
}

// rstCode maps an RST_STREAM error code as gRPC does.
func rstCode(c http2.ErrCode) codes.Code {
	switch c {
	case http2.ErrCodeRefusedStream:
		return codes.Unavailable
	case http2.ErrCodeCancel:
		return codes.Canceled
	case http2.ErrCodeFlowControl, http2.ErrCodeEnhanceYourCalm:
		return codes.ResourceExhausted
	case http2.ErrCodeInadequateSecurity:
		return codes.PermissionDenied
	}
	return codes.Internal
}

// pendingState is what pending found on an idle connection's socket.
type pendingState int

const (
	pendingNone pendingState = iota
	pendingData
	pendingClosed
)
