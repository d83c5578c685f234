package enrich

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"unsafe"
)

// EnrichSegmentsRefMin is EnrichSegments referencing unchanged ranges of at
// least refMin bytes, so tests can make every range a reference.
func (s *Stamper) EnrichSegmentsRefMin(ctx context.Context, sig Signal, peer netip.Addr, body []byte, segs [][]byte, side []byte, refMin int) ([][]byte, []byte, Result, error) {
	out, err := s.stampSegments(ctx, sig, Peer{Addr: peer}, body, segs, side, refMin)
	return out.Segs, out.Side, out.Result, err
}

// EnrichSegments is Stamp from a connection of unknown accept time.
func (s *Stamper) EnrichSegments(ctx context.Context, sig Signal, peer netip.Addr, body []byte, segs [][]byte, side []byte) ([][]byte, []byte, Result, error) {
	return s.EnrichSegmentsRefMin(ctx, sig, peer, body, segs, side, refMinBytes)
}

// segBufs keeps Enrich's segment lists and side buffers between calls.
var segBufs = sync.Pool{New: func() any {
	return &struct {
		segs [][]byte
		side []byte
	}{}
}}

// Enrich is Stamp with its segments concatenated into dst[:0]; when nothing
// is added body itself is returned. It is the form most tests compare.
func (s *Stamper) Enrich(ctx context.Context, sig Signal, peer netip.Addr, body, dst []byte) ([]byte, Result, error) {
	b := segBufs.Get().(*struct {
		segs [][]byte
		side []byte
	})
	defer segBufs.Put(b)
	out, err := s.Stamp(ctx, sig, Peer{Addr: peer}, body, b.segs, b.side)
	b.segs, b.side = out.Segs, out.Side
	defer clear(b.segs)
	if err != nil {
		return nil, "", err
	}
	if len(out.Segs) == 1 && unsafe.SliceData(out.Segs[0]) == unsafe.SliceData(body) && len(out.Segs[0]) == len(body) {
		return body, out.Result, nil
	}
	size := 0
	for _, seg := range out.Segs {
		size += len(seg)
	}
	res := slices.Grow(dst[:0], size)
	for _, seg := range out.Segs {
		res = append(res, seg...)
	}
	return res, out.Result, nil
}

// RefMinBytes is Stamp's threshold.
const RefMinBytes = refMinBytes

// CountScope counts the items of one Scope<Signal>.
var CountScope = countScope
