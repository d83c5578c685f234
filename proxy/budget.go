package proxy

import (
	"bytes"
	"sync"
	"sync/atomic"
	"time"
)

// budget bounds the bytes of requests in flight: every request takes a
// charge for its body and each copy it needs before the bytes are read or
// made, and gives it back when it is done. A request whose charge does not
// fit is refused with a status the client retries, so memory is bounded by
// the budget instead of by what clients send at once.
type budget struct {
	limit int64
	used  atomic.Int64
	peak  atomic.Int64 // highest used seen (tests)

	waiters atomic.Int32  // requests waiting for bytes to be released
	mu      sync.Mutex    // guards freed
	freed   chan struct{} // closed (and replaced) by a release while waiters > 0
}

// budgetWait is how long a request waits for bytes to be given back before
// it is refused. Most charges are held for the microseconds to
// milliseconds a message takes to arrive or be forwarded, so a short wait
// turns the refusals a burst of ordinary exports would meet into a small
// delay; a sender that keeps the budget full still meets refusals.
const budgetWait = 100 * time.Millisecond

// released returns a channel closed by the next release.
func (b *budget) released() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.freed == nil {
		b.freed = make(chan struct{})
	}
	return b.freed
}

// acquire takes n bytes if they fit.
func (b *budget) acquire(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			if pk := b.peak.Load(); u+n > pk {
				b.peak.CompareAndSwap(pk, u+n) // best effort: tests read it after the fact
			}
			return true
		}
	}
}

func (b *budget) release(n int64) {
	b.used.Add(-n)
	if b.waiters.Load() == 0 {
		return
	}
	b.mu.Lock()
	if b.freed != nil {
		close(b.freed)
		b.freed = nil
	}
	b.mu.Unlock()
}

// charge is what one request holds of the budget, and of its peer's share
// of it. It lives on the request's stack; the zero value (no limits)
// admits everything.
type charge struct {
	l    *limits
	peer *peerState // nil: no peer share applies
	n    int64
	why  int // after grow failed: rejectBudget or rejectPerPeerBytes
}

// grow adds n bytes to the charge, reporting whether they fit.
func (c *charge) grow(n int64) bool {
	if c.l == nil || n <= 0 {
		return true
	}
	why, ok := c.l.acquireWait(c.peer, n, nil)
	if !ok {
		c.why = why
		return false
	}
	c.n += n
	return true
}

// shrink gives n bytes of the charge back.
func (c *charge) shrink(n int64) {
	if c.l == nil {
		return
	}
	n = min(n, c.n)
	c.l.release(c.peer, n)
	c.n -= n
}

// set makes the charge n bytes: more must fit, less is given back.
func (c *charge) set(n int64) bool {
	if n > c.n {
		return c.grow(n - c.n)
	}
	c.shrink(c.n - n)
	return true
}

// done gives the whole charge back.
func (c *charge) done() { c.shrink(c.n) }

// pooledCap is the capacity bufPool hands out for a request of n bytes:
// what a buffer of n bytes costs.
func pooledCap(n int) int64 {
	if i := poolClass(n); i >= 0 {
		return int64(poolClassSize(i))
	}
	return int64(n)
}

// jsonDecodeBound is what decoding a JSON request of signal sig to
// protobuf may take before it starts: the transcoder's output buffer, at
// most otlpJSONBound bytes (in a pooled buffer of the class above), for
// traces, metrics and logs; pdata's decoding for profiles (jsonDecodeCost).
func jsonDecodeBound(sig int, js []byte) int64 {
	if signals[sig].jsonRoot == nil {
		return jsonDecodeCost(js)
	}
	return pooledCap(otlpJSONBound(len(js), bytes.Count(js, []byte{','})))
}
