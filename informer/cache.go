package informer

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/podstamp/podstamp/enrich"
)

// Cache is a node-scoped pod cache. It implements enrich.Resolver.
type Cache struct {
	cfg    Config
	log    *slog.Logger
	client API
	clock  clock
	lw     listWatchTiming
	m      *metrics

	started  atomic.Bool
	synced   atomic.Bool
	syncDone chan struct{} // closed when the first list was applied
	nodeRead chan struct{} // closed after the first attempt to read the node

	mu       sync.RWMutex
	byUID    map[string]*entry
	byIP     index[netip.Addr]
	byName   index[string]
	byCID    index[string]
	hostNet  map[netip.Addr]int // addresses of live hostNetwork pods
	seq      uint64
	waiters  map[netip.Addr]*waiter
	negative map[netip.Addr]time.Time // address -> not held again until
	nodeIPs  map[netip.Addr]bool      // Config.NodeIPs and the node's status.addresses
	gateways map[netip.Addr]bool      // first address of each spec.podCIDRs
	podCIDRs []netip.Prefix           // the node's spec.podCIDRs

	// holdMu guards the per-peer hold accounting; held and heldReqs change
	// only under it (they are atomic so that metrics read them lock-free).
	holdMu   sync.Mutex
	perPeer  map[netip.Addr]peerHold
	held     atomic.Int64 // bytes of held requests
	heldReqs atomic.Int64

	routes *lru.Cache[netip.Addr, routeEntry] // route answers, for routeTTL

	liveMu      sync.Mutex
	liveProbe   chan struct{} // closed once a pending lock probe got the lock
	liveTimeout time.Duration

	meta *metaCache

	warnNAT   rateLimit
	warnWatch rateLimit
	warnRoute rateLimit

	// test hooks, set before Run
	afterEvent func(kind string, o *podObj) // after the cache applied an event
	onHold     func(ip netip.Addr)          // after a request started waiting
	afterNode  func()                       // after the node object was read
	afterTick  func()                       // after metaLoop handled a tick of MetadataTTL
	afterPoll  func(error)                  // after kubeletLoop applied (nil) or failed a read of the kubelet

	podsWanted chan struct{} // a held request asks kubeletLoop for a read (Config.Kubelet)
}

var _ enrich.Resolver = (*Cache)(nil)

