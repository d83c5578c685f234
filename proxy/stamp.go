package proxy

import (
	"context"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/podstamp/podstamp/enrich"
	"google.golang.org/grpc/mem"
)

// minSideBytes is the smallest side buffer offered to an Enricher:
// room for the attributes of a few resources.
const minSideBytes = 4 << 10

// maxSideHint bounds the side buffer offered on the strength of earlier
// requests.
const maxSideHint = 256 << 10

// segPool keeps the segment lists between requests.
var segPool = sync.Pool{New: func() any { return new([][]byte) }}

// stampSegments stamps body with an Enricher and returns the output as
// views of body and of a pooled side buffer, each holding a reference, so
// both go back to the pool only when the upstream leg freed every view
// (gRPC frees them once written, the HTTP client when it closed the body).
// It takes over body's reference. sideHint is the side size the last
// stamped request needed: the next one is offered that much, so a run of
// requests with many resources does not grow a side buffer each time.
func stampSegments(ctx context.Context, e Enricher, sig enrich.Signal, peer enrich.Peer, body mem.Buffer, sideHint *atomic.Int32) (_ mem.BufferSlice, _ enrich.Result, items int, _ error) {
	data := body.ReadOnlyData()
	pool := bufPool
	sp := pool.Get(max(minSideBytes, int(sideHint.Load())))
	segsp := segPool.Get().(*[][]byte)
	st, err := e.Stamp(ctx, sig, peer, data, (*segsp)[:0], (*sp)[:0])
	segs, side, res, items := st.Segs, st.Side, st.Result, st.Items
	defer func() {
		clear(segs)
		if cap(segs) <= 1<<10 {
			*segsp = segs[:0]
			segPool.Put(segsp)
		}
	}()
	if err != nil {
		pool.Put(sp)
		body.Free()
		return nil, "", items, err
	}
	if len(segs) == 1 && sameBytes(segs[0], data) { // nothing added: body itself
		pool.Put(sp)
		return mem.BufferSlice{body}, res, items, nil
	}
	sideHint.Store(int32(min(len(side), maxSideHint)))
	// The side bytes are in the pooled array unless the enricher had to grow
	// it; then they are in garbage-collected memory.
	var sideBuf mem.Buffer
	if len(side) > 0 && unsafe.SliceData(side) == unsafe.SliceData(*sp) {
		*sp = side
		sideBuf = mem.NewBuffer(sp, pool)
	}
	offered := (*sp)[:cap(*sp)]
	inOffered := false
	out := make(mem.BufferSlice, 0, len(segs))
	for _, seg := range segs {
		if len(seg) == 0 {
			continue
		}
		if off, ok := offsetIn(data, seg); ok {
			out = append(out, body.Slice(off, off+len(seg)))
		} else if off, ok := offsetIn(side, seg); ok && sideBuf != nil {
			out = append(out, sideBuf.Slice(off, off+len(seg)))
		} else {
			// Garbage-collected memory, unless an Enricher broke its
			// promise and wrote into the side buffer before growing it.
			out = append(out, mem.SliceBuffer(seg))
			_, in := offsetIn(offered, seg)
			inOffered = inOffered || in
		}
	}
	switch {
	case sideBuf != nil:
		sideBuf.Free() // the views hold their own references
	case !inOffered:
		pool.Put(sp)
	}
	body.Free()
	return out, res, items, nil
}

// sameBytes reports whether a and b are the same slice of the same array.
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && unsafe.SliceData(a) == unsafe.SliceData(b)
}

// offsetIn returns where inner starts in outer, if it lies within outer.
func offsetIn(outer, inner []byte) (int, bool) {
	if len(outer) == 0 {
		return 0, false
	}
	o := uintptr(unsafe.Pointer(unsafe.SliceData(outer)))
	i := uintptr(unsafe.Pointer(unsafe.SliceData(inner)))
	if i < o || i-o > uintptr(len(outer)) || uintptr(len(inner)) > uintptr(len(outer))-(i-o) {
		return 0, false
	}
	return int(i - o), true
}
