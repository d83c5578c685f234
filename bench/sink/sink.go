package sink

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip" // accept gzip-compressed gRPC requests
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/podstamp/podstamp/bench/internal/otlpwire"
)

// Attribute keys the identity check reads.
const (
	SourceAttr    = "loadgen.source"
	PodNameAttr   = "k8s.pod.name"
	PodUIDAttr    = "k8s.pod.uid"
	NamespaceAttr = "k8s.namespace.name"
)

// Config configures a Sink. Empty listen addresses disable that listener.
type Config struct {
	GRPCListen    string // e.g. 127.0.0.1:4317
	HTTPListen    string // e.g. 127.0.0.1:4318; also serves the control paths
	ControlListen string // optional separate listener for the control paths
	// MaxRecords bounds the individual records kept (default 100000; <0 keeps none).
	MaxRecords int
	// MaxRequestBytes bounds one request after decompression (default 64 MiB).
	MaxRequestBytes int
	// Print, when set, receives each resource in the debug exporter's format.
	Print  io.Writer
	Logger *slog.Logger
}

// Record is one received resource.
type Record struct {
	Signal     string            `json:"signal"`
	Transport  string            `json:"transport"` // grpc, http/protobuf, http/json
	Peer       string            `json:"peer"`
	Attributes map[string]string `json:"attributes"`
	Items      int               `json:"items"`
}

// Stats are the sink's counters since start or the last Reset.
type Stats struct {
	Requests       map[string]int64 `json:"requests"`  // accepted export requests by signal
	Resources      map[string]int64 `json:"resources"` // resources by signal
	Items          map[string]int64 `json:"items"`     // spans / data points / log records / profiles by signal
	TotalItems     int64            `json:"total_items"`
	Bytes          int64            `json:"bytes"`     // uncompressed protobuf bytes accepted
	Failed         int64            `json:"failed"`    // requests refused because failing was on
	Malformed      int64            `json:"malformed"` // requests refused as undecodable
	Failing        bool             `json:"failing"`
	RecordsKept    int              `json:"records_kept"`
	RecordsDropped int64            `json:"records_dropped"`
}

// identKey aggregates resources for the identity check.
type identKey struct {
	Source, Namespace, PodName, PodUID string
}

// IdentityRow is one aggregated (source, stamped pod) pair.
type IdentityRow struct {
	Source    string `json:"source"`
	Namespace string `json:"namespace,omitempty"`
	PodName   string `json:"pod_name,omitempty"`
	PodUID    string `json:"pod_uid,omitempty"`
	Resources int64  `json:"resources"`
	Items     int64  `json:"items"`
}

// Sink is a running OTLP receiver. Create it with Start.
type Sink struct {
	cfg Config
	log *slog.Logger

	grpcSrv  *grpc.Server
	grpcLis  net.Listener
	httpSrv  *http.Server
	httpLis  net.Listener
	ctrlSrv  *http.Server
	ctrlLis  net.Listener
	wg       sync.WaitGroup
	closed   atomic.Bool
	failing  atomic.Bool
	failGRPC atomic.Uint32
	failHTTP atomic.Int32

	mu      sync.Mutex
	stats   Stats
	records []Record
	ident   map[identKey]*IdentityRow
	changed chan struct{} // closed and replaced on every accepted request

	printMu sync.Mutex
	printN  int
}

