package informer

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/podstamp/podstamp/enrich"
)

func BenchmarkResolvePeerHit(b *testing.B) {
	c, _ := newDirectB(b)
	for i := range 200 {
		c.onUpsert(toPodObj(mkPod(podSpec{name: fmt.Sprint("p", i), ips: []string{fmt.Sprintf("10.8.%d.%d", i/250, i%250+1)}})))
	}
	peer := netip.MustParseAddr("::ffff:10.8.0.7")
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if p, _, _ := c.ResolvePeer(ctx, enrich.Peer{Addr: peer}, 1000); p == nil {
				b.Fatal("miss")
			}
		}
	})
}

func TestResolvePeerHitDoesNotAllocate(t *testing.T) {
	c, _ := newDirect(t, time.Minute)
	c.onUpsert(toPodObj(mkPod(podSpec{name: "p", ips: []string{"10.8.0.1"}})))
	peer := netip.MustParseAddr("10.8.0.1")
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() { _, _, _ = c.ResolvePeer(ctx, enrich.Peer{Addr: peer}, 10) }); n != 0 {
		t.Errorf("%v allocations per hit", n)
	}
}
