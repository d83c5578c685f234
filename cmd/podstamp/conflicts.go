package main

import (
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podstamp/podstamp/enrich"
)

// conflictLogEvery is the most often a process logs an identity conflict: a
// misconfigured SDK (or an attacker) claims on every export, and one line
// with a count says as much as thousands.
const conflictLogEvery = 10 * time.Second

// conflicts counts identity conflicts (enrich.WithConflictHandler) and logs
// them, rate-limited.
type conflicts struct {
	total prometheus.Counter
	log   *slog.Logger
	now   func() time.Time

	mu         sync.Mutex
	logged     bool
	last       time.Time
	suppressed int // conflicts not logged since the last warning
}

func newConflicts(log *slog.Logger, reg prometheus.Registerer) (*conflicts, error) {
	c := &conflicts{
		total: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podstamp_identity_conflicts_total",
			Help: "Resources from senders that are no trusted relay whose identity attributes named another pod than the connection's; they were stamped as the connection's pod.",
		}),
		log: log,
		now: time.Now,
	}
	if err := reg.Register(c.total); err != nil {
		return nil, err
	}
	return c, nil
}

// observe is the enrich conflict handler; it runs on the request path.
func (c *conflicts) observe(cf enrich.Conflict) {
	c.total.Inc()
	now := c.now()
	c.mu.Lock()
	if c.logged && now.Sub(c.last) < conflictLogEvery {
		c.suppressed++
		c.mu.Unlock()
		return
	}
	c.logged, c.last = true, now
	suppressed := c.suppressed
	c.suppressed = 0
	c.mu.Unlock()

	claims := make([]string, len(cf.Claims))
	for i, cl := range cf.Claims {
		claims[i] = cl.String()
	}
	c.log.Warn("a sender claimed another identity than its connection's pod; stamped it as the connection's pod (list the sender in trusted_relays if it relays other pods' data)",
		"signal", cf.Signal.String(), "peer", cf.Peer.String(),
		"pod", cf.Namespace+"/"+cf.Name, "pod_uid", cf.UID,
		"claimed", strings.Join(claims, ", "),
		"suppressed", suppressed)
}
