package informer

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	pods        prometheus.Gauge
	synced      prometheus.Gauge
	holdLatency *prometheus.HistogramVec
	holdRefused *prometheus.CounterVec
	watchErrors prometheus.Counter
	metaErrors  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, c *Cache) (*metrics, error) {
	m := &metrics{
		pods: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podstamp_cache_pods",
			Help: "Pods in the node's pod cache, deleted pods within their grace period included.",
		}),
		synced: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podstamp_cache_synced",
			Help: "1 once the first list of the node's pods has synced, else 0.",
		}),
		holdLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "podstamp_hold_duration_seconds",
			Help:    "How long requests whose peer was unknown were held, by outcome (hold_hit, hold_timeout, canceled).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2, 3, 5, 10},
		}, []string{"result"}),
		holdRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podstamp_hold_refused_total",
			Help: "Requests whose peer was unknown and that were not held, by reason: peer_requests and peer_bytes (the peer's share of the hold budget is spent) and budget (all of it is; all three answered no_budget), not_local (the peer is not on this node; answered unknown).",
		}, []string{"reason"}),
		watchErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podstamp_cache_watch_errors_total",
			Help: "Errors of the pod list/watch; the cache keeps serving and reconnects.",
		}),
		metaErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podstamp_metadata_lookup_errors_total",
			Help: "Failed on-demand GETs of namespace, node and workload metadata; pods are stamped without it.",
		}, []string{"kind"}),
	}
	heldBytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "podstamp_held_bytes",
		Help: "Bytes of requests currently held while their peer is unknown.",
	}, func() float64 { return float64(c.held.Load()) })
	heldReqs := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "podstamp_held_requests",
		Help: "Requests currently held while their peer is unknown.",
	}, func() float64 { return float64(c.heldReqs.Load()) })
	for _, r := range []string{refusedPeerRequests, refusedPeerBytes, refusedBudget, refusedNotLocal} {
		m.holdRefused.WithLabelValues(r) // export zeros, so rate() sees the first refusal
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, col := range []prometheus.Collector{m.pods, m.synced, m.holdLatency, m.holdRefused, m.watchErrors, m.metaErrors, heldBytes, heldReqs} {
		errs = append(errs, reg.Register(col))
	}
	return m, errors.Join(errs...)
}
