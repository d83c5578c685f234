package enrich

import (
	"context"
	"net/netip"
)

// EnrichSegmentsRefMin is EnrichSegments referencing unchanged ranges of at
// least refMin bytes, so tests can make every range a reference.
func (s *Stamper) EnrichSegmentsRefMin(ctx context.Context, sig Signal, peer netip.Addr, body []byte, segs [][]byte, side []byte, refMin int) ([][]byte, []byte, Result, error) {
	return s.enrichSegments(ctx, sig, peer, body, segs, side, refMin)
}

// RefMinBytes is EnrichSegments' threshold.
const RefMinBytes = refMinBytes