// Start listens and serves until Close.
func Start(cfg Config) (*Sink, error) {
	if cfg.MaxRecords == 0 {
		cfg.MaxRecords = 100000
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = 64 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Sink{cfg: cfg, log: cfg.Logger, changed: make(chan struct{})}
	s.failGRPC.Store(uint32(codes.Unavailable))
	s.failHTTP.Store(http.StatusServiceUnavailable)
	s.resetLocked()

	var err error
	if cfg.GRPCListen != "" {
		if s.grpcLis, err = net.Listen("tcp", cfg.GRPCListen); err != nil {
			return nil, fmt.Errorf("sink: grpc listen: %w", err)
		}
		s.grpcSrv = grpc.NewServer(
			grpc.ForceServerCodecV2(otlpwire.Codec{}),
			grpc.MaxRecvMsgSize(cfg.MaxRequestBytes),
			grpc.ReadBufferSize(256<<10),
			grpc.WriteBufferSize(64<<10),
			grpc.InitialWindowSize(4<<20),
			grpc.InitialConnWindowSize(16<<20),
		)
		for _, sig := range otlpwire.Signals {
			s.grpcSrv.RegisterService(s.serviceDesc(sig), s)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_ = s.grpcSrv.Serve(s.grpcLis)
		}()
	}
	if cfg.HTTPListen != "" {
		if s.httpLis, err = net.Listen("tcp", cfg.HTTPListen); err != nil {
			s.Close()
			return nil, fmt.Errorf("sink: http listen: %w", err)
		}
		mux := http.NewServeMux()
		for _, sig := range otlpwire.Signals {
			mux.Handle("POST "+otlpwire.HTTPPath[sig], s.otlpHTTP(sig))
		}
		s.mountControl(mux)
		s.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_ = s.httpSrv.Serve(s.httpLis)
		}()
	}
	if cfg.ControlListen != "" {
		if s.ctrlLis, err = net.Listen("tcp", cfg.ControlListen); err != nil {
			s.Close()
			return nil, fmt.Errorf("sink: control listen: %w", err)
		}
		mux := http.NewServeMux()
		s.mountControl(mux)
		s.ctrlSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_ = s.ctrlSrv.Serve(s.ctrlLis)
		}()
	}
	return s, nil
}

// GRPCAddr is the gRPC listener's address ("" when disabled).
func (s *Sink) GRPCAddr() string { return addr(s.grpcLis) }

// HTTPAddr is the OTLP/HTTP listener's address ("" when disabled).
func (s *Sink) HTTPAddr() string { return addr(s.httpLis) }

// ControlAddr is the separate control listener's address, or the HTTP
// listener's when there is no separate one.
func (s *Sink) ControlAddr() string {
	if s.ctrlLis != nil {
		return addr(s.ctrlLis)
	}
	return addr(s.httpLis)
}

func addr(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}

// Close stops every listener at once (in-flight requests are cut) and waits
// for the serving goroutines.
func (s *Sink) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if s.grpcSrv != nil {
		s.grpcSrv.Stop()
	}
	if s.httpSrv != nil {
		_ = s.httpSrv.Close()
	}
	if s.ctrlSrv != nil {
		_ = s.ctrlSrv.Close()
	}
	s.wg.Wait()
	return nil
}

// SetFail makes every export fail (true) or succeed (false).
func (s *Sink) SetFail(on bool) { s.failing.Store(on) }

// SetFailCodes sets the gRPC code and HTTP status used while failing
// (defaults UNAVAILABLE and 503).
func (s *Sink) SetFailCodes(grpcCode codes.Code, httpStatus int) {
	s.failGRPC.Store(uint32(grpcCode))
	s.failHTTP.Store(int32(httpStatus))
}

// Reset clears the counters and records (failing stays as it is).
func (s *Sink) Reset() {
	s.mu.Lock()
	s.resetLocked()
	s.notifyLocked()
	s.mu.Unlock()
}

func (s *Sink) resetLocked() {
	s.stats = Stats{
		Requests:  map[string]int64{},
		Resources: map[string]int64{},
		Items:     map[string]int64{},
	}
	s.records = nil
	s.ident = map[identKey]*IdentityRow{}
}

func (s *Sink) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Stats returns a copy of the counters.
func (s *Sink) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Requests = cloneMap(st.Requests)
	st.Resources = cloneMap(st.Resources)
	st.Items = cloneMap(st.Items)
	st.Failing = s.failing.Load()
	st.RecordsKept = len(s.records)
	return st
}

func cloneMap(m map[string]int64) map[string]int64 {
	c := make(map[string]int64, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// Records returns a copy of the kept records, in arrival order.
func (s *Sink) Records() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Record(nil), s.records...)
}

// IdentityRows returns the aggregated (source, stamped pod) table, sorted.
func (s *Sink) IdentityRows() []IdentityRow {
	s.mu.Lock()
	rows := make([]IdentityRow, 0, len(s.ident))
	for _, r := range s.ident {
		rows = append(rows, *r)
	}
	s.mu.Unlock()
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.Source != b.Source {
			return a.Source < b.Source
		}
		if a.PodName != b.PodName {
			return a.PodName < b.PodName
		}
		return a.PodUID < b.PodUID
	})
	return rows
}

