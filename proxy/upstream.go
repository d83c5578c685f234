package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/podstamp/podstamp/enrich"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Upstream protocols.
const (
	ProtocolGRPC         = "grpc"
	ProtocolHTTPProtobuf = "http/protobuf"
)

// Target is where one signal is forwarded to, and how.
type Target struct {
	// Endpoint is, for gRPC, an OTLP exporter endpoint: "http://host:port"
	// (plaintext), "https://host:port" (TLS), "dns:///host:port" or "host:port"
	// (TLS unless Insecure). For http/protobuf it is the full URL requests
	// are POSTed to (including the signal path, see HTTPPath).
	Endpoint string
	Protocol string // ProtocolGRPC (default) or ProtocolHTTPProtobuf
	// Headers are added to every request (gRPC metadata or HTTP headers).
	Headers     map[string]string
	Compression string        // "gzip" or "" / "none"
	Timeout     time.Duration // per request; 0 means none beyond the client's own deadline
	Insecure    bool          // gRPC endpoints without http(s) scheme: plaintext
	CAFile      string        // PEM roots to verify the upstream; system roots when empty
	CertFile    string        // client certificate (PEM), with KeyFile
	KeyFile     string
	// Transport is, for gRPC, TransportGRPC ("" too: grpc-go's client),
	// TransportLean (leanExporter: host:port endpoints only) or
	// TransportAuto (lean where it can, grpc-go's client elsewhere).
	Transport string
}

// GRPCClient returns the client t is forwarded with: TransportLean or
// TransportGRPC, with TransportAuto decided; "" when t is not a valid gRPC
// target.
func (t Target) GRPCClient() string {
	if t.Protocol != "" && t.Protocol != ProtocolGRPC {
		return ""
	}
	ep, err := ParseEndpoint(t.Protocol, t.Endpoint, t.Insecure)
	if err != nil {
		return ""
	}
	return grpcClient(t.Transport, ep.Target)
}

// grpcClient decides TransportAuto for a gRPC target; "" is TransportGRPC.
func grpcClient(transport, target string) string {
	switch transport {
	case "":
		return TransportGRPC
	case TransportAuto:
		if _, ok := leanHostPort(target); ok {
			return TransportLean
		}
		return TransportGRPC
	}
	return transport
}

// HTTPPath returns the OTLP/HTTP path of a signal ("/v1/traces", ...).
func HTTPPath(sig enrich.Signal) string { return signals[sig].path }

// exporter sends one export request upstream.
type exporter interface {
	// export forwards body (the concatenation of its buffers), whose
	// references it takes over, and returns the upstream's raw protobuf
	// response, which the caller must free.
	export(ctx context.Context, body mem.BufferSlice, hdr []string) (mem.BufferSlice, error)
}

// upstreams holds one exporter per signal and the connections they share.
type upstreams struct {
	bySignal [numSignals]exporter
	closers  []func() error
}

func (u *upstreams) close() error {
	var errs []error
	for _, c := range u.closers {
		errs = append(errs, c())
	}
	return errors.Join(errs...)
}

// Transport settings. Flow-control windows are static and larger than a
// typical export, so a request or response crosses in one go: gRPC's dynamic
// windows start at 64 KiB, make a 150 KiB export wait for a WINDOW_UPDATE
// round trip, and send a BDP ping per message; at 100 requests/s that was
// twice the socket writes per request and 15-20% more CPU. Read and write
// buffers of 64 KiB (taken from the pool while a connection reads or
// flushes) cost no measurable CPU against 256 KiB at 100 requests/s and
// keep about 2.5 MiB less resident under saturating load.
const (
	grpcBufferSize     = 64 << 10
	grpcWorkersPerProc = 8
	grpcStreamWindow   = 4 << 20
	grpcConnWindow     = 8 << 20
	httpIdlePerHost    = 512
	maxResponseBytes   = 16 << 20
)

