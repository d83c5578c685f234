package node

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Resource is one resource of one export as the sink received it (the
// sink's JSON).
type Resource struct {
	Signal string            `json:"signal"`
	Peer   string            `json:"peer"`
	Attrs  map[string]string `json:"attrs"`
	Items  int               `json:"items"`
	Seqs   []int64           `json:"seqs,omitempty"`
}

// Sender is what the sink received from one application pod.
type Sender struct {
	Pod string
	// Resources and Right count its resources, and those stamped with its
	// own pod name and namespace.
	Resources, Right int
	// Spans and Logs are the items received; Metrics the metric resources.
	Spans, Logs, Metrics int
	// SeenAs are the k8s.pod.ip values its resources carried ("" none).
	SeenAs []string
	// FirstSpanStamped reports whether the span with demo.seq 0 arrived
	// stamped with the right pod (nil: it did not arrive).
	FirstSpanStamped *bool
	// StampedAs are the k8s.pod.name values it was stamped with ("" none).
	StampedAs []string
}

// Fraction is Right/Resources.
func (s Sender) Fraction() float64 {
	if s.Resources == 0 {
		return 0
	}
	return float64(s.Right) / float64(s.Resources)
}

// BySender groups the resources by demo.pod.name (resources without it are
// ignored: they are not the demo applications').
func BySender(rs []Resource, namespace string) map[string]*Sender {
	out := map[string]*Sender{}
	for _, r := range rs {
		pod := r.Attrs["demo.pod.name"]
		if pod == "" {
			continue
		}
		s := out[pod]
		if s == nil {
			s = &Sender{Pod: pod}
			out[pod] = s
		}
		s.Resources++
		right := r.Attrs["k8s.pod.name"] == pod && r.Attrs["k8s.namespace.name"] == namespace
		if right {
			s.Right++
		}
		switch r.Signal {
		case "traces":
			s.Spans += r.Items
			if slices.Contains(r.Seqs, 0) {
				v := right
				s.FirstSpanStamped = &v
			}
		case "logs":
			s.Logs += r.Items
		case "metrics":
			s.Metrics++
		}
		if ip := r.Attrs["k8s.pod.ip"]; !slices.Contains(s.SeenAs, ip) {
			s.SeenAs = append(s.SeenAs, ip)
		}
		if n := r.Attrs["k8s.pod.name"]; !slices.Contains(s.StampedAs, n) {
			s.StampedAs = append(s.StampedAs, n)
		}
	}
	return out
}

// Summary is one line per sender, sorted by pod name.
func Summary(senders map[string]*Sender, podIPs map[string]string) string {
	names := make([]string, 0, len(senders))
	for n := range senders {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		s := senders[n]
		first := "not received"
		if s.FirstSpanStamped != nil {
			first = fmt.Sprint(*s.FirstSpanStamped)
		}
		fmt.Fprintf(&b, "  %-14s pod IP %-12s k8s.pod.ip %-12q stamped right %d/%d resources (%.0f%%), stamped as %q, first span stamped right: %s; spans %d, logs %d, metric exports %d\n",
			n, podIPs[n], strings.Join(s.SeenAs, ","), s.Right, s.Resources, 100*s.Fraction(), s.StampedAs, first, s.Spans, s.Logs, s.Metrics)
	}
	return b.String()
}