// Wait blocks until cond holds for the stats or ctx ends.
func (s *Sink) Wait(ctx context.Context, cond func(Stats) bool) error {
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond(s.Stats()) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// errMalformed marks a payload the sink cannot parse.
var errMalformed = errors.New("malformed")

// errFailing marks a request refused on purpose.
var errFailing = errors.New("failing on purpose")

// receive parses and accounts one export request.
func (s *Sink) receive(signal, transport, peerAddr string, body []byte) error {
	if s.failing.Load() {
		s.mu.Lock()
		s.stats.Failed++
		s.notifyLocked()
		s.mu.Unlock()
		return errFailing
	}
	var resources []otlpwire.Resource
	err := otlpwire.Scan(signal, body, func(r otlpwire.Resource) { resources = append(resources, r) })
	if err != nil {
		s.mu.Lock()
		s.stats.Malformed++
		s.notifyLocked()
		s.mu.Unlock()
		return fmt.Errorf("%w: %v", errMalformed, err)
	}
	if s.cfg.Print != nil {
		s.print(signal, transport, peerAddr, resources)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Requests[signal]++
	s.stats.Bytes += int64(len(body))
	for i := range resources {
		r := &resources[i]
		s.stats.Resources[signal]++
		s.stats.Items[signal] += int64(r.Items)
		s.stats.TotalItems += int64(r.Items)
		var k identKey
		k.Source, _ = r.Get(SourceAttr)
		k.Namespace, _ = r.Get(NamespaceAttr)
		k.PodName, _ = r.Get(PodNameAttr)
		k.PodUID, _ = r.Get(PodUIDAttr)
		row := s.ident[k]
		if row == nil {
			row = &IdentityRow{Source: k.Source, Namespace: k.Namespace, PodName: k.PodName, PodUID: k.PodUID}
			s.ident[k] = row
		}
		row.Resources++
		row.Items += int64(r.Items)
		if s.cfg.MaxRecords < 0 {
			continue
		}
		if len(s.records) >= s.cfg.MaxRecords {
			s.stats.RecordsDropped++
			continue
		}
		attrs := make(map[string]string, len(r.Attrs))
		for _, a := range r.Attrs {
			attrs[a.Key] = a.Value
		}
		s.records = append(s.records, Record{Signal: signal, Transport: transport, Peer: peerAddr, Attributes: attrs, Items: r.Items})
	}
	s.notifyLocked()
	return nil
}

func (s *Sink) print(signal, transport, peerAddr string, resources []otlpwire.Resource) {
	var b strings.Builder
	s.printMu.Lock()
	defer s.printMu.Unlock()
	fmt.Fprintf(&b, "%s\t%s\t{\"peer\": %q, \"transport\": %q, \"resources\": %d}\n",
		time.Now().UTC().Format(time.RFC3339Nano), signal, peerAddr, transport, len(resources))
	for i, r := range resources {
		fmt.Fprintf(&b, "%s #%d\n", otlpwire.ResourceKind[signal], i)
		b.WriteString("Resource attributes:\n")
		for _, a := range r.Attrs {
			fmt.Fprintf(&b, "     -> %s: %s(%s)\n", a.Key, a.Type, a.Value)
		}
		fmt.Fprintf(&b, "Items: %d %s\n", r.Items, otlpwire.ItemName[signal])
	}
	s.printN++
	_, _ = io.WriteString(s.cfg.Print, b.String())
}

// serviceDesc describes one signal's Export service for the raw codec.
func (s *Sink) serviceDesc(signal string) *grpc.ServiceDesc {
	method := otlpwire.Method[signal]
	i := strings.LastIndexByte(method, '/')
	return &grpc.ServiceDesc{
		ServiceName: method[1:i],
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: method[i+1:],
			Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				var f otlpwire.Frame
				if err := dec(&f); err != nil {
					return nil, err
				}
				var peerAddr string
				if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
					peerAddr = hostOf(p.Addr.String())
				}
				switch err := s.receive(signal, "grpc", peerAddr, f.Bytes); {
				case errors.Is(err, errFailing):
					return nil, status.Error(codes.Code(s.failGRPC.Load()), "sink is failing on purpose")
				case err != nil:
					return nil, status.Error(codes.InvalidArgument, err.Error())
				}
				return &otlpwire.Frame{}, nil
			},
		}},
		Metadata: "otlp",
	}
}

