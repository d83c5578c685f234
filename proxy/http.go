package proxy

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

const (
	contentTypeProtobuf = "application/x-protobuf"
	contentTypeJSON     = "application/json"
)

// HTTPHandler returns the OTLP/HTTP ingress handler.
func (p *Proxy) HTTPHandler() http.Handler { return http.HandlerFunc(p.serveHTTP) }

var errTooLarge = errors.New("request body too large")

func (p *Proxy) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if p.draining.Load() {
		w.Header().Set("Connection", "close") // see Config.KeepAliveDrain
	}
	if !p.admitHTTP(w, r) {
		return
	}
	sig, ok := signalByPath(r.URL.Path)
	if !ok {
		http.Error(w, "404 page not found: OTLP/HTTP paths are /v1/traces, /v1/metrics, /v1/logs and /v1development/profiles", http.StatusNotFound)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "405 method not allowed: use POST", http.StatusMethodNotAllowed)
		return
	}
	var isJSON bool
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case contentTypeProtobuf, "application/protobuf":
	case contentTypeJSON:
		isJSON = true
	default:
		http.Error(w, fmt.Sprintf("415 unsupported media type %q: use %s or %s", mt, contentTypeProtobuf, contentTypeJSON), http.StatusUnsupportedMediaType)
		return
	}
	var gz bool
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		gz = true
	default:
		http.Error(w, fmt.Sprintf("415 unsupported Content-Encoding %q: use gzip or none", enc), http.StatusUnsupportedMediaType)
		return
	}

	p.m.inflight.Inc()
	defer p.m.inflight.Dec()

	// Everything the request holds is charged to the in-flight budget (and
	// its peer's share) before it is read or made, and given back when the
	// answer is written.
	c := charge{l: p.lim}
	if cc := httpConnOf(r).conn; cc != nil {
		if !cc.peer.enter(p.lim.maxPeerRequests) {
			p.rejectHTTP(w, isJSON, sig, rejectPerPeer)
			return
		}
		defer cc.peer.leave()
		c.peer = cc.peer
	}
	defer c.done()
	limit := p.cfg.MaxRequestBytes
	if isJSON {
		limit = p.lim.maxJSON
	}
	body, err := p.readBody(w, r, gz, limit, &c)
	if err != nil {
		switch {
		case errors.Is(err, errTooLarge):
			p.count(sig, protoHTTP, outcomeTooLarge, 0)
			writeStatus(w, isJSON, http.StatusRequestEntityTooLarge, "", status.New(codes.ResourceExhausted,
				fmt.Sprintf("request body over the %d byte limit (after decompression)", limit)))
		case errors.Is(err, errOverBudget):
			p.rejectHTTP(w, isJSON, sig, c.why)
		case errors.Is(err, errReadTimeout):
			// Retryable: a slow client is not a bad request.
			p.lim.rejected[rejectReadTimeout].Inc()
			p.count(sig, protoHTTP, outcomeCanceled, 0)
			w.Header().Set("Connection", "close")
			writeStatus(w, isJSON, http.StatusServiceUnavailable, retryAfterHeader(retryAfter), status.New(codes.Unavailable,
				fmt.Sprintf("request body not received within the %v read timeout", p.cfg.ReadTimeout)))
		default:
			p.count(sig, protoHTTP, outcomeBadRequest, 0)
			writeStatus(w, isJSON, http.StatusBadRequest, "", status.New(codes.InvalidArgument, "reading request body: "+err.Error()))
		}
		return
	}
	if isJSON {
		js := body.ReadOnlyData()
		cost := jsonDecodeBound(int(sig), js)
		if !c.grow(cost) {
			body.Free()
			most := p.lim.budget.limit
			if c.peer != nil {
				most = p.lim.maxPeerBytes
			}
			if c.n+cost > most { // would never fit
				p.count(sig, protoHTTP, outcomeTooLarge, 0)
				writeStatus(w, isJSON, http.StatusRequestEntityTooLarge, "", status.New(codes.ResourceExhausted,
					fmt.Sprintf("decoding this JSON request would take about %d bytes, over the %d byte in-flight limit: send fewer items per request, or protobuf", cost, most)))
				return
			}
			p.rejectHTTP(w, isJSON, sig, c.why)
			return
		}
		// The transcoder appends into a pooled buffer of the charged
		// bound, which it never outgrows (otlpJSONBound).
		var out *[]byte
		var dst []byte
		if signals[sig].jsonRoot != nil {
			out = bufPool.Get(int(cost))
			dst = (*out)[:0]
		}
		pb, err := signals[sig].requestJSONToProto(dst, js)
		body.Free()
		if err != nil {
			if out != nil {
				bufPool.Put(out)
			}
			p.count(sig, protoHTTP, outcomeBadRequest, 0)
			writeStatus(w, isJSON, http.StatusBadRequest, "", status.New(codes.InvalidArgument, fmt.Sprintf("malformed %s JSON: %v", sig, err)))
			return
		}
		// From here on: the protobuf's buffer and its forwarding copy.
		held := int64(len(pb))
		if out != nil && cap(pb) == cap(*out) && len(pb) > 0 && &pb[:1][0] == &(*out)[:1][0] {
			*out = pb
			held = int64(cap(pb))
			body = mem.NewBuffer(out, bufPool)
		} else {
			if out != nil {
				bufPool.Put(out)
			}
			body = mem.SliceBuffer(pb)
		}
		if !c.set(held + forwardCost(int64(len(pb)))) {
			body.Free()
			p.rejectHTTP(w, isJSON, sig, c.why)
			return
		}
	}

	resp, err := p.forward(r.Context(), sig, protoHTTP, httpPeer(r), body, p.httpHeaders(r))
	if err != nil {
		p.writeError(w, isJSON, err)
		return
	}
	defer resp.Free()
	if isJSON {
		js, err := signals[sig].responseProtoToJSON(resp.Materialize())
		if err != nil {
			writeStatus(w, isJSON, http.StatusBadGateway, "", status.New(codes.Unavailable, "upstream answer is not a valid export response: "+err.Error()))
			return
		}
		w.Header().Set("Content-Type", contentTypeJSON)
		w.Header().Set("Content-Length", strconv.Itoa(len(js)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(js)
		return
	}
	w.Header().Set("Content-Type", contentTypeProtobuf)
	w.Header().Set("Content-Length", strconv.Itoa(resp.Len()))
	w.WriteHeader(http.StatusOK)
	for _, b := range resp {
		_, _ = w.Write(b.ReadOnlyData())
	}
}

// httpHeaders returns the allow-listed request headers as key, value pairs.
func (p *Proxy) httpHeaders(r *http.Request) []string {
	var out []string
	for _, k := range p.allowList {
		for _, v := range r.Header.Values(k) {
			out = append(out, k, v)
		}
	}
	return out
}

func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// firstChunk is the most a body's buffer starts with. A Content-Length is
// only a claim: the buffer grows as the bytes arrive, so a client that
// announces a large body and sends nothing holds a charge, not memory.
const firstChunk = 64 << 10

// readBody reads the (decompressed) request body into a pooled buffer,
// enforcing limit after decompression, and charges c for the body and its
// forwarding copy: up front from a Content-Length, else as the buffer
// grows.
func (p *Proxy) readBody(w http.ResponseWriter, r *http.Request, gz bool, limit int64, c *charge) (mem.Buffer, error) {
	pool := bufPool
	if !gz && r.ContentLength > limit {
		return nil, errTooLarge
	}
	src := http.MaxBytesReader(w, r.Body, limit)
	if !gz && r.ContentLength >= 0 {
		if !c.grow(httpCost(r.ContentLength)) {
			return nil, errOverBudget
		}
		// The charge covers growing too: the buffer before the last
		// is smaller than the body, the forwarding copy not made yet.
		return readKnown(src, int(r.ContentLength), pool)
	}
	hint := 32 << 10
	if gz {
		zr, err := newGzipReader(src)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", readErr(err))
		}
		defer zr.Close()
		src = zr
		if r.ContentLength > 0 {
			hint = int(min(r.ContentLength*4, limit, firstChunk))
		}
	}
	body, err := readAllPooled(src, hint, limit, pool, c)
	if err != nil {
		return nil, err
	}
	if !c.grow(forwardCost(int64(len(body.ReadOnlyData())))) {
		body.Free()
		return nil, errOverBudget
	}
	return body, nil
}

