package informer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/podstamp/podstamp/informer/kubetypes"
)

// The list-and-watch loop of the pod cache. It first asks for a streaming
// list: one watch that starts with an ADDED event of every pod of the node
// and a BOOKMARK that marks the end of them (sendInitialEvents, the API
// server's WatchList feature, on by default since Kubernetes 1.34), then
// goes on with the changes. One request instead of a LIST and a WATCH, and
// the server streams the pods from its watch cache instead of building a
// list answer in memory. Pods the cache holds that the initial events did
// not bring are deleted once the bookmark came, as after a list. A server
// that refuses streaming lists (400/422: the feature is off, as in 1.33; an
// ERROR event: its etcd is too old to serve them), or that sends no such
// bookmark within listTimeout (a server too old to know it), makes the
// cache list the pods (paged LIST) and watch from the list's resource
// version from then on; see refusesStreaming.
//
// A watch the server ends (its timeout) is opened again from the last
// resource version seen. A watch whose stream breaks (the connection drops,
// or what comes cannot be decoded) is counted and, after a backoff, resumed
// from the last resource version too; only after maxResumes such breaks in
// a row with no event between them are the pods listed again. Any other
// failed list or watch (one that cannot be opened, ends with an ERROR from
// the server, goes silent, sends an event larger than maxEventBytes, or
// ends a streaming list before its bookmark) is counted and logged, and
// after a backoff the pods are listed again, which catches up on whatever
// happened meanwhile. A resource version the server has forgotten (410
// Gone) leads to a fresh list at once. A wait the server asked for
// (Retry-After) is honoured by the backoff.
const (
	listPageSize = 500
	listTimeout  = 60 * time.Second
	backoffMax   = 30 * time.Second
	maxResumes   = 3
	// A watch that ends sooner than this without an error is treated like
	// a failure for pacing, so a server that closes watches at once is not
	// asked again in a tight loop.
	watchMinHealthy = time.Second
)

// listWatchTiming are the timings of the loop. Watches ask the server to
// end them after watchMinTimeout to twice that. One that is still open
// watchSilence after that, with nothing received since, is given up as a
// failure: the server or the path to it is gone without a word (HTTP/2 pings
// catch a dead connection sooner). The first backoff is backoffInitial. New
// sets defaultListWatchTiming; tests shorten it.
type listWatchTiming struct {
	watchMinTimeout time.Duration
	watchSilence    time.Duration
	backoffInitial  time.Duration
	// initialEvents is how long a streaming list may take to send its
	// end-of-list bookmark before the server is taken not to stream lists.
	initialEvents time.Duration
}

var defaultListWatchTiming = listWatchTiming{
	watchMinTimeout: 5 * time.Minute,
	watchSilence:    30 * time.Second,
	backoffInitial:  800 * time.Millisecond,
	initialEvents:   listTimeout,
}

// listWatch runs the loop until ctx ends.
func (c *Cache) listWatch(ctx context.Context) {
	sel := "spec.nodeName=" + c.cfg.NodeName
	bo := backoff{initial: c.lw.backoffInitial, next: c.lw.backoffInitial}
	rv := "0" // the first list may come from the API server's watch cache
	stream := true
	for ctx.Err() == nil {
		if stream {
			again, refused := c.watch(ctx, sel, &rv, &bo, true)
			if refused {
				stream, rv = false, "0"
				continue // list at once: another kind of request
			}
			if !again {
				return
			}
			continue
		}
		listed, err := c.listAll(ctx, sel, rv)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.onWatchError(err)
			if IsGone(err) && rv != "" {
				rv = "" // list the latest state instead
				continue
			}
			if !bo.wait(ctx, retryAfterOf(err)) {
				return
			}
			continue
		}
		c.replace(listed.Items)
		rv = listed.ResourceVersion
		c.markSynced()
		if again, _ := c.watch(ctx, sel, &rv, &bo, false); !again {
			return
		}
	}
}

// initialList is the state of a streaming list until its end bookmark: the
// UIDs of the pods its initial events brought.
type initialList struct {
	seen map[string]struct{}
	done bool
}

// errNoInitialEnd is a streaming list whose end bookmark did not come in
// time: the server does not know sendInitialEvents.
var errNoInitialEnd = errors.New("the watch sent no end-of-list bookmark: the API server does not stream lists")

