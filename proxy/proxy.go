package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/podstamp/podstamp/enrich"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

// Enricher stamps one protobuf-encoded Export<Signal>ServiceRequest and
// counts its items; *enrich.Stamper is the one podstamp runs, and its Stamp
// states the contract: the output comes back as segments (unchanged ranges
// of body referenced, everything else in the returned side, grown, if it
// must be, before anything is written to it), which the proxy sends
// upstream without concatenating them, keeping body and side until the
// upstream is done with them. An error wrapping enrich.ErrMalformed is
// answered INVALID_ARGUMENT / 400; after ctx ended, ctx's error is answered
// as such; nothing is forwarded on error.
type Enricher interface {
	Stamp(ctx context.Context, sig enrich.Signal, peer enrich.Peer, body []byte, segs [][]byte, side []byte) (enrich.Stamped, error)
}

// Check is one readiness check: nil when ready.
type Check struct {
	Name  string
	Check func() error
}

// Config is the proxy's configuration. Zero durations and sizes take the
// defaults of DefaultConfig.
type Config struct {
	GRPCListen  string // "" disables the gRPC ingress
	HTTPListen  string // "" disables the HTTP ingress
	AdminListen string // "" disables the admin listener (/livez, /readyz, /metrics)
	DebugListen string // "" disables the debug listener (/debug/pprof, Options.DebugHandlers)

	// Upstream is where each signal goes, indexed by enrich.Signal.
	Upstream [numSignals]Target

	// ForwardHeaders is the allow-list of incoming gRPC metadata keys / HTTP
	// header names (case-insensitive) copied to upstream requests.
	ForwardHeaders []string

	// Resource limits (limits.go; doc.go states the worst cases). Zero
	// takes the default.
	MaxRequestBytes         int64 // OTLP/HTTP body after decompression
	MaxGRPCRequestBytes     int64 // OTLP/gRPC message after decompression
	MaxJSONRequestBytes     int64 // OTLP/HTTP JSON body (at most MaxRequestBytes)
	MaxInflightBytes        int64 // budget of request bytes and their copies held at once
	MaxInflightBytesPerPeer int64 // one peer address's share of it; 0: half, at least one largest request
	MaxConnections          int   // per ingress listener; more are closed at accept
	MaxConnectionsPerPeer   int   // per peer address, both listeners together
	MaxRequestsPerPeer      int   // concurrent requests per peer address
	MaxStreamsPerConnection int   // concurrent gRPC (and HTTP/2) streams per connection

	ShutdownTimeout   time.Duration // bound on draining in-flight requests
	DrainDelay        time.Duration // readiness is false this long before listeners close
	ReadHeaderTimeout time.Duration // HTTP ingress
	ReadTimeout       time.Duration // HTTP ingress: whole request, body included
	IdleTimeout       time.Duration // HTTP ingress keep-alive
	// KeepAliveDrain is how long a draining proxy keeps its HTTP listener
	// before closing idle connections, answering Connection: close
	// meanwhile (see drain).
	KeepAliveDrain time.Duration

	EnablePprof bool // /debug/pprof on the debug listener

	LiveTimeout time.Duration // how long /livez waits for each liveness check

	// GRPCTransport serves the gRPC ingress: TransportGRPC (grpc-go's
	// server, "" too) or TransportLean (leanServer, podstamp's default).
	GRPCTransport string

	// leanServer's bounds on a client that reads no answer and on an idle
	// connection; zero takes lsWriteTimeout and lsIdleTimeout. Tests set
	// them.
	leanWriteTimeout, leanIdleTimeout time.Duration

	// UpstreamBackoff paces reconnection attempts to a gRPC upstream; zero
	// takes the default (defaultUpstreamBackoff).
	UpstreamBackoff backoff.Config
}