// New builds a Cache for the pods of cfg.NodeName, read through client
// (NewAPI for a real API server). Nothing is contacted until Run. reg may be
// nil (no metrics registered).
func New(client API, cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Cache, error) {
	if client == nil {
		return nil, errors.New("informer: nil API")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	c := &Cache{
		cfg:      cfg,
		log:      log,
		client:   client,
		clock:    realClock{},
		lw:       defaultListWatchTiming,
		byUID:    map[string]*entry{},
		byIP:     newIndex[netip.Addr](),
		byName:   newIndex[string](),
		byCID:    newIndex[string](),
		hostNet:  map[netip.Addr]int{},
		waiters:  map[netip.Addr]*waiter{},
		negative: map[netip.Addr]time.Time{},
		nodeIPs:  map[netip.Addr]bool{},
		gateways: map[netip.Addr]bool{},
		perPeer:  map[netip.Addr]peerHold{},
		routes:   newRouteCache(),
		meta:     newMetaCache(cfg.MetadataTTL),
		nodeRead: make(chan struct{}),
		syncDone: make(chan struct{}),

		podsWanted:  make(chan struct{}, 1),
		liveTimeout: liveTimeout,
	}
	for _, ip := range cfg.NodeIPs {
		c.nodeIPs[ip.Unmap()] = true
	}
	m, err := newMetrics(reg, c)
	if err != nil {
		return nil, err
	}
	c.m = m

	return c, nil
}

// Run starts the watch and the background refreshes and blocks until ctx is
// done. The watch reconnects by itself; while the API server is away the cache
// keeps serving what it has, and a relist catches up on what was missed.
func (c *Cache) Run(ctx context.Context) error {
	if !c.started.CompareAndSwap(false, true) {
		return errors.New("informer: Run called twice")
	}
	c.log.Info("pod cache starting", "node", c.cfg.NodeName)
	var wg sync.WaitGroup
	if c.cfg.Kubelet != nil {
		wg.Go(func() { c.kubeletLoop(ctx) })
	} else {
		wg.Go(func() { c.listWatch(ctx) })
	}
	wg.Go(func() { c.metaLoop(ctx) })
	wg.Go(func() { c.sweepLoop(ctx) })
	wg.Wait()
	return nil
}

// Ready returns nil once the first list of pods has been delivered to the
// cache and the node has been read once (successfully or not), so that node
// and pod-CIDR gateway addresses are classified from the first request on.
func (c *Cache) Ready() error {
	if !c.started.Load() {
		return errors.New("pod cache not started")
	}
	if !c.isSynced() {
		return errors.New("pod cache has not synced yet")
	}
	select {
	case <-c.nodeRead:
		return nil
	default:
		return errors.New("node " + c.cfg.NodeName + " not read yet")
	}
}

func (c *Cache) isSynced() bool { return c.synced.Load() }

// Synced is closed once the first list of the node's pods is in the cache.
func (c *Cache) Synced() <-chan struct{} { return c.syncDone }

// watchWarnEvery paces the warnings of failed lists and watches.
const watchWarnEvery = 30 * time.Second

// liveTimeout bounds how long Live waits for the cache's lock.
const liveTimeout = 500 * time.Millisecond

// Live returns an error when the cache's lock cannot be taken within a short
// time: the cache is wedged and neither resolves peers nor applies events.
// One probe waits for the lock at a time; while it is stuck, Live fails at
// once without starting another.
func (c *Cache) Live() error {
	if c.mu.TryLock() {
		c.mu.Unlock()
		return nil
	}
	c.liveMu.Lock()
	probe := c.liveProbe
	if probe == nil {
		probe = make(chan struct{})
		c.liveProbe = probe
		go func() {
			// The write lock: it waits for readers too, so a stuck reader
			// (which also stops every event) is caught.
			c.mu.Lock()
			//lint:ignore SA2001 the lock is taken only to see that it can be.
			c.mu.Unlock()
			c.liveMu.Lock()
			c.liveProbe = nil
			c.liveMu.Unlock()
			close(probe)
		}()
	}
	c.liveMu.Unlock()
	t := time.NewTimer(c.liveTimeout)
	defer t.Stop()
	select {
	case <-probe:
		return nil
	case <-t.C:
		return errors.New("pod cache lock not available within " + c.liveTimeout.String() + ": the cache is wedged")
	}
}

// onWatchError counts a failed list or watch and logs it, at most once per
// watchWarnEvery.
func (c *Cache) onWatchError(err error) {
	c.m.watchErrors.Inc()
	if c.warnWatch.allow(c.clock.Now(), watchWarnEvery) {
		c.log.Warn("pod watch failed; serving the cached pods and reconnecting", "node", c.cfg.NodeName, "err", err)
	}
}

func (c *Cache) podCount() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.byUID)
}

func (c *Cache) onUpsert(obj any) {
	o := podFromEvent(obj)
	if o == nil {
		return
	}
	pub, complete := c.publishNow(o) // never waits for the API server
	c.mu.Lock()
	e := &entry{obj: o, pod: pub, cls: classLive, key: o.Namespace + "/" + o.Name, incomplete: !complete}
	if o.finished() {
		e.cls, e.releasedAt = classFinished, c.clock.Now()
	}
	if old := c.byUID[string(o.UID)]; old != nil {
		e.seq = old.seq
		if e.cls != classLive && old.cls != classLive {
			e.releasedAt = old.releasedAt // released when first seen finished
		}
		c.unindexLocked(old)
	} else {
		c.seq++
		e.seq = c.seq
	}
	c.indexLocked(e)
	c.mu.Unlock()
	if !complete {
		c.fillLater() // after indexing, so that the fill sees this pod
	}
	if c.afterEvent != nil {
		c.afterEvent("upsert", o)
	}
}

func (c *Cache) onDelete(obj any) {
	o := podFromEvent(obj)
	if o == nil {
		return
	}
	c.mu.Lock()
	now := c.clock.Now()
	e := &entry{obj: o, pod: o.pod, cls: classDeleted, deletedAt: now, releasedAt: now, key: o.Namespace + "/" + o.Name}
	// Deletes go by UID: only this pod's entry changes, never that of a
	// newer pod that reuses its name or address.
	if old := c.byUID[string(o.UID)]; old != nil {
		e.obj, e.pod, e.seq = old.obj, old.pod, old.seq
		if old.cls == classDeleted {
			e.deletedAt = old.deletedAt // a repeated delete does not extend the grace
		}
		if old.cls != classLive {
			e.releasedAt = old.releasedAt // it finished before it was deleted
		}
		c.unindexLocked(old)
	} else {
		c.seq++
		e.seq = c.seq
	}
	c.indexLocked(e)
	c.mu.Unlock()
	if c.afterEvent != nil {
		c.afterEvent("delete", o)
	}
}

func (c *Cache) indexLocked(e *entry) {
	p := e.obj.pod
	c.byUID[p.UID] = e
	c.byName.add(e.key, e)
	e.ips = nil
	if p.HostNetwork {
		if e.cls != classDeleted {
			for _, ip := range p.IPs {
				c.hostNet[ip]++
			}
		}
	} else {
		e.ips = p.IPs
		for _, ip := range e.ips {
			c.byIP.add(ip, e)
			delete(c.negative, ip)
			if w := c.waiters[ip]; w != nil {
				close(w.ch)
				delete(c.waiters, ip)
			}
		}
	}
	e.cids = e.cids[:0]
	for _, ct := range p.Containers {
		for _, id := range ct.IDs {
			e.cids = append(e.cids, id)
			c.byCID.add(id, e)
		}
	}
	c.m.pods.Set(float64(len(c.byUID)))
}

func (c *Cache) unindexLocked(e *entry) {
	p := e.obj.pod
	if c.byUID[p.UID] == e {
		delete(c.byUID, p.UID)
	}
	c.byName.remove(e.key, e)
	for _, ip := range e.ips {
		c.byIP.remove(ip, e)
	}
	if p.HostNetwork && e.cls != classDeleted {
		for _, ip := range p.IPs {
			if c.hostNet[ip]--; c.hostNet[ip] <= 0 {
				delete(c.hostNet, ip)
			}
		}
	}
	for _, id := range e.cids {
		c.byCID.remove(id, e)
	}
	c.m.pods.Set(float64(len(c.byUID)))
}

func (c *Cache) sweepLoop(ctx context.Context) {
	period := min(c.cfg.PodDeleteGrace, c.cfg.HoldNegativeTTL) / 2
	period = max(period, time.Second)
	t := c.clock.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			c.sweep()
			c.sweepFails(c.clock.Now())
			if c.needsMeta() {
				c.republish(ctx, true) // retry the lookups that failed
			}
		}
	}
}

// sweep forgets deleted pods past their grace and expired negative entries.
func (c *Cache) sweep() {
	now := c.clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.byUID {
		if !e.alive(now, c.cfg.PodDeleteGrace, time.Time{}) {
			c.unindexLocked(e)
		}
	}
	for ip, until := range c.negative {
		if !now.Before(until) {
			delete(c.negative, ip)
		}
	}
}

// ByUID implements enrich.Lookup.
func (c *Cache) ByUID(uid string) *enrich.Pod {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if e := c.byUID[uid]; e != nil && e.alive(c.clock.Now(), c.cfg.PodDeleteGrace, time.Time{}) {
		return e.pod
	}
	return nil
}

// ByIP implements enrich.Lookup. It never returns a hostNetwork pod.
func (c *Cache) ByIP(ip netip.Addr) *enrich.Pod {
	ip = ip.Unmap()
	c.mu.RLock()
	defer c.mu.RUnlock()
	if e := c.byIP.get(ip, c.clock.Now(), c.cfg.PodDeleteGrace); e != nil {
		return e.pod
	}
	return nil
}

// ByName implements enrich.Lookup.
func (c *Cache) ByName(namespace, name string) *enrich.Pod {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if e := c.byName.get(namespace+"/"+name, c.clock.Now(), c.cfg.PodDeleteGrace); e != nil {
		return e.pod
	}
	return nil
}

// ByContainerID implements enrich.Lookup. id may carry a runtime prefix.
func (c *Cache) ByContainerID(id string) *enrich.Pod {
	id = trimRuntime(id)
	c.mu.RLock()
	defer c.mu.RUnlock()
	if e := c.byCID.get(id, c.clock.Now(), c.cfg.PodDeleteGrace); e != nil {
		return e.pod
	}
	return nil
}

// rateLimit lets one event through per period.
type rateLimit struct {
	mu   sync.Mutex
	last time.Time
}

func (r *rateLimit) allow(now time.Time, every time.Duration) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.last.IsZero() && now.Sub(r.last) < every {
		return false
	}
	r.last = now
	return true
}
