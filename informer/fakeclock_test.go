package informer

import (
	"sync"
	"time"
)

// fakeClock is a clock that moves only when the test steps it. A timer or
// ticker fires when a step reaches its time; like a real ticker, a ticker
// whose reader lags drops ticks (its channel holds one).
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []*fakeWaiter
}

type fakeWaiter struct {
	c      *fakeClock
	at     time.Time
	every  time.Duration // 0: a timer
	ch     chan time.Time
	active bool
}

func newFakeClock(now time.Time) *fakeClock { return &fakeClock{now: now} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Step moves the clock by d and fires what is due.
func (c *fakeClock) Step(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		select {
		case w.ch <- c.now:
		default:
		}
		if w.every <= 0 {
			w.active = false
			continue
		}
		for !w.at.After(c.now) {
			w.at = w.at.Add(w.every)
		}
		kept = append(kept, w)
	}
	clear(c.waiters[len(kept):])
	c.waiters = kept
}

func (c *fakeClock) add(d, every time.Duration) *fakeWaiter {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := &fakeWaiter{c: c, at: c.now.Add(d), every: every, ch: make(chan time.Time, 1), active: true}
	c.waiters = append(c.waiters, w)
	return w
}

func (c *fakeClock) NewTimer(d time.Duration) timer { return c.add(d, 0) }

func (c *fakeClock) NewTicker(d time.Duration) ticker {
	if d <= 0 {
		panic("non-positive interval for NewTicker")
	}
	return fakeTicker{c.add(d, d)}
}

func (w *fakeWaiter) C() <-chan time.Time { return w.ch }

// Stop reports whether the timer was still pending.
func (w *fakeWaiter) Stop() bool {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	was := w.active
	w.active = false
	for i, o := range w.c.waiters {
		if o == w {
			w.c.waiters = append(w.c.waiters[:i], w.c.waiters[i+1:]...)
			break
		}
	}
	return was
}

type fakeTicker struct{ w *fakeWaiter }

func (t fakeTicker) C() <-chan time.Time { return t.w.ch }
func (t fakeTicker) Stop()               { t.w.Stop() }