// DefaultConfig returns the defaults; listeners and upstream are left empty.
func DefaultConfig() Config {
	return Config{
		MaxRequestBytes:         defaultMaxRequestBytes,
		MaxGRPCRequestBytes:     defaultMaxGRPCRequestBytes,
		MaxJSONRequestBytes:     defaultMaxJSONRequestBytes,
		MaxInflightBytes:        defaultMaxInflightBytes,
		MaxConnections:          defaultMaxConnections,
		MaxConnectionsPerPeer:   defaultMaxConnectionsPerPeer,
		MaxRequestsPerPeer:      defaultMaxRequestsPerPeer,
		MaxStreamsPerConnection: defaultMaxStreamsPerConnection,

		ShutdownTimeout:   20 * time.Second,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		KeepAliveDrain:    time.Second,
		LiveTimeout:       2 * time.Second,
		UpstreamBackoff:   defaultUpstreamBackoff,
	}
}

// JoinURLPath appends an OTLP/HTTP signal path to a base endpoint URL.
func JoinURLPath(base, path string) string {
	for len(base) > 0 && base[len(base)-1] == '/' {
		base = base[:len(base)-1]
	}
	return base + path
}

// Options are the proxy's collaborators.
type Options struct {
	Logger     *slog.Logger            // nil: discard
	Registerer prometheus.Registerer   // nil: a private registry
	Gatherer   prometheus.Gatherer     // served at /metrics; nil: none
	Enricher   Enricher                // nil: pass-through
	Version    string                  // podstamp_build_info and User-Agent
	Checks     []Check                 // readiness checks for /readyz
	LiveChecks []Check                 // liveness checks for /livez, each bounded by Config.LiveTimeout
	Handlers   map[string]http.Handler // extra admin handlers, by path

	// DebugHandlers are served on the debug listener, by path (e.g.
	// /debug/pods): what they show is for the node's operators only.
	DebugHandlers map[string]http.Handler

	// Admit decides, per request and before its body is read, whether the
	// connection's peer may send: a non-nil error refuses it with
	// PERMISSION_DENIED / 403 and the error's text. nil admits everyone.
	Admit func(peer netip.Addr) error

	// IdentityHeaders returns upstream headers (name, value pairs) derived
	// from the sending pod, called after stamping; nil or an empty answer
	// sets none. Only names in IdentityHeaderNames are set, and a client's
	// header of any of those names is never forwarded.
	IdentityHeaders     func(peer netip.Addr) []string
	IdentityHeaderNames []string
}

// grpcIngress is the server of the gRPC listener: *grpc.Server or
// *leanServer.
type grpcIngress interface {
	Serve(net.Listener) error
	GracefulStop()
	Stop()
}

// Proxy receives OTLP over gRPC and HTTP, stamps it with an Enricher and
// forwards it synchronously upstream.
type Proxy struct {
	cfg       Config
	log       *slog.Logger
	enricher  Enricher
	m         *metrics
	up        *upstreams
	allowList []string // lower-case header names forwarded upstream
	adm       *admission
	lim       *limits
	draining  atomic.Bool

	lastUpstreamLog atomic.Int64 // unix nanoseconds
	sideHint        atomic.Int32 // side bytes the last segmented stamping needed

	grpcServer grpcIngress
	httpServer *http.Server
	adminSrv   *http.Server
	debugSrv   *http.Server
	grpcLn     net.Listener
	httpLn     net.Listener
	adminLn    net.Listener
	debugLn    net.Listener

	closeOnce sync.Once
}

