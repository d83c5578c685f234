package loadgen

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/status"

	"github.com/podstamp/podstamp/bench/internal/otlpwire"
)

// Config says what to send, where and how fast.
type Config struct {
	// Endpoint is host:port for gRPC; for HTTP either host:port or a base
	// URL (http://host:port); the signal's path is appended.
	Endpoint string
	Protocol string // grpc (default) or http
	Encoding string // proto (default) or json; json only over http
	Gzip     bool
	Signal   string // traces (default), metrics, logs

	// Requests is the total number of requests; Duration bounds the run.
	// At least one must be set; the run ends at whichever comes first.
	Requests int
	Duration time.Duration

	Items int // items per request (default 512)
	Attrs int // attributes per item (default 8)
	Conns int // connections (default 1)
	// Rate is the total request rate in requests per second, spread evenly
	// over the connections; 0 sends as fast as acks come back (closed loop).
	Rate float64

	// SourceIPs are the local addresses connections bind to, round robin;
	// empty lets the kernel choose (and loadgen.source is left out).
	SourceIPs     []string
	ResourceAttrs map[string]string
	Timeout       time.Duration // per request (default 10s)
	Logger        *slog.Logger
	// KeepLatencies keeps every request's latency in Summary.Latencies, so
	// runs can be merged (Merge).
	KeepLatencies bool
}

// Latency holds percentiles in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Summary is the outcome of a run; it is what the command prints as JSON.
type Summary struct {
	Signal          string           `json:"signal"`
	Protocol        string           `json:"protocol"`
	Encoding        string           `json:"encoding"`
	Gzip            bool             `json:"gzip"`
	Conns           int              `json:"conns"`
	Sent            int64            `json:"sent"`
	Acked           int64            `json:"acked"`
	Failed          int64            `json:"failed"`
	FailedByCode    map[string]int64 `json:"failed_by_code"`
	ItemsPerRequest int              `json:"items_per_request"`
	Items           int64            `json:"items"` // items in acked requests
	BytesPerRequest int              `json:"bytes_per_request"`
	DurationSeconds float64          `json:"duration_s"`
	RequestsPerSec  float64          `json:"requests_per_s"`
	ItemsPerSec     float64          `json:"items_per_s"` // acked items per second
	LatencyMs       Latency          `json:"latency_ms"`
	// Latencies holds every request's latency when Config.KeepLatencies is set.
	Latencies []time.Duration `json:"-"`
}

// Merge adds run b to a: counts and durations add up, rates and
// percentiles are recomputed (percentiles need Latencies on both).
func Merge(a, b Summary) Summary {
	if a.Sent == 0 && a.DurationSeconds == 0 {
		fbc := map[string]int64{}
		for k, v := range b.FailedByCode {
			fbc[k] = v
		}
		b.FailedByCode = fbc
		b.Latencies = append([]time.Duration(nil), b.Latencies...)
		return b
	}
	a.Sent += b.Sent
	a.Acked += b.Acked
	a.Failed += b.Failed
	fbc := map[string]int64{}
	for k, v := range a.FailedByCode {
		fbc[k] += v
	}
	for k, v := range b.FailedByCode {
		fbc[k] += v
	}
	a.FailedByCode = fbc
	a.Items += b.Items
	a.DurationSeconds += b.DurationSeconds
	if a.DurationSeconds > 0 {
		a.RequestsPerSec = round(float64(a.Sent)/a.DurationSeconds, 2)
		a.ItemsPerSec = round(float64(a.Items)/a.DurationSeconds, 1)
	}
	a.Latencies = append(append([]time.Duration(nil), a.Latencies...), b.Latencies...)
	a.LatencyMs = Percentiles(a.Latencies)
	return a
}

type sender interface {
	send(ctx context.Context) (code string, err error)
	close()
}

// Run sends the configured load and returns its summary. It returns an
// error only when the run could not start (bad config, payload, dial).
func Run(ctx context.Context, cfg Config) (Summary, error) {
	if err := cfg.defaults(); err != nil {
		return Summary{}, err
	}
	senders := make([]sender, 0, cfg.Conns)
	defer func() {
		for _, s := range senders {
			s.close()
		}
	}()
	var payloadLen int
	for i := 0; i < cfg.Conns; i++ {
		src := ""
		if len(cfg.SourceIPs) > 0 {
			src = cfg.SourceIPs[i%len(cfg.SourceIPs)]
		}
		body, err := BuildPayload(PayloadSpec{
			Signal: cfg.Signal, Items: cfg.Items, Attrs: cfg.Attrs, Source: src,
			ResourceAttrs: cfg.ResourceAttrs, JSON: cfg.Encoding == "json",
		})
		if err != nil {
			return Summary{}, err
		}
		payloadLen = len(body)
		s, err := newSender(cfg, src, body)
		if err != nil {
			return Summary{}, err
		}
		senders = append(senders, s)
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.Duration > 0 {
		runCtx, cancel = context.WithTimeout(runCtx, cfg.Duration)
		defer cancel()
	}
	var budget atomic.Int64
	budget.Store(int64(cfg.Requests))
	take := func() bool {
		if cfg.Requests <= 0 {
			return true
		}
		return budget.Add(-1) >= 0
	}

	type connResult struct {
		lat    []time.Duration
		acked  int64
		failed map[string]int64
	}
	results := make([]connResult, cfg.Conns)
	var wg sync.WaitGroup
	start := time.Now()
	for i, s := range senders {
		wg.Add(1)
		go func(i int, s sender) {
			defer wg.Done()
			res := &results[i]
			res.failed = map[string]int64{}
			var interval time.Duration
			var next time.Time
			if cfg.Rate > 0 {
				interval = time.Duration(float64(time.Second) * float64(cfg.Conns) / cfg.Rate)
				next = start.Add(interval * time.Duration(i) / time.Duration(cfg.Conns))
			}
			var timer *time.Timer
			for runCtx.Err() == nil {
				if interval > 0 {
					if d := time.Until(next); d > 0 {
						if timer == nil {
							timer = time.NewTimer(d)
						} else {
							timer.Reset(d)
						}
						select {
						case <-timer.C:
						case <-runCtx.Done():
							return
						}
					}
					next = next.Add(interval)
				}
				if !take() {
					return
				}
				reqCtx, rc := context.WithTimeout(ctx, cfg.Timeout)
				t0 := time.Now()
				code, err := s.send(reqCtx)
				res.lat = append(res.lat, time.Since(t0))
				rc()
				if err != nil {
					res.failed[code]++
					continue
				}
				res.acked++
			}
		}(i, s)
	}
	wg.Wait()
	elapsed := time.Since(start)

	sum := Summary{
		Signal: cfg.Signal, Protocol: cfg.Protocol, Encoding: cfg.Encoding, Gzip: cfg.Gzip,
		Conns: cfg.Conns, FailedByCode: map[string]int64{}, ItemsPerRequest: cfg.Items,
		BytesPerRequest: payloadLen, DurationSeconds: elapsed.Seconds(),
	}
	var all []time.Duration
	for _, r := range results {
		all = append(all, r.lat...)
		sum.Acked += r.acked
		for c, n := range r.failed {
			sum.FailedByCode[c] += n
			sum.Failed += n
		}
	}
	sum.Sent = sum.Acked + sum.Failed
	sum.Items = sum.Acked * int64(cfg.Items)
	if s := elapsed.Seconds(); s > 0 {
		sum.RequestsPerSec = round(float64(sum.Sent)/s, 2)
		sum.ItemsPerSec = round(float64(sum.Items)/s, 1)
	}
	sum.LatencyMs = Percentiles(all)
	if cfg.KeepLatencies {
		sum.Latencies = all
	}
	return sum, nil
}

func (c *Config) defaults() error {
	if c.Protocol == "" {
		c.Protocol = "grpc"
	}
	if c.Encoding == "" {
		c.Encoding = "proto"
	}
	if c.Signal == "" {
		c.Signal = otlpwire.Traces
	}
	if c.Items <= 0 {
		c.Items = 512
	}
	if c.Attrs < 0 {
		c.Attrs = 0
	}
	if c.Conns <= 0 {
		c.Conns = 1
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.Endpoint == "":
		return errors.New("loadgen: endpoint is required")
	case c.Protocol != "grpc" && c.Protocol != "http":
		return fmt.Errorf("loadgen: protocol %q: want grpc or http", c.Protocol)
	case c.Encoding != "proto" && c.Encoding != "json":
		return fmt.Errorf("loadgen: encoding %q: want proto or json", c.Encoding)
	case c.Encoding == "json" && c.Protocol != "http":
		return errors.New("loadgen: json encoding needs protocol http")
	case c.Signal != otlpwire.Traces && c.Signal != otlpwire.Metrics && c.Signal != otlpwire.Logs:
		return fmt.Errorf("loadgen: signal %q: want traces, metrics or logs", c.Signal)
	case c.Requests <= 0 && c.Duration <= 0:
		return errors.New("loadgen: set requests or duration")
	case c.Rate < 0:
		return errors.New("loadgen: rate must be >= 0")
	}
	for _, ip := range c.SourceIPs {
		if net.ParseIP(ip) == nil {
			return fmt.Errorf("loadgen: source ip %q is not an IP address", ip)
		}
	}
	return nil
}

// Percentiles summarizes latencies (it sorts d in place).
func Percentiles(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	slices.Sort(d)
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(d)))) - 1
		i = max(0, min(i, len(d)-1))
		return ms(d[i])
	}
	var total time.Duration
	for _, v := range d {
		total += v
	}
	return Latency{
		P50: at(0.50), P90: at(0.90), P99: at(0.99),
		Max: ms(d[len(d)-1]), Mean: ms(total / time.Duration(len(d))),
	}
}

func ms(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 3) }

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

func dialer(src string) *net.Dialer {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	return d
}

// grpcSender is one gRPC connection.
type grpcSender struct {
	cc     *grpc.ClientConn
	method string
	frame  otlpwire.Frame
	opts   []grpc.CallOption
}

func newSender(cfg Config, src string, body []byte) (sender, error) {
	if cfg.Protocol == "grpc" {
		d := dialer(src)
		target := strings.TrimPrefix(strings.TrimPrefix(cfg.Endpoint, "http://"), "dns:///")
		cc, err := grpc.NewClient("passthrough:///"+target,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
				return d.DialContext(ctx, "tcp", addr)
			}),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(otlpwire.Codec{}), grpc.MaxCallRecvMsgSize(64<<20)),
			grpc.WithInitialWindowSize(4<<20),
			grpc.WithInitialConnWindowSize(16<<20),
			grpc.WithWriteBufferSize(256<<10),
			grpc.WithReadBufferSize(64<<10),
		)
		if err != nil {
			return nil, fmt.Errorf("loadgen: grpc client: %w", err)
		}
		cc.Connect()
		s := &grpcSender{cc: cc, method: otlpwire.Method[cfg.Signal], frame: otlpwire.Frame{Bytes: body}}
		if cfg.Gzip {
			s.opts = append(s.opts, grpc.UseCompressor(grpcgzip.Name))
		}
		return s, nil
	}
	base := cfg.Endpoint
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("loadgen: endpoint: %w", err)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + otlpwire.HTTPPath[cfg.Signal]
	s := &httpSender{url: u.String(), body: body, contentType: "application/x-protobuf"}
	if cfg.Encoding == "json" {
		s.contentType = "application/json"
	}
	if cfg.Gzip {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(body)
		_ = zw.Close()
		s.body = buf.Bytes()
		s.gzip = true
	}
	d := dialer(src)
	s.tr = &http.Transport{
		DialContext:         d.DialContext,
		MaxIdleConnsPerHost: 1,
		MaxConnsPerHost:     1,
		DisableCompression:  true,
		IdleConnTimeout:     30 * time.Second,
		WriteBufferSize:     256 << 10,
		ReadBufferSize:      64 << 10,
	}
	s.client = &http.Client{Transport: s.tr}
	return s, nil
}

func (s *grpcSender) send(ctx context.Context) (string, error) {
	var resp otlpwire.Frame
	err := s.cc.Invoke(ctx, s.method, &s.frame, &resp, s.opts...)
	if err != nil {
		return status.Code(err).String(), err
	}
	return "", nil
}

func (s *grpcSender) close() { _ = s.cc.Close() }

// httpSender is one HTTP/1.1 connection (the transport keeps at most one).
type httpSender struct {
	url         string
	body        []byte
	contentType string
	gzip        bool
	tr          *http.Transport
	client      *http.Client
}

func (s *httpSender) send(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(s.body))
	if err != nil {
		return "request", err
	}
	req.Header.Set("Content-Type", s.contentType)
	if s.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return codes.DeadlineExceeded.String(), err
		}
		return "transport", err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("http_%d", resp.StatusCode), fmt.Errorf("status %s", resp.Status)
	}
	return "", nil
}

func (s *httpSender) close() { s.tr.CloseIdleConnections() }