// watch watches from *rv, again and again, until the pods must be listed
// again (again) or ctx ends (neither). With stream, the first watch is a
// streaming list (from the latest state, whatever *rv is); refused is true
// when the server does not stream lists, and the caller lists instead.
// *rv is the last resource version seen.
func (c *Cache) watch(ctx context.Context, sel string, rv *string, bo *backoff, stream bool) (again, refused bool) {
	var init *initialList
	if stream {
		init = &initialList{seen: map[string]struct{}{}}
	}
	breaks := 0 // broken watches in a row without an event
	for {
		start := time.Now()
		next, events, err := c.watchOnce(ctx, sel, *rv, init)
		if ctx.Err() != nil {
			return false, false
		}
		if init != nil && !init.done {
			// The list did not complete: there is nothing to resume from.
			if refusesStreaming(err) {
				c.log.Info("the API server does not stream lists (sendInitialEvents); listing pods instead",
					"err", err)
				return true, true
			}
			if err == nil {
				err = errors.New("the API server ended the streaming list before its end-of-list bookmark")
			}
			c.onWatchError(err)
			if IsGone(err) {
				*rv = ""
				return true, false
			}
			return bo.wait(ctx, retryAfterOf(err)), false
		}
		init = nil
		*rv = next
		if events > 0 {
			breaks = 0
		}
		healthy := time.Since(start) >= watchMinHealthy
		if err == nil {
			// The server ended the watch (its timeout): watch on.
			if healthy {
				bo.reset()
			} else if !bo.wait(ctx, 0) {
				return false, false
			}
			continue
		}
		c.onWatchError(err)
		switch {
		case IsGone(err):
			*rv = ""
			return true, false // list now
		case streamBroken(err) && breaks < maxResumes:
			// Nothing the server said is lost: resume where the stream
			// broke rather than list everything again.
			breaks++
			if healthy {
				bo.reset()
			}
			if !bo.wait(ctx, 0) {
				return false, false
			}
		default:
			return bo.wait(ctx, retryAfterOf(err)), false // list: catch up on what was missed
		}
	}
}

// refusesStreaming reports whether err, the end of a streaming list before
// its end bookmark, says that the server does not stream lists: it sent no
// end bookmark in time (a server that does not know sendInitialEvents), or
// answered the request with an error of its own (400 or 422 when its
// WatchList feature is off, an ERROR event of 500 when its etcd cannot
// serve it). A broken connection, a 410, 429, 503 or 504, or a watch that
// could not be opened for want of a server are passing troubles: the list
// is streamed again after the backoff.
func refusesStreaming(err error) bool {
	if errors.Is(err, errNoInitialEnd) {
		return true
	}
	st, ok := statusOf(err)
	if !ok || st.Reason == reasonStreamBroken || isGoneStatus(st) {
		return false
	}
	switch st.Code {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return false
	}
	return st.Code >= 400
}

// streamBroken reports whether err is a watch stream that broke on the
// client's side: the connection dropped or an event could not be decoded.
func streamBroken(err error) bool {
	st, ok := statusOf(err)
	return ok && st.Reason == reasonStreamBroken
}

// listAll lists the node's pods page by page.
func (c *Cache) listAll(ctx context.Context, sel, rv string) (*kubetypes.PodList, error) {
	opts := ListOptions{FieldSelector: sel, ResourceVersion: rv, Limit: listPageSize, TimeoutSeconds: int64(listTimeout / time.Second)}
	var out *kubetypes.PodList
	for {
		l, err := c.client.ListPods(ctx, opts)
		if err != nil {
			return nil, err
		}
		if out == nil {
			out = l
		} else {
			out.Items = append(out.Items, l.Items...)
			out.ResourceVersion = l.ResourceVersion
		}
		if l.Continue == "" {
			out.Continue = ""
			return out, nil
		}
		opts.Continue, opts.ResourceVersion = l.Continue, ""
	}
}