// New builds a proxy and its upstream clients. It does not listen yet.
func New(cfg Config, opts Options) (*Proxy, error) {
	def := DefaultConfig()
	cfg.applyLimitDefaults()
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = def.ShutdownTimeout
	}
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = def.ReadHeaderTimeout
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = def.ReadTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = def.IdleTimeout
	}
	if cfg.KeepAliveDrain <= 0 {
		cfg.KeepAliveDrain = def.KeepAliveDrain
	}
	if cfg.LiveTimeout <= 0 {
		cfg.LiveTimeout = def.LiveTimeout
	}
	if cfg.UpstreamBackoff == (backoff.Config{}) {
		cfg.UpstreamBackoff = def.UpstreamBackoff
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	version := opts.Version
	if version == "" {
		version = "dev"
	}
	m, err := newMetrics(reg, version)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	// Stamping adds attributes: leave room above the ingress limit.
	lim, err := newLimits(cfg, reg)
	if err != nil {
		return nil, err
	}
	maxSend := int(max(cfg.MaxRequestBytes, cfg.MaxGRPCRequestBytes)) + 1<<20
	up, err := newUpstreams(cfg.Upstream, maxSend, "podstamp/"+version, cfg.UpstreamBackoff)
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		cfg:      cfg,
		log:      log,
		enricher: opts.Enricher,
		m:        m,
		up:       up,
		adm:      newAdmission(opts),
		lim:      lim,
	}
	for _, h := range cfg.ForwardHeaders {
		if h = normHeader(h); h != "" && !slices.Contains(p.allowList, h) {
			p.allowList = append(p.allowList, h)
		}
	}
	p.allowList = p.adm.withoutIdentityNames(p.allowList)

	sopts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(rawCodec{}),
		grpc.MaxRecvMsgSize(int(cfg.MaxGRPCRequestBytes)),
		grpc.MaxConcurrentStreams(uint32(cfg.MaxStreamsPerConnection)),
		// Bounds the HTTP/2 preface and settings exchange of a new connection.
		grpc.ConnectionTimeout(cfg.ReadHeaderTimeout),
		grpc.MaxSendMsgSize(maxResponseBytes),
		grpc.ReadBufferSize(grpcBufferSize),
		grpc.WriteBufferSize(grpcBufferSize),
		grpc.InitialWindowSize(grpcStreamWindow),
		grpc.InitialConnWindowSize(grpcConnWindow),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 5 * time.Minute}),
		grpc.WaitForHandlers(true),
		experimental.BufferPool(bufPool),
		// Handlers run on long-lived workers whose stacks are already grown
		// (a fresh goroutine per RPC measured ~20% more CPU per request);
		// when all are busy, gRPC falls back to a goroutine per RPC. More
		// workers than can run at once only add stacks for every garbage
		// collection to scan: 64 instead of 8 on one processor cost ~7% more
		// CPU per request at 100 requests/s.
		grpc.NumStreamWorkers(uint32(grpcWorkersPerProc * runtime.GOMAXPROCS(0))),
		grpc.Creds(newConnTimeCreds()),
		grpc.InTapHandle(p.inTap), // admission, before the message is read
	}
	switch cfg.GRPCTransport {
	case "", TransportGRPC:
		gs := grpc.NewServer(sopts...)
		for _, sig := range enrich.Signals {
			gs.RegisterService(p.serviceDesc(sig), p)
		}
		p.grpcServer = gs
	case TransportLean:
		p.grpcServer = newLeanServer(p)
	default:
		up.close()
		return nil, fmt.Errorf("unknown gRPC ingress transport %q: %q or %q", cfg.GRPCTransport, TransportGRPC, TransportLean)
	}

	p.httpServer = &http.Server{
		Handler:           p.HTTPHandler(),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.ReadTimeout + maxUpstreamWait(cfg.Upstream),
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ConnContext:       httpConnContext,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: cfg.MaxStreamsPerConnection},
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	p.httpServer.Protocols = protocols

	p.adminSrv = &http.Server{
		Handler: p.adminHandler(adminOptions{
			gatherer:   opts.Gatherer,
			checks:     opts.Checks,
			liveChecks: opts.LiveChecks,
			handlers:   opts.Handlers,
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	p.debugSrv = &http.Server{
		Handler:           debugHandler(opts.DebugHandlers, cfg.EnablePprof),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return p, nil
}

func maxUpstreamWait(ts [numSignals]Target) time.Duration {
	d := time.Duration(0)
	for _, t := range ts {
		d = max(d, t.Timeout)
	}
	if d == 0 {
		d = time.Minute
	}
	return d
}

// Listen binds the configured listeners, so that errors such as an address in
// use surface before serving, and addresses are known (":0" ports).
// Every listener is bound with SO_REUSEPORT on Linux: a new podstamp binds
// the same ports while this one drains.
func (p *Proxy) Listen() error {
	bind := bindListener
	var err error
	if p.grpcLn, err = bind(p.cfg.GRPCListen, "gRPC"); err != nil {
		p.closeListeners()
		return err
	}
	if p.httpLn, err = bind(p.cfg.HTTPListen, "HTTP"); err != nil {
		p.closeListeners()
		return err
	}
	if p.adminLn, err = bind(p.cfg.AdminListen, "admin"); err != nil {
		p.closeListeners()
		return err
	}
	if p.debugLn, err = bind(p.cfg.DebugListen, "debug"); err != nil {
		p.closeListeners()
		return err
	}
	return nil
}

func (p *Proxy) closeListeners() {
	for _, ln := range []net.Listener{p.grpcLn, p.httpLn, p.adminLn, p.debugLn} {
		if ln != nil {
			ln.Close()
		}
	}
}

// GRPCAddr, HTTPAddr, AdminAddr and DebugAddr return the bound addresses
// (after Listen), or nil for a disabled listener.
func (p *Proxy) GRPCAddr() net.Addr  { return addrOf(p.grpcLn) }
func (p *Proxy) HTTPAddr() net.Addr  { return addrOf(p.httpLn) }
func (p *Proxy) AdminAddr() net.Addr { return addrOf(p.adminLn) }
func (p *Proxy) DebugAddr() net.Addr { return addrOf(p.debugLn) }

func addrOf(ln net.Listener) net.Addr {
	if ln == nil {
		return nil
	}
	return ln.Addr()
}

// Draining reports whether the proxy is shutting down.
func (p *Proxy) Draining() bool { return p.draining.Load() }

// Serve serves until ctx ends (calling Listen first if needed), then drains:
// readiness turns false, after DrainDelay the listeners close, in-flight
// requests finish (bounded by ShutdownTimeout), upstream connections close.
// It returns nil after a drain, or the error that stopped a listener.
func (p *Proxy) Serve(ctx context.Context) error {
	if p.grpcLn == nil && p.httpLn == nil && p.adminLn == nil && p.debugLn == nil {
		if err := p.Listen(); err != nil {
			return err
		}
	}
	errc := make(chan error, 4)
	var wg sync.WaitGroup
	serve := func(what string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, grpc.ErrServerStopped) && !errors.Is(err, errLeanServerStopped) {
				errc <- fmt.Errorf("%s server: %w", what, err)
			}
		}()
	}
	if p.grpcLn != nil {
		serve("gRPC", func() error { return p.grpcServer.Serve(p.lim.wrap(p.grpcLn, true)) })
		p.log.Info("serving OTLP/gRPC", "addr", p.grpcLn.Addr().String())
	}
	if p.httpLn != nil {
		serve("HTTP", func() error { return p.httpServer.Serve(p.lim.wrap(p.httpLn, false)) })
		p.log.Info("serving OTLP/HTTP", "addr", p.httpLn.Addr().String())
	}
	if p.adminLn != nil {
		serve("admin", func() error { return p.adminSrv.Serve(p.adminLn) })
		p.log.Info("serving admin", "addr", p.adminLn.Addr().String())
	}
	if p.debugLn != nil {
		serve("debug", func() error { return p.debugSrv.Serve(p.debugLn) })
		p.log.Info("serving debug", "addr", p.debugLn.Addr().String())
	}

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	p.drain()
	wg.Wait()
	return serveErr
}

// drain stops the ingress listeners gracefully, then the admin and debug
// listeners.
func (p *Proxy) drain() {
	p.draining.Store(true)
	p.log.Info("draining", "delay", p.cfg.DrainDelay, "timeout", p.cfg.ShutdownTimeout)
	delay := p.cfg.DrainDelay
	if p.httpLn != nil {
		// Before closing idle HTTP/1.1 connections, every answer says
		// Connection: close for KeepAliveDrain, so a connection in use is
		// closed by its own answer instead of under a request the client
		// may be writing at that moment (which an HTTP client cannot tell
		// from a lost one, so it does not retry a POST). With SO_REUSEPORT
		// the new process is already accepting.
		delay = max(delay, p.cfg.KeepAliveDrain)
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.ShutdownTimeout)
	defer cancel()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		done := make(chan struct{})
		go func() { p.grpcServer.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			p.grpcServer.Stop() // cancels what is left
			<-done
		}
	}()
	go func() {
		defer wg.Done()
		if err := p.httpServer.Shutdown(ctx); err != nil {
			p.httpServer.Close()
		}
	}()
	wg.Wait()
	if ctx.Err() != nil {
		p.log.Warn("shutdown timeout reached: in-flight requests were cancelled", "timeout", p.cfg.ShutdownTimeout)
	} else {
		p.log.Info("drained", "took", time.Since(start).Round(time.Millisecond))
	}
	actx, acancel := context.WithTimeout(context.Background(), time.Second)
	defer acancel()
	if err := p.adminSrv.Shutdown(actx); err != nil {
		p.adminSrv.Close()
	}
	if err := p.debugSrv.Shutdown(actx); err != nil {
		p.debugSrv.Close() // e.g. a CPU profile still being taken
	}
	p.Close()
}