func hostOf(hostport string) string {
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return ap.Addr().Unmap().String()
	}
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// otlpHTTP serves POST /v1/<signal>.
func (s *Sink) otlpHTTP(signal string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ct := r.Header.Get("Content-Type")
		if i := strings.IndexByte(ct, ';'); i >= 0 {
			ct = ct[:i]
		}
		ct = strings.TrimSpace(ct)
		isJSON := ct == "application/json"
		if !isJSON && ct != "application/x-protobuf" {
			writeStatus(w, false, http.StatusUnsupportedMediaType, "unsupported content type "+ct)
			return
		}
		var body io.Reader = http.MaxBytesReader(w, r.Body, int64(s.cfg.MaxRequestBytes))
		switch enc := r.Header.Get("Content-Encoding"); enc {
		case "", "identity":
		case "gzip":
			zr, err := gzip.NewReader(body)
			if err != nil {
				writeStatus(w, isJSON, http.StatusBadRequest, "bad gzip: "+err.Error())
				return
			}
			body = io.LimitReader(zr, int64(s.cfg.MaxRequestBytes)+1)
		default:
			writeStatus(w, isJSON, http.StatusUnsupportedMediaType, "unsupported content encoding "+enc)
			return
		}
		data, err := io.ReadAll(body)
		if err != nil {
			writeStatus(w, isJSON, http.StatusBadRequest, "read: "+err.Error())
			return
		}
		if len(data) > s.cfg.MaxRequestBytes {
			writeStatus(w, isJSON, http.StatusRequestEntityTooLarge, "request too large")
			return
		}
		transport := "http/protobuf"
		if isJSON {
			transport = "http/json"
			if data, err = jsonToProto(signal, data); err != nil {
				s.mu.Lock()
				s.stats.Malformed++
				s.notifyLocked()
				s.mu.Unlock()
				writeStatus(w, true, http.StatusBadRequest, err.Error())
				return
			}
		}
		switch err := s.receive(signal, transport, hostOf(r.RemoteAddr), data); {
		case errors.Is(err, errFailing):
			w.Header().Set("Retry-After", "1")
			writeStatus(w, isJSON, int(s.failHTTP.Load()), "sink is failing on purpose")
			return
		case err != nil:
			writeStatus(w, isJSON, http.StatusBadRequest, err.Error())
			return
		}
		if isJSON {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("{}"))
			return
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	})
}

func jsonToProto(signal string, data []byte) ([]byte, error) {
	switch signal {
	case otlpwire.Traces:
		td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(data)
		if err != nil {
			return nil, err
		}
		return (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	case otlpwire.Metrics:
		md, err := (&pmetric.JSONUnmarshaler{}).UnmarshalMetrics(data)
		if err != nil {
			return nil, err
		}
		return (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	case otlpwire.Logs:
		ld, err := (&plog.JSONUnmarshaler{}).UnmarshalLogs(data)
		if err != nil {
			return nil, err
		}
		return (&plog.ProtoMarshaler{}).MarshalLogs(ld)
	}
	return nil, fmt.Errorf("JSON is not supported for %s", signal)
}

// writeStatus writes an OTLP error: a google.rpc.Status body in the
// request's encoding.
func writeStatus(w http.ResponseWriter, isJSON bool, code int, msg string) {
	st := status.New(httpToGRPC(code), msg).Proto()
	if isJSON {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write(marshalStatusJSON(st))
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(code)
	_, _ = w.Write(marshalStatusProto(st))
}

func httpToGRPC(code int) codes.Code {
	switch code {
	case http.StatusBadRequest:
		return codes.InvalidArgument
	case http.StatusRequestEntityTooLarge:
		return codes.ResourceExhausted
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout, http.StatusTooManyRequests:
		return codes.Unavailable
	}
	return codes.Unknown
}
