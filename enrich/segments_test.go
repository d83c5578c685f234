package enrich_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net/netip"
	"testing"
	"unsafe"

	"github.com/podstamp/podstamp/enrich"
	"github.com/podstamp/podstamp/enrich/enrichtest"
)

// within reports whether inner lies inside outer's first len(outer) bytes.
func within(outer, inner []byte) bool {
	if len(inner) == 0 || len(outer) == 0 {
		return false
	}
	o, i := uintptr(unsafe.Pointer(unsafe.SliceData(outer))), uintptr(unsafe.Pointer(unsafe.SliceData(inner)))
	return i >= o && i+uintptr(len(inner)) <= o+uintptr(len(outer))
}

// checkSegments: the segments concatenate to want; each one is a capped
// subslice of body of at least refMin bytes or of side; when nothing is
// added the only segment is body itself.
func checkSegments(t *testing.T, body, want []byte, segs [][]byte, side []byte, refMin int) {
	t.Helper()
	if unsafe.SliceData(want) == unsafe.SliceData(body) && len(want) == len(body) { // Enrich returned body
		if len(segs) != 1 || len(segs[0]) != len(body) || unsafe.SliceData(segs[0]) != unsafe.SliceData(body) {
			t.Fatalf("nothing added: %d segments, want body itself", len(segs))
		}
		return
	}
	if got := bytes.Join(segs, nil); !bytes.Equal(got, want) {
		t.Fatalf("segments concatenate to %d bytes that differ from Enrich's %d", len(got), len(want))
	}
	for i, seg := range segs {
		if len(seg) == 0 {
			t.Fatalf("segment %d is empty", i)
		}
		if cap(seg) != len(seg) {
			t.Fatalf("segment %d: capacity %d, length %d: an append could write past it", i, cap(seg), len(seg))
		}
		switch {
		case within(body, seg):
			if len(seg) < refMin {
				t.Fatalf("segment %d: %d bytes of body referenced, under the %d byte threshold", i, len(seg), refMin)
			}
		case !within(side, seg):
			t.Fatalf("segment %d (%d bytes) is in neither body nor the returned side", i, len(seg))
		}
	}
}

// TestSegmentsMatchEnrich: on random requests (and broken ones), rule sets
// and peers, the segments concatenate to exactly Enrich's output, whatever
// the threshold and whether side has room or must grow; body is unchanged
// and every segment is in body or in the returned side.
func TestSegmentsMatchEnrich(t *testing.T) {
	iterations := 1500
	if testing.Short() {
		iterations = 200
	}
	g := gen{rand.New(rand.NewPCG(3, 4))}
	peers := []netip.Addr{peerCart, peerCart6, peerWorker, peerNobody, {}}
	var stampers []*enrich.Stamper
	for _, c := range diffConfigs() {
		s := enrich.NewStamper(enrichtest.Rules(c), enrichtest.New(cartPod(), workerPod()))
		stampers = append(stampers, s)
	}
	var segs [][]byte
	var side []byte
	refs, stamped := 0, 0
	for i := range iterations {
		sig := enrich.Signals[g.r.IntN(len(enrich.Signals))]
		in := g.request(sig)
		if g.r.IntN(3) == 0 {
			in = g.mutate(t, in)
		}
		s := stampers[g.r.IntN(len(stampers))]
		peer := peers[g.r.IntN(len(peers))]
		orig := bytes.Clone(in)
		want, wres, werr := s.Enrich(context.Background(), sig, peer, in, nil)
		for _, refMin := range []int{1, 5, 64, enrich.RefMinBytes} {
			if i%2 == 0 {
				side = make([]byte, 0, i%7) // too small: it must grow once, before it is written
			}
			var res enrich.Result
			var err error
			segs, side, res, err = s.EnrichSegmentsRefMin(context.Background(), sig, peer, in, segs, side, refMin)
			if (err == nil) != (werr == nil) || res != wres {
				t.Fatalf("request %d: segments (%q, %v), Enrich (%q, %v)", i, res, err, wres, werr)
			}
			if !bytes.Equal(in, orig) {
				t.Fatal("input modified")
			}
			if err != nil {
				continue
			}
			checkSegments(t, in, want, segs, side, refMin)
			if len(segs) > 1 {
				stamped++
				for _, seg := range segs {
					if within(in, seg) {
						refs++
					}
				}
			}
		}
	}
	if stamped < iterations/4 || refs < stamped {
		t.Errorf("only %d stamped outputs with %d references to the request: the test does not exercise segments", stamped, refs)
	}
}

// TestSegmentsReferenceLargeRanges: on a typical request (512 spans), all
// but the stamped resource's bytes are references into the request: the
// spans are not copied.
func TestSegmentsReferenceLargeRanges(t *testing.T) {
	s := enrich.NewStamper(enrichtest.Rules(enrich.DefaultConfig()), enrichtest.New(cartPod()))
	in := benchTraces(t, 512, 8, map[string]any{"service.name": "cart"})
	want, _, err := s.Enrich(context.Background(), enrich.Traces, peerCart, in, nil)
	if err != nil || len(want) <= len(in) {
		t.Fatal("not stamped", err)
	}
	side := make([]byte, 0, 4096)
	segs, side2, _, err := s.EnrichSegments(context.Background(), enrich.Traces, peerCart, in, nil, side)
	if err != nil {
		t.Fatal(err)
	}
	checkSegments(t, in, want, segs, side2, enrich.RefMinBytes)
	referenced, copied := 0, 0
	for _, seg := range segs {
		switch {
		case within(in, seg):
			referenced += len(seg)
		case within(side2[:cap(side2)], seg):
			copied += len(seg)
		default:
			t.Fatalf("a %d-byte segment is in neither the request nor side", len(seg))
		}
	}
	if &side2[:1][0] != &side[:1][0] {
		t.Error("side was reallocated although it had room")
	}
	if copied != len(side2) || copied > 2048 || referenced < len(in)-1024 {
		t.Errorf("%d bytes referenced, %d copied (side %d) of a %d-byte request", referenced, copied, len(side2), len(in))
	}
	// Nothing to add (unknown peer): body itself, one segment.
	segs, _, _, err = s.EnrichSegments(context.Background(), enrich.Traces, peerNobody, in, segs, side2)
	if err != nil || len(segs) != 1 || &segs[0][0] != &in[0] || len(segs[0]) != len(in) {
		t.Errorf("pass-through: %d segments, %v; want the request itself", len(segs), err)
	}
}

func TestSegmentsAllocationsPerRequest(t *testing.T) {
	s := enrich.NewStamper(enrichtest.Rules(enrich.DefaultConfig()), enrichtest.New(cartPod()))
	ctx := context.Background()
	for _, n := range []int{1, 512} {
		in := benchTraces(t, n, 8, map[string]any{"service.name": "cart"})
		var segs [][]byte
		var side []byte
		allocs := testing.AllocsPerRun(100, func() {
			var err error
			segs, side, _, err = s.EnrichSegments(ctx, enrich.Traces, peerCart, in, segs, side)
			if err != nil || len(segs) == 1 && unsafe.SliceData(segs[0]) == unsafe.SliceData(in) {
				t.Fatal("not stamped", err)
			}
		})
		limit := 0.0
		if raceEnabled {
			limit = 4 // the pooled scratch is sometimes dropped
		}
		if allocs > limit {
			t.Errorf("%d spans: %.1f allocations per request, want at most %.0f", n, allocs, limit)
		}
	}
}