// Close releases the upstream connections and the gRPC server's workers.
// Serve calls it after draining; call it when Serve is never called.
func (p *Proxy) Close() error {
	var err error
	p.closeOnce.Do(func() {
		p.grpcServer.Stop() // no-op after a drain; frees its workers otherwise
		p.closeListeners()
		err = p.up.close()
	})
	return err
}

// errorf builds the status podstamp itself answers with.
func errorf(c codes.Code, format string, args ...any) error {
	return status.Errorf(c, format, args...)
}

// forward is the path every request takes, whatever its ingress: check,
// stamp, forward, count. It takes over body's reference. The returned
// response must be freed by the caller.
func (p *Proxy) forward(ctx context.Context, sig enrich.Signal, proto int, peer enrich.Peer, body mem.Buffer, hdr []string) (mem.BufferSlice, error) {
	p.m.receivedBytes[sig][proto].Add(float64(body.Len()))
	var (
		out   mem.BufferSlice
		items int
		err   error
	)
	if p.enricher != nil {
		var res enrich.Result
		out, res, items, err = stampSegments(ctx, p.enricher, sig, peer, body, &p.sideHint)
		if err != nil {
			p.m.enrichErrors.Inc()
		} else {
			p.m.countEnrich(res)
		}
	} else {
		items, err = enrich.Scan(sig, body.ReadOnlyData())
		if err == nil {
			out = mem.BufferSlice{body}
		} else {
			body.Free()
		}
	}
	if err != nil {
		switch {
		case errors.Is(err, enrich.ErrMalformed):
			p.count(sig, proto, outcomeBadRequest, items)
			return nil, errorf(codes.InvalidArgument, "malformed %s request: %v", sig, err)
		case ctx.Err() != nil:
			p.count(sig, proto, outcomeCanceled, items)
			return nil, status.FromContextError(ctx.Err()).Err()
		default:
			p.count(sig, proto, outcomeInternal, items)
			return nil, errorf(codes.Internal, "stamping %s request: %v", sig, err)
		}
	}
	// After stamping: a held request's pod may only be known now.
	hdr = p.withIdentity(peer.Addr, hdr)
	p.m.sentBytes[sig].Add(float64(out.Len()))

	start := time.Now()
	resp, err := p.up.bySignal[sig].export(ctx, out, hdr)
	code := codes.OK
	if err != nil {
		code = status.Code(err)
	}
	p.m.observeUpstream(sig, code, time.Since(start).Seconds())
	switch {
	case err == nil:
		p.count(sig, proto, outcomeOK, items)
	case ctx.Err() != nil:
		p.count(sig, proto, outcomeCanceled, items)
	default:
		p.count(sig, proto, outcomeUpstreamError, items)
		p.logUpstreamError(sig, err)
	}
	return resp, err
}

// upstreamLogEvery bounds how often upstream failures are logged; every one
// is counted in podstamp_requests_total{outcome="upstream_error"}.
const upstreamLogEvery = 10 * time.Second

// logUpstreamError logs an upstream failure at most once per upstreamLogEvery.
func (p *Proxy) logUpstreamError(sig enrich.Signal, err error) {
	now := time.Now().UnixNano()
	last := p.lastUpstreamLog.Load()
	if now-last < int64(upstreamLogEvery) || !p.lastUpstreamLog.CompareAndSwap(last, now) {
		return
	}
	st := status.Convert(err)
	p.log.Warn("upstream request failed (logged at most every 10s)", "signal", sig.String(),
		"code", st.Code().String(), "err", st.Message())
}

func (p *Proxy) count(sig enrich.Signal, proto int, o outcome, items int) {
	p.m.requests[sig][proto][o].Inc()
	if items > 0 {
		p.m.items[sig][proto][o].Add(float64(items))
	}
}
