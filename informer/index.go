package informer

import (
	"net/netip"
	"time"

	"github.com/podstamp/podstamp/enrich"
)

// class is the state of a cached pod. For ownership, a live (pending or
// running) pod beats a finished or deleted one: those released their address.
type class uint8

const (
	classLive class = iota
	classFinished
	classDeleted
)

func (c class) String() string {
	switch c {
	case classLive:
		return "live"
	case classFinished:
		return "finished"
	}
	return "deleted"
}

// entry is one pod in the cache. Every event builds a new entry, and
// indexLocked sets its ips and cids as it indexes it. Once indexed, only pod
// and incomplete change (a metadata refresh swaps them under the write
// lock); the rest is replaced with the entry, never modified.
type entry struct {
	obj       *podObj
	pod       *enrich.Pod // published: base pod plus metadata
	cls       class
	deletedAt time.Time
	// releasedAt is when the cache first saw the pod finished or deleted:
	// connections accepted from then on cannot be this pod's.
	releasedAt time.Time
	seq        uint64 // order in which the UID was first seen: ties on start time
	key        string // namespace/name
	ips        []netip.Addr
	cids       []string
	// incomplete: a metadata lookup failed when pod was built; retried.
	incomplete bool
}

// better reports whether a should own a key that b also claims. An address
// moves only to a pod that started at the same time or later, or away from a
// holder that finished or was deleted.
//
// Between pods that released the address (finished, or deleted and within
// the grace period) the newest start time wins: it held the address last.
func better(a, b *entry) bool {
	if al, bl := a.cls == classLive, b.cls == classLive; al != bl {
		return al
	}
	if !a.obj.start.Equal(b.obj.start) {
		return a.obj.start.After(b.obj.start)
	}
	return a.seq > b.seq
}

// index maps a key to every entry claiming it and keeps the best one ready.
type index[K comparable] struct {
	cands map[K][]*entry
	best  map[K]*entry
}

func newIndex[K comparable]() index[K] {
	return index[K]{cands: map[K][]*entry{}, best: map[K]*entry{}}
}

func (ix *index[K]) add(k K, e *entry) {
	ix.cands[k] = append(ix.cands[k], e)
	if b := ix.best[k]; b == nil || better(e, b) {
		ix.best[k] = e
	}
}

func (ix *index[K]) remove(k K, e *entry) {
	cs := ix.cands[k]
	for i, c := range cs {
		if c == e {
			cs[i] = cs[len(cs)-1]
			cs[len(cs)-1] = nil
			cs = cs[:len(cs)-1]
			break
		}
	}
	if len(cs) == 0 {
		delete(ix.cands, k)
		delete(ix.best, k)
		return
	}
	ix.cands[k] = cs
	if ix.best[k] == e {
		var b *entry
		for _, c := range cs {
			if b == nil || better(c, b) {
				b = c
			}
		}
		ix.best[k] = b
	}
}

// get returns the owner of k, skipping deleted entries past their grace.
func (ix *index[K]) get(k K, now time.Time, grace time.Duration) *entry {
	return ix.getConn(k, now, grace, time.Time{})
}

// getConn is get for a connection accepted at connAt (zero: unknown). A pod
// that had finished or been deleted before the connection was accepted cannot
// have opened it, so it is skipped (a deleted one even within its grace
// period): the address may already belong to a new pod whose status the
// cache has not seen yet.
func (ix *index[K]) getConn(k K, now time.Time, grace time.Duration, connAt time.Time) *entry {
	b := ix.best[k]
	if b == nil || b.alive(now, grace, connAt) {
		return b
	}
	var r *entry
	for _, c := range ix.cands[k] {
		if c.alive(now, grace, connAt) && (r == nil || better(c, r)) {
			r = c
		}
	}
	return r
}

// alive reports whether e may still be returned: live; or released (finished
// or deleted) after the connection, if known, was accepted, and, when
// deleted, less than grace ago.
func (e *entry) alive(now time.Time, grace time.Duration, connAt time.Time) bool {
	if e.cls == classLive {
		return true
	}
	if !connAt.IsZero() && !connAt.Before(e.releasedAt) {
		return false
	}
	return e.cls == classFinished || now.Sub(e.deletedAt) < grace
}