func readErr(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return errTooLarge
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return errReadTimeout
	}
	return err
}

// knownGrowth is how much readKnown's buffer grows each time it is full:
// past firstChunk it never holds more than knownGrowth times what has
// arrived, and a body of up to 16 times firstChunk (1 MiB) is copied at
// most twice on the way (doubling copied a typical 160 KiB export's first
// 192 KiB; BenchmarkReadKnown).
const knownGrowth = 4

// readKnown reads a body of n announced bytes into a buffer from pool,
// starting with at most firstChunk and growing knownGrowth-fold as the
// bytes arrive.
func readKnown(r io.Reader, n int, pool *bytePool) (mem.Buffer, error) {
	buf := pool.Get(min(n, firstChunk))
	b := (*buf)[:0]
	for len(b) < n {
		if len(b) == cap(b) {
			nb := pool.Get(min(knownGrowth*cap(b), n))
			*nb = append((*nb)[:0], b...)
			pool.Put(buf)
			buf, b = nb, *nb
		}
		m, err := r.Read(b[len(b):min(cap(b), n)])
		b = b[:len(b)+m]
		if err != nil && (err != io.EOF || len(b) < n) {
			pool.Put(buf)
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, readErr(err)
		}
	}
	*buf = b
	return mem.NewBuffer(buf, pool), nil
}