// newUpstreams dials every signal's target; reconnect is the backoff
// between connection attempts to a gRPC upstream.
func newUpstreams(targets [numSignals]Target, maxSend int, userAgent string, reconnect backoff.Config) (*upstreams, error) {
	u := &upstreams{}
	grpcConns := map[string]*grpc.ClientConn{}
	httpClients := map[string]*http.Client{}
	leanPools := map[string]*leanPool{}
	for _, sig := range enrich.Signals {
		t := targets[sig]
		if t.Endpoint == "" {
			u.close()
			return nil, fmt.Errorf("upstream for %s: no endpoint", sig)
		}
		tlsKey := strings.Join([]string{t.CAFile, t.CertFile, t.KeyFile}, "\x00")
		ep, err := ParseEndpoint(t.Protocol, t.Endpoint, t.Insecure)
		if err != nil {
			u.close()
			return nil, fmt.Errorf("upstream for %s: %w", sig, err)
		}
		switch t.Protocol {
		case "", ProtocolGRPC:
			target, useTLS := ep.Target, ep.TLS
			t.Transport = grpcClient(t.Transport, target)
			if t.Transport == TransportLean {
				e, err := u.leanExporter(t, sig, target, useTLS, tlsKey, leanPools, maxSend, userAgent, reconnect)
				if err != nil {
					u.close()
					return nil, fmt.Errorf("upstream for %s: %w", sig, err)
				}
				u.bySignal[sig] = e
				continue
			}
			if t.Transport != TransportGRPC {
				u.close()
				return nil, fmt.Errorf("upstream for %s: unsupported transport %q (want grpc, lean or auto)", sig, t.Transport)
			}
			key := fmt.Sprintf("%s\x00%v\x00%s", target, useTLS, tlsKey)
			cc := grpcConns[key]
			if cc == nil {
				var creds credentials.TransportCredentials = insecure.NewCredentials()
				if useTLS {
					tc, err := tlsConfig(t)
					if err != nil {
						u.close()
						return nil, fmt.Errorf("upstream for %s: %w", sig, err)
					}
					creds = credentials.NewTLS(tc)
				}
				cc, err = grpc.NewClient(target,
					grpc.WithTransportCredentials(creds),
					grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
					grpc.WithReadBufferSize(grpcBufferSize),
					grpc.WithWriteBufferSize(grpcBufferSize),
					grpc.WithInitialWindowSize(grpcStreamWindow),
					grpc.WithInitialConnWindowSize(grpcConnWindow),
					grpc.WithUserAgent(userAgent),
					grpc.WithConnectParams(grpc.ConnectParams{
						Backoff:           reconnect,
						MinConnectTimeout: 5 * time.Second,
					}),
					experimental.WithBufferPool(bufPool),
					grpc.WithDefaultCallOptions(
						grpc.MaxCallRecvMsgSize(maxResponseBytes),
						grpc.MaxCallSendMsgSize(maxSend),
					),
				)
				if err != nil {
					u.close()
					return nil, fmt.Errorf("upstream for %s: %w", sig, err)
				}
				cc.Connect() // dial now rather than on the first export
				grpcConns[key] = cc
				u.closers = append(u.closers, cc.Close)
			}
			e := &grpcExporter{cc: cc, method: signals[sig].method, timeout: t.Timeout}
			e.opts = []grpc.CallOption{grpc.ForceCodecV2(rawCodec{})}
			switch t.Compression {
			case "gzip":
				e.opts = append(e.opts, grpc.UseCompressor("gzip"))
			case "", "none":
			default:
				u.close()
				return nil, fmt.Errorf("upstream for %s: unsupported compression %q", sig, t.Compression)
			}
			for k, v := range t.Headers {
				e.static = append(e.static, strings.ToLower(k), v)
			}
			u.bySignal[sig] = e
		case ProtocolHTTPProtobuf:
			c := httpClients[tlsKey]
			if c == nil {
				tc, err := tlsConfig(t)
				if err != nil {
					u.close()
					return nil, fmt.Errorf("upstream for %s: %w", sig, err)
				}
				tr := &http.Transport{
					Proxy:               http.ProxyFromEnvironment,
					DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
					TLSClientConfig:     tc,
					ForceAttemptHTTP2:   true,
					MaxIdleConns:        httpIdlePerHost,
					MaxIdleConnsPerHost: httpIdlePerHost,
					IdleConnTimeout:     90 * time.Second,
					TLSHandshakeTimeout: 10 * time.Second,
					WriteBufferSize:     64 << 10,
					ReadBufferSize:      16 << 10,
				}
				c = &http.Client{Transport: tr}
				httpClients[tlsKey] = c
				u.closers = append(u.closers, func() error { tr.CloseIdleConnections(); return nil })
			}
			e := &httpExporter{client: c, url: t.Endpoint, timeout: t.Timeout, userAgent: userAgent}
			switch t.Compression {
			case "gzip":
				e.gzip = true
			case "", "none":
			default:
				u.close()
				return nil, fmt.Errorf("upstream for %s: unsupported compression %q", sig, t.Compression)
			}
			e.static = make(http.Header, len(t.Headers))
			for k, v := range t.Headers {
				e.static.Set(k, v)
			}
			u.bySignal[sig] = e
		}
	}
	return u, nil
}

// leanExporter makes signal sig's exporter on the lean transport; signals
// with the same target and TLS files share one pool of connections.
func (u *upstreams) leanExporter(t Target, sig enrich.Signal, target string, useTLS bool, tlsKey string,
	pools map[string]*leanPool, maxSend int, userAgent string, reconnect backoff.Config) (*leanExporter, error) {
	key := fmt.Sprintf("%s\x00%v\x00%s", target, useTLS, tlsKey)
	pool := pools[key]
	if pool == nil {
		var tc *tls.Config
		if useTLS {
			var err error
			if tc, err = tlsConfig(t); err != nil {
				return nil, err
			}
		}
		var err error
		if pool, err = newLeanPool(target, tc, userAgent, reconnect); err != nil {
			return nil, err
		}
		pools[key] = pool
		u.closers = append(u.closers, pool.close)
	}
	e := &leanExporter{pool: pool, method: signals[sig].method, timeout: t.Timeout, maxSend: maxSend}
	switch t.Compression {
	case "gzip":
		e.gzip = true
	case "", "none":
	default:
		return nil, fmt.Errorf("unsupported compression %q", t.Compression)
	}
	for k, v := range t.Headers {
		e.static = append(e.static, strings.ToLower(k), v)
	}
	return e, nil
}

// Endpoint is an upstream endpoint as the proxy dials it.
type Endpoint struct {
	// Target is the gRPC target (a resolver scheme and its address) or the
	// http/protobuf URL.
	Target string
	TLS    bool
}

// ParseEndpoint parses Target.Endpoint of protocol ("" is gRPC): what it
// refuses, New refuses. For gRPC, "http://host[:port]" is plaintext and
// "https://host[:port]" TLS (port 4317 when omitted); "host:port" and a
// target of any registered gRPC resolver ("dns:///host:port", "unix:path",
// "passthrough:///host:port"...) are TLS unless insecure. For http/protobuf
// the endpoint is an http:// or https:// URL.
func ParseEndpoint(protocol, endpoint string, insecure bool) (Endpoint, error) {
	switch protocol {
	case "", ProtocolGRPC:
		target, useTLS, err := grpcTarget(endpoint, insecure)
		return Endpoint{Target: target, TLS: useTLS}, err
	case ProtocolHTTPProtobuf:
		u, err := url.Parse(endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return Endpoint{}, fmt.Errorf("endpoint %q is not an http:// or https:// URL", endpoint)
		}
		return Endpoint{Target: endpoint, TLS: u.Scheme == "https"}, nil
	default:
		return Endpoint{}, fmt.Errorf("unsupported protocol %q (want grpc or http/protobuf)", protocol)
	}
}

