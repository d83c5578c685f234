package enrich_test

import (
	"testing"

	"github.com/podstamp/podstamp/enrich"
	"google.golang.org/protobuf/encoding/protowire"
)

// FuzzItemCount: the counting walk never panics and, on any input, counts
// exactly what a plain protowire walk counts.
func FuzzItemCount(f *testing.F) {
	for _, sig := range enrich.Signals {
		body := requestWith(f, sig, map[string]any{"service.name": "cart"})
		f.Add(uint8(sig), body)
	}
	f.Fuzz(func(t *testing.T, s uint8, b []byte) {
		sig := enrich.Signal(s % uint8(len(enrich.Signals)))
		got := enrich.CountScope(sig, b)
		if want := refCount(sig, b); got != want {
			t.Fatalf("countScope = %d, reference walk = %d", got, want)
		}
		_, _ = enrich.Scan(sig, b)
	})
}

// refCount is countScope without fast paths.
func refCount(sig enrich.Signal, b []byte) int {
	items := 0
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeField(b)
		if n < 0 {
			return items
		}
		if num == 2 && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b[tagLen(b):n])
			if sig == enrich.Metrics {
				items += refDataPoints(v)
			} else {
				items++
			}
		}
		b = b[n:]
	}
	return items
}

func tagLen(b []byte) int { _, _, n := protowire.ConsumeTag(b); return n }

func refDataPoints(b []byte) int {
	points := 0
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeField(b)
		if n < 0 {
			return points
		}
		if typ == protowire.BytesType && (num == 5 || num == 7 || num == 9 || num == 10 || num == 11) {
			v, _ := protowire.ConsumeBytes(b[tagLen(b):n])
			for len(v) > 0 {
				num, typ, m := protowire.ConsumeField(v)
				if m < 0 {
					break
				}
				if num == 1 && typ == protowire.BytesType {
					points++
				}
				v = v[m:]
			}
		}
		b = b[n:]
	}
	return points
}