// readAllPooled reads r to its end into a buffer from pool, failing with
// errTooLarge past limit bytes, and charges c for each buffer before
// taking it (the one it replaces is given back after the copy).
func readAllPooled(r io.Reader, hint int, limit int64, pool *bytePool, c *charge) (mem.Buffer, error) {
	hint = max(hint, 512)
	if !c.grow(pooledCap(hint)) {
		return nil, errOverBudget
	}
	buf := pool.Get(hint)
	b := (*buf)[:0]
	for {
		if len(b) == cap(b) {
			if int64(len(b)) > limit {
				pool.Put(buf)
				return nil, errTooLarge
			}
			n := min(2*cap(b), int(limit)+1)
			if !c.grow(pooledCap(n)) {
				pool.Put(buf)
				return nil, errOverBudget
			}
			nb := pool.Get(n)
			*nb = append((*nb)[:0], b...)
			pool.Put(buf)
			c.shrink(int64(cap(b)))
			buf, b = nb, *nb
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if int64(len(b)) > limit {
			pool.Put(buf)
			return nil, errTooLarge
		}
		if err == io.EOF {
			*buf = b
			return mem.NewBuffer(buf, pool), nil
		}
		if err != nil {
			pool.Put(buf)
			return nil, readErr(err)
		}
	}
}

// writeError answers an OTLP/HTTP client with the status of err: an HTTP
// upstream's own status and Retry-After, else the mapping of the gRPC status.
func (p *Proxy) writeError(w http.ResponseWriter, isJSON bool, err error) {
	var he *httpUpstreamError
	if errors.As(err, &he) {
		writeStatus(w, isJSON, he.httpStatus, he.retryAfter, he.st)
		return
	}
	st := status.Convert(err)
	code := httpStatusFromGRPC(st)
	retryAfter := ""
	if d := retryDelay(st); d >= 0 && retryableHTTP(code) {
		retryAfter = retryAfterHeader(d)
	}
	writeStatus(w, isJSON, code, retryAfter, st)
}

// writeStatus writes an OTLP/HTTP error: a google.rpc.Status body in the
// request's encoding.
func writeStatus(w http.ResponseWriter, isJSON bool, code int, retryAfter string, st *status.Status) {
	var body []byte
	var err error
	ct := contentTypeProtobuf
	if isJSON {
		ct = contentTypeJSON
		body, err = protojson.Marshal(st.Proto())
	} else {
		body, err = proto.Marshal(st.Proto())
	}
	if err != nil {
		body, ct = []byte(st.Message()), "text/plain; charset=utf-8"
	}
	h := w.Header()
	h.Set("Content-Type", ct)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if retryAfter != "" {
		h.Set("Retry-After", retryAfter)
	}
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }
