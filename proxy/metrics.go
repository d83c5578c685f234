package proxy

import (
	"runtime"

	"github.com/podstamp/podstamp/enrich"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
)

// Ingress protocols (label "protocol").
const (
	protoGRPC = iota
	protoHTTP
	numProtos
)

var protoNames = [numProtos]string{"grpc", "http"}

// Outcomes of a request (label "outcome").
type outcome uint8

const (
	outcomeOK            outcome = iota // upstream accepted (partial success included)
	outcomeBadRequest                   // podstamp rejected malformed input
	outcomeTooLarge                     // over --max-request-bytes
	outcomeUpstreamError                // the upstream answered an error or could not be reached
	outcomeCanceled                     // the client went away or its deadline passed
	outcomeInternal                     // podstamp failed
	outcomeForbidden                    // the sender is not admitted (Options.Admit)
	outcomeRejected                     // refused for lack of resources (podstamp_rejected_total)
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"ok", "bad_request", "too_large", "upstream_error", "canceled", "internal", "forbidden", "rejected"}

const numSignals = len(enrich.Signals)

// metrics are the proxy's Prometheus series. Label combinations are resolved
// once, up front, so the hot path only adds to counters.
type metrics struct {
	requests       [numSignals][numProtos][numOutcomes]prometheus.Counter
	items          [numSignals][numProtos][numOutcomes]prometheus.Counter
	receivedBytes  [numSignals][numProtos]prometheus.Counter
	sentBytes      [numSignals]prometheus.Counter
	enrich         map[enrich.Result]prometheus.Counter
	enrichErrors   prometheus.Counter
	upstreamByCode [numSignals][codes.Unauthenticated + 1]prometheus.Observer
	inflight       prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, version string) (*metrics, error) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podstamp_requests_total",
		Help: "Export requests received, by signal, ingress protocol and outcome.",
	}, []string{"signal", "protocol", "outcome"})
	items := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podstamp_items_total",
		Help: "Items (spans, metric data points, log records, profiles) in export requests, by signal, ingress protocol and outcome.",
	}, []string{"signal", "protocol", "outcome"})
	received := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podstamp_received_bytes_total",
		Help: "Uncompressed protobuf bytes of export requests received (JSON counted after conversion), by signal and ingress protocol.",
	}, []string{"signal", "protocol"})
	sent := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podstamp_sent_bytes_total",
		Help: "Uncompressed protobuf bytes of export requests sent upstream, by signal.",
	}, []string{"signal"})
	enrichTotal := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podstamp_enrich_total",
		Help: "Requests by how the sender's pod was found (or why not).",
	}, []string{"result"})
	enrichErrors := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "podstamp_enrich_errors_total",
		Help: "Requests the stamper failed on (malformed input or the client went away while held).",
	})
	upstream := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "podstamp_upstream_duration_seconds",
		Help:    "Time from sending a request upstream to its answer, by signal and gRPC code of the answer.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"signal", "code"})
	inflight := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "podstamp_inflight_requests",
		Help: "Export requests being handled now.",
	})
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "podstamp_build_info",
		Help: "Always 1; labels say which build runs.",
	}, []string{"version", "goversion"})
	buildInfo.WithLabelValues(version, runtime.Version()).Set(1)

	for _, c := range []prometheus.Collector{requests, items, received, sent, enrichTotal, enrichErrors, upstream, inflight, buildInfo} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}

	m := &metrics{
		enrich:       make(map[enrich.Result]prometheus.Counter, len(enrich.Results)),
		enrichErrors: enrichErrors,
		inflight:     inflight,
	}
	for _, sig := range enrich.Signals {
		s := sig.String()
		for p := range numProtos {
			for o := range numOutcomes {
				m.requests[sig][p][o] = requests.WithLabelValues(s, protoNames[p], outcomeNames[o])
				m.items[sig][p][o] = items.WithLabelValues(s, protoNames[p], outcomeNames[o])
			}
			m.receivedBytes[sig][p] = received.WithLabelValues(s, protoNames[p])
		}
		m.sentBytes[sig] = sent.WithLabelValues(s)
		for c := codes.OK; c <= codes.Unauthenticated; c++ {
			m.upstreamByCode[sig][c] = upstream.WithLabelValues(s, codeLabel(c))
		}
	}
	for _, r := range enrich.Results {
		m.enrich[r] = enrichTotal.WithLabelValues(string(r))
	}
	return m, nil
}

// codeLabel is a gRPC code in the lower snake case Prometheus users expect.
func codeLabel(c codes.Code) string {
	switch c {
	case codes.OK:
		return "ok"
	case codes.Canceled:
		return "canceled"
	case codes.Unknown:
		return "unknown"
	case codes.InvalidArgument:
		return "invalid_argument"
	case codes.DeadlineExceeded:
		return "deadline_exceeded"
	case codes.NotFound:
		return "not_found"
	case codes.AlreadyExists:
		return "already_exists"
	case codes.PermissionDenied:
		return "permission_denied"
	case codes.ResourceExhausted:
		return "resource_exhausted"
	case codes.FailedPrecondition:
		return "failed_precondition"
	case codes.Aborted:
		return "aborted"
	case codes.OutOfRange:
		return "out_of_range"
	case codes.Unimplemented:
		return "unimplemented"
	case codes.Internal:
		return "internal"
	case codes.Unavailable:
		return "unavailable"
	case codes.DataLoss:
		return "data_loss"
	case codes.Unauthenticated:
		return "unauthenticated"
	}
	return "unknown"
}

func (m *metrics) observeUpstream(sig enrich.Signal, c codes.Code, seconds float64) {
	if c > codes.Unauthenticated {
		c = codes.Unknown
	}
	m.upstreamByCode[sig][c].Observe(seconds)
}

func (m *metrics) countEnrich(r enrich.Result) {
	if c, ok := m.enrich[r]; ok {
		c.Inc()
	}
}