// grpcTarget turns an OTLP gRPC endpoint into a gRPC target and whether TLS is used.
func grpcTarget(endpoint string, insecureFlag bool) (target string, useTLS bool, err error) {
	switch {
	case strings.HasPrefix(endpoint, "http://"), strings.HasPrefix(endpoint, "https://"):
		u, err := url.Parse(endpoint)
		if err != nil || u.Host == "" {
			return "", false, fmt.Errorf("endpoint %q is not a valid URL", endpoint)
		}
		host := u.Host
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), "4317")
		}
		return "dns:///" + host, u.Scheme == "https", nil
	case strings.HasPrefix(endpoint, "dns:"), strings.HasPrefix(endpoint, "unix:"),
		strings.HasPrefix(endpoint, "passthrough:"):
		return endpoint, !insecureFlag, nil
	case strings.Contains(endpoint, ":///") && resolver.Get(endpoint[:strings.Index(endpoint, ":///")]) != nil:
		return endpoint, !insecureFlag, nil // another registered gRPC resolver
	case strings.Contains(endpoint, "://"):
		return "", false, fmt.Errorf("endpoint %q: unsupported scheme (want http, https or dns)", endpoint)
	default:
		if _, _, err := net.SplitHostPort(endpoint); err != nil {
			return "", false, fmt.Errorf("endpoint %q: want host:port: %v", endpoint, err)
		}
		return "dns:///" + endpoint, !insecureFlag, nil
	}
}

func tlsConfig(t Target) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificates", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("client certificate and key must be given together")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// grpcExporter forwards over OTLP/gRPC with the raw codec: the request bytes
// go out as they are, the response bytes come back as they are.
type grpcExporter struct {
	cc      *grpc.ClientConn
	method  string
	static  []string // key, value pairs
	opts    []grpc.CallOption
	timeout time.Duration
}

func (e *grpcExporter) export(ctx context.Context, body mem.BufferSlice, hdr []string) (mem.BufferSlice, error) {
	ctx, cancel := withUpstreamTimeout(ctx, e.timeout)
	defer cancel()
	if len(hdr)+len(e.static) > 0 {
		md := make(metadata.MD, (len(hdr)+len(e.static))/2)
		for i := 0; i+1 < len(hdr); i += 2 {
			md[hdr[i]] = append(md[hdr[i]], hdr[i+1])
		}
		for i := 0; i+1 < len(e.static); i += 2 {
			md[e.static[i]] = []string{e.static[i+1]}
		}
		ctx = metadata.NewOutgoingContext(ctx, md)
	}
	req := frame{data: body}
	var resp frame
	err := e.cc.Invoke(ctx, e.method, &req, &resp, e.opts...)
	if req.data != nil { // never handed to the transport
		req.data.Free()
	}
	if err != nil {
		resp.data.Free()
		return nil, err
	}
	return resp.data, nil
}

// httpExporter forwards over OTLP/HTTP with protobuf bodies.
type httpExporter struct {
	client    *http.Client
	url       string
	static    http.Header
	gzip      bool
	timeout   time.Duration
	userAgent string
}

// bufferBody is a request body over reference-counted buffers, read one
// after the other: every reader holds its own references, released on
// Close, so the buffers go back to their pool only when the transport is
// done with them.
type bufferBody struct {
	bufs   mem.BufferSlice
	next   int    // next buffer to read
	cur    []byte // rest of the buffer being read
	closed atomic.Bool
}

func newBufferBody(bufs mem.BufferSlice) *bufferBody {
	bufs.Ref()
	return &bufferBody{bufs: bufs}
}

// Read fills p across buffer boundaries: a short read would cost the
// transport a socket write of its own.
func (b *bufferBody) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(b.cur) == 0 {
			if b.next == len(b.bufs) {
				break
			}
			b.cur = b.bufs[b.next].ReadOnlyData()
			b.next++
			continue
		}
		m := copy(p[n:], b.cur)
		b.cur = b.cur[m:]
		n += m
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (b *bufferBody) Close() error {
	if b.closed.CompareAndSwap(false, true) {
		b.bufs.Free()
	}
	return nil
}

func (e *httpExporter) export(ctx context.Context, body mem.BufferSlice, hdr []string) (mem.BufferSlice, error) {
	defer func() { body.Free() }() // body may be replaced by its compressed form
	ctx, cancel := withUpstreamTimeout(ctx, e.timeout)
	defer cancel()
	if e.gzip {
		body = gzipBuffers(body)
	}
	rb := newBufferBody(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, rb)
	if err != nil {
		rb.Close()
		return nil, status.Error(codes.Internal, err.Error())
	}
	req.ContentLength = int64(body.Len())
	req.GetBody = func() (io.ReadCloser, error) { return newBufferBody(body), nil }
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	for k, v := range e.static {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", contentTypeProtobuf)
	if e.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	req.Header.Set("User-Agent", e.userAgent)

	resp, err := e.client.Do(req)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, status.FromContextError(cerr).Err()
		}
		return nil, status.Errorf(codes.Unavailable, "upstream unreachable: %v", err)
	}
	defer resp.Body.Close()
	data, err := readLimited(resp.Body, resp.ContentLength, maxResponseBytes)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, status.FromContextError(cerr).Err()
		}
		return nil, status.Errorf(codes.Unavailable, "reading upstream answer: %v", err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return mem.BufferSlice{mem.SliceBuffer(data)}, nil
	}
	return nil, newHTTPUpstreamError(resp.StatusCode, resp.Header, data)
}

func readLimited(r io.Reader, hint int64, limit int) ([]byte, error) {
	if hint > int64(limit) {
		return nil, fmt.Errorf("answer of %d bytes is over the %d byte limit", hint, limit)
	}
	if hint >= 0 {
		b := make([]byte, hint)
		_, err := io.ReadFull(r, b)
		return b, err
	}
	b, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err == nil && len(b) > limit {
		err = fmt.Errorf("answer is over the %d byte limit", limit)
	}
	return b, err
}

// httpUpstreamError is an HTTP upstream's error answer. It carries the HTTP
// status and Retry-After so OTLP/HTTP clients get them unchanged, and the
// equivalent gRPC status for OTLP/gRPC clients.
type httpUpstreamError struct {
	httpStatus int
	retryAfter string
	st         *status.Status
}

func (e *httpUpstreamError) Error() string {
	return fmt.Sprintf("upstream answered HTTP %d: %s", e.httpStatus, e.st.Message())
}

func (e *httpUpstreamError) GRPCStatus() *status.Status { return e.st }

func newHTTPUpstreamError(code int, h http.Header, body []byte) *httpUpstreamError {
	var sp *spb.Status
	ct, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	if len(body) > 0 {
		p := &spb.Status{}
		switch ct {
		case contentTypeProtobuf, "application/protobuf":
			if proto.Unmarshal(body, p) == nil {
				sp = p
			}
		case contentTypeJSON:
			if (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, p) == nil {
				sp = p
			}
		}
		if sp == nil {
			msg := strings.TrimSpace(string(body))
			if len(msg) > 512 {
				msg = msg[:512]
			}
			sp = &spb.Status{Message: msg}
		}
	}
	ra := h.Get("Retry-After")
	return &httpUpstreamError{httpStatus: code, retryAfter: ra, st: statusFromHTTP(code, sp, ra)}
}

// withUpstreamTimeout adds the upstream timeout to ctx, every exporter's
// first step; not when ctx's own deadline (the client's) comes first, which
// saves a timer per request: then cancel does nothing.
func withUpstreamTimeout(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout <= 0 {
		return ctx, func() {}
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= timeout {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, timeout)
}

// defaultUpstreamBackoff is Config.UpstreamBackoff's default. Clients are
// waiting and retrying while the upstream is down: podstamp reconnects within
// a second or two of its return, not after gRPC's default backoff of up to
// two minutes.
var defaultUpstreamBackoff = backoff.Config{
	BaseDelay:  100 * time.Millisecond,
	Multiplier: 1.6,
	Jitter:     0.2,
	MaxDelay:   2 * time.Second,
}