// watchOnce applies the events of one watch from rv until it ends, and
// returns the last resource version seen and how many events (bookmarks
// included) came. The error is the watch's: it could not be opened, it
// ended with an ERROR event, or it went silent. With init, the watch is a
// streaming list: its initial events are recorded in init, and its end
// bookmark deletes the pods they did not bring and marks the cache synced.
func (c *Cache) watchOnce(ctx context.Context, sel, rv string, init *initialList) (string, int, error) {
	timeout := c.lw.watchMinTimeout + rand.N(c.lw.watchMinTimeout)
	opts := ListOptions{
		FieldSelector: sel, ResourceVersion: rv, AllowWatchBookmarks: true,
		TimeoutSeconds: int64(timeout / time.Second),
	}
	var initDue <-chan time.Time
	if init != nil {
		opts.SendInitialEvents, opts.ResourceVersion = true, "" // the latest state
		t := time.NewTimer(c.lw.initialEvents)
		defer t.Stop()
		initDue = t.C
	}
	w, err := c.client.WatchPods(ctx, opts)
	if err != nil {
		return rv, 0, err
	}
	defer w.Stop()
	silent := time.NewTimer(timeout + c.lw.watchSilence)
	defer silent.Stop()
	events := 0
	for {
		select {
		case <-ctx.Done():
			return rv, events, nil
		case <-silent.C:
			return rv, events, fmt.Errorf("watch silent for %v past its timeout of %v; giving it up", c.lw.watchSilence, timeout)
		case <-initDue:
			return rv, events, fmt.Errorf("%w within %v", errNoInitialEnd, c.lw.initialEvents)
		case ev, ok := <-w.ResultChan():
			if !ok {
				return rv, events, nil
			}
			silent.Reset(timeout + c.lw.watchSilence)
			switch ev.Type {
			case kubetypes.Added, kubetypes.Modified:
				if init != nil && !init.done && ev.Pod != nil {
					init.seen[ev.Pod.UID] = struct{}{}
				}
				c.onUpsert(ev.Pod)
			case kubetypes.Deleted:
				c.onDelete(ev.Pod)
			case kubetypes.Bookmark:
				if init != nil && !init.done && ev.Pod != nil && ev.Pod.Annotations[InitialEventsEnd] == "true" {
					init.done, initDue = true, nil
					c.deleteUnseen(init.seen)
					init.seen = nil
					c.markSynced()
				}
			case kubetypes.Error:
				st := kubetypes.Status{Message: "watch ended with an error"}
				if ev.Status != nil {
					st = *ev.Status
				}
				return rv, events, &StatusError{Status: st}
			}
			events++
			if ev.Pod != nil && ev.Pod.ResourceVersion != "" {
				rv = ev.Pod.ResourceVersion
			}
		}
	}
}

// replace applies a full list: every listed pod is upserted, and every pod
// the cache holds as present that is not in the list is deleted (it went
// away while no watch was open).
func (c *Cache) replace(items []kubetypes.Pod) {
	seen := make(map[string]struct{}, len(items))
	for i := range items {
		seen[items[i].UID] = struct{}{}
		c.onUpsert(&items[i])
	}
	c.deleteUnseen(seen)
}

// deleteUnseen deletes every pod the cache holds as present whose UID is
// not in seen, the pods of a full list.
func (c *Cache) deleteUnseen(seen map[string]struct{}) {
	var gone []*podObj
	c.mu.RLock()
	for uid, e := range c.byUID {
		if _, ok := seen[uid]; !ok && e.cls != classDeleted {
			gone = append(gone, e.obj)
		}
	}
	c.mu.RUnlock()
	for _, o := range gone {
		c.onDelete(o)
	}
}

func (c *Cache) markSynced() {
	if c.synced.CompareAndSwap(false, true) {
		c.m.synced.Set(1)
		c.log.Info("pod cache synced", "node", c.cfg.NodeName, "pods", c.podCount())
		close(c.syncDone)
	}
}

// backoff is an exponential delay with jitter, from initial to backoffMax.
type backoff struct {
	initial, next time.Duration
}

func (b *backoff) reset() { b.next = b.initial }

// wait sleeps for the next delay, or for atLeast (a wait the server asked
// for) if that is longer; false if ctx ended first.
func (b *backoff) wait(ctx context.Context, atLeast time.Duration) bool {
	d := b.next/2 + rand.N(b.next/2+1)
	b.next = min(2*b.next, backoffMax)
	return sleepCtx(ctx, max(d, atLeast)) == nil
}
