package informer

import (
	"testing"
	"time"

	"github.com/podstamp/podstamp/enrich"
)

// TestNodeRefresh: the node is read at start; read again every MetadataTTL
// when rules stamp its metadata, and only every nodeRefresh (an hour) when
// it is read for its addresses and pod CIDRs alone.
func TestNodeRefresh(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		needs enrich.Needs
		// node reads after each of 61 ticks of a minute, the start's included
		want int
	}{
		{"addresses only", enrich.Needs{}, 2},
		{"node metadata", enrich.Needs{NodeMetadata: true}, 62},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, Config{MetadataTTL: time.Minute, Needs: tc.needs})
			fc := newFakeClock(time.Now())
			h.c.clock = fc
			h.c.meta = newMetaCache(time.Minute)
			ticks := make(chan struct{}, 1)
			h.c.afterTick = func() { ticks <- struct{}{} }
			h.start()
			for i := range 61 {
				fc.Step(time.Minute)
				select {
				case <-ticks:
				case <-time.After(10 * time.Second):
					t.Fatalf("tick %d not handled", i+1)
				}
			}
			if got := len(h.api.Calls("get", "nodes")); got != tc.want {
				t.Errorf("%d reads of the node in 61 minutes, want %d", got, tc.want)
			}
		})
	}
}
