package informer

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/podstamp/podstamp/informer/kubetypes"

	"github.com/podstamp/podstamp/enrich"
)

// metaVal is the part of a namespace, node, ReplicaSet or Job podstamp uses.
type metaVal struct {
	labels, annotations map[string]string
	uid                 string
	// ownerName/ownerUID: the Deployment of a ReplicaSet, the CronJob of a Job.
	ownerName, ownerUID string
	// node only
	addrs    []netip.Addr
	gateways []netip.Addr
	podCIDRs []netip.Prefix
}

// The watch loop never waits for a metadata GET: a pod is published at once
// with what is cached (an expired value until it is read again), and
// fillLoop makes the missing GETs, each bounded by metaGetTimeout, and
// publishes the pod again with them. A failed GET is not made again for the
// same object before metaRetryAfter, or before the wait the server asked for
// with Retry-After if that is longer; sweepLoop retries it after that. At
// most metaCacheSize objects are cached.
const (
	metaGetTimeout = 2 * time.Second
	metaRetryAfter = 10 * time.Second
	metaCacheSize  = 4096
)

// metaCache holds the results of on-demand GETs for MetadataTTL (by the
// cache's clock), the least recently used going first when it is full.
type metaCache struct {
	lru *lru.Cache[string, metaEntry]
	ttl time.Duration

	mu    sync.Mutex
	fails map[string]time.Time // key -> do not GET again before
	warn  map[metaKind]*rateLimit

	nodeForbidden sync.Once

	// fill wakes fillLoop: a pod was published without metadata that is
	// not cached yet.
	fill chan struct{}
	// passed is closed after each pass of fillLoop (tests wait on it).
	passMu sync.Mutex
	passed chan struct{}
}

type metaEntry struct {
	v     metaVal
	until time.Time
}

func newMetaCache(ttl time.Duration) *metaCache {
	l, err := lru.New[string, metaEntry](metaCacheSize)
	if err != nil {
		panic(err) // only for a size below 1
	}
	return &metaCache{lru: l, ttl: ttl, fails: map[string]time.Time{},
		warn: map[metaKind]*rateLimit{kindNamespace: {}, kindNode: {}, kindReplicaSet: {}, kindJob: {},
			kindDeployment: {}, kindStatefulSet: {}, kindDaemonSet: {}, kindCronJob: {}},
		fill: make(chan struct{}, 1), passed: make(chan struct{})}
}

// metaKind is a kind of object podstamp GETs on demand.
type metaKind string

const (
	kindNamespace  metaKind = "namespace"
	kindNode       metaKind = "node"
	kindReplicaSet metaKind = "replicaset"
	kindJob        metaKind = "job"
	// Read only for rules that take labels or annotations from workloads.
	kindDeployment  metaKind = "deployment"
	kindStatefulSet metaKind = "statefulset"
	kindDaemonSet   metaKind = "daemonset"
	kindCronJob     metaKind = "cronjob"
)

// workloadResource is the API path prefix and resource of a workload kind
// read for its labels and annotations.
var workloadResource = map[metaKind][2]string{
	kindDeployment:  {"/apis/apps/v1", "deployments"},
	kindStatefulSet: {"/apis/apps/v1", "statefulsets"},
	kindDaemonSet:   {"/apis/apps/v1", "daemonsets"},
	kindCronJob:     {"/apis/batch/v1", "cronjobs"},
}

// metadataGetter is an API that can GET any object's metadata (the REST
// client); other APIs have no workload labels or annotations to give.
type metadataGetter interface {
	getMetadata(ctx context.Context, prefix, ns, resource, name string) (*kubetypes.PartialObjectMetadata, error)
}

// clusterUIDNamespace is the namespace whose UID is k8s.cluster.uid (as in
// the semantic conventions and the k8sattributes processor).
const clusterUIDNamespace = "kube-system"

// lookup returns the cached object, or GETs it. ok is false when it could not
// be read: callers stamp without it. Failed GETs are retried at most every
// metaRetryAfter (or later if the server asked for it with Retry-After), so
// an unreachable or overloaded API server costs little.
func (c *Cache) lookup(ctx context.Context, kind metaKind, ns, name string) (metaVal, bool) {
	key := string(kind) + "/" + ns + "/" + name
	now := c.clock.Now()
	if e, ok := c.meta.lru.Get(key); ok {
		if now.Before(e.until) {
			return e.v, true
		}
		c.meta.lru.Remove(key)
	}
	c.meta.mu.Lock()
	if t, failed := c.meta.fails[key]; failed && now.Before(t) {
		c.meta.mu.Unlock()
		return metaVal{}, false
	}
	c.meta.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, metaGetTimeout)
	defer cancel()
	v, err := c.get(ctx, kind, ns, name)
	if IsNotFound(err) {
		err = nil // cache the absence like a value
	}
	if err != nil {
		c.m.metaErrors.WithLabelValues(string(kind)).Inc()
		c.meta.mu.Lock()
		c.meta.fails[key] = now.Add(max(metaRetryAfter, retryAfterOf(err)))
		c.meta.mu.Unlock()
		switch {
		case kind == kindNode && !c.cfg.Needs.NodeMetadata && IsForbidden(err):
			// Reading the node only sharpens the NAT diagnosis (its addresses
			// and pod-CIDR gateway); the least-privilege RBAC does not grant
			// it. Say so once, not every MetadataTTL.
			c.meta.nodeForbidden.Do(func() {
				c.log.Info("reading this node is not permitted; NAT diagnosis uses --node-ip only (grant nodes get to also recognise the pod-CIDR gateway)",
					"node", name)
			})
		case c.meta.warn[kind].allow(now, time.Minute):
			c.log.Warn("metadata lookup failed; stamping without it (logged at most once a minute per kind)",
				"kind", kind, "namespace", ns, "name", name, "err", err)
		}
		return metaVal{}, false
	}
	c.meta.mu.Lock()
	delete(c.meta.fails, key)
	c.meta.mu.Unlock()
	c.meta.lru.Add(key, metaEntry{v: v, until: now.Add(c.meta.ttl)})
	return v, true
}

// cachedMeta is lookup without the GET: the cached object, even if it
// expired (it is better than none until it is read again); fresh is false
// when there is none or it expired.
func (c *Cache) cachedMeta(kind metaKind, ns, name string) (v metaVal, fresh bool) {
	e, ok := c.meta.lru.Get(string(kind) + "/" + ns + "/" + name)
	if !ok {
		return metaVal{}, false
	}
	return e.v, c.clock.Now().Before(e.until)
}

func (c *Cache) get(ctx context.Context, kind metaKind, ns, name string) (metaVal, error) {
	switch kind {
	case kindNamespace:
		o, err := c.client.GetNamespaceMetadata(ctx, name)
		if err != nil {
			return metaVal{}, err
		}
		return metaVal{labels: o.Labels, annotations: o.Annotations, uid: string(o.UID)}, nil
	case kindNode:
		o, err := c.client.GetNode(ctx, name)
		if err != nil {
			return metaVal{}, err
		}
		v := metaVal{labels: o.Labels, annotations: o.Annotations, uid: string(o.UID)}
		for _, a := range o.Status.Addresses {
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				v.addrs = append(v.addrs, ip.Unmap())
			}
		}
		cidrs := o.Spec.PodCIDRs
		if len(cidrs) == 0 && o.Spec.PodCIDR != "" {
			cidrs = []string{o.Spec.PodCIDR}
		}
		for _, s := range cidrs {
			if p, err := netip.ParsePrefix(s); err == nil {
				v.podCIDRs = append(v.podCIDRs, p.Masked())
			}
			if g, ok := gateway(s); ok {
				v.gateways = append(v.gateways, g)
			}
		}
		return v, nil
	case kindReplicaSet:
		o, err := c.client.GetReplicaSetMetadata(ctx, ns, name)
		if err != nil {
			return metaVal{}, err
		}
		return ownedBy(o, "Deployment"), nil
	case kindJob:
		o, err := c.client.GetJobMetadata(ctx, ns, name)
		if err != nil {
			return metaVal{}, err
		}
		return ownedBy(o, "CronJob"), nil
	case kindDeployment, kindStatefulSet, kindDaemonSet, kindCronJob:
		g, ok := c.client.(metadataGetter)
		if !ok {
			return metaVal{}, fmt.Errorf("this API client cannot read %s metadata", kind)
		}
		r := workloadResource[kind]
		o, err := g.getMetadata(ctx, r[0], ns, r[1], name)
		if err != nil {
			return metaVal{}, err
		}
		return metaVal{labels: o.Labels, annotations: o.Annotations, uid: string(o.UID)}, nil
	}
	return metaVal{}, nil
}

// ownedBy is the UID of a ReplicaSet or Job and its owner of ownerKind.
func ownedBy(o *kubetypes.PartialObjectMetadata, ownerKind string) metaVal {
	v := metaVal{uid: string(o.UID), labels: o.Labels, annotations: o.Annotations}
	for _, r := range o.OwnerReferences {
		if r.Kind == ownerKind {
			v.ownerName, v.ownerUID = r.Name, string(r.UID)
		}
	}
	return v
}

// gateway returns the first address of a pod CIDR (the .1 of an IPv4 /24),
// which bridge CNIs give the node side of the pod network.
func gateway(cidr string) (netip.Addr, bool) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return netip.Addr{}, false
	}
	g := p.Masked().Addr().Next()
	if !g.IsValid() || !p.Contains(g) {
		return netip.Addr{}, false
	}
	return g.Unmap(), true
}

func (c *Cache) needsMeta() bool {
	n := c.cfg.Needs
	return n.NamespaceMetadata || n.NodeMetadata || n.WorkloadUIDs || n.WorkloadMetadata || n.ClusterUID
}

// sweepFails forgets failed lookups whose retry time has passed.
func (c *Cache) sweepFails(now time.Time) {
	c.meta.mu.Lock()
	defer c.meta.mu.Unlock()
	for k, t := range c.meta.fails {
		if !now.Before(t) {
			delete(c.meta.fails, k)
		}
	}
}

// publishNow is publish for the watch loop: it never waits for the API
// server. Metadata not cached yet (or expired) is left out (or stale) and
// fillLoop reads it; the pod is published again then.
func (c *Cache) publishNow(o *podObj) (pub *enrich.Pod, complete bool) {
	return c.publish(context.Background(), o, false)
}

// fillLater wakes fillLoop. The cache calls it after it indexed a pod that
// publishNow left incomplete, so that the pass sees that pod.
func (c *Cache) fillLater() {
	select {
	case c.meta.fill <- struct{}{}:
	default: // a pass is due already
	}
}

// fillLoop reads the metadata the watch loop left out, off the watch loop:
// a GET (bounded by metaGetTimeout) never delays the events of other pods
// or the release of requests held for a pod.
func (c *Cache) fillLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.meta.fill:
			c.republish(ctx, true)
			c.meta.passMu.Lock()
			close(c.meta.passed)
			c.meta.passed = make(chan struct{})
			c.meta.passMu.Unlock()
		}
	}
}

// nextFill is closed when the next pass of fillLoop ends.
func (m *metaCache) nextFill() <-chan struct{} {
	m.passMu.Lock()
	defer m.passMu.Unlock()
	return m.passed
}

// publish returns the pod to hand out: the stripped pod plus whatever
// namespace, node and workload metadata the rules need and can be read
// (fetch) or is cached (!fetch). complete is false when some is missing or
// stale: the pod is published again later.
func (c *Cache) publish(ctx context.Context, o *podObj, fetch bool) (pub *enrich.Pod, complete bool) {
	if !c.needsMeta() {
		return o.pod, true
	}
	look := func(kind metaKind, ns, name string) (metaVal, bool) {
		if fetch {
			return c.lookup(ctx, kind, ns, name)
		}
		return c.cachedMeta(kind, ns, name)
	}
	complete = true
	p := *o.pod
	if c.cfg.Needs.NamespaceMetadata {
		v, ok := look(kindNamespace, "", p.Namespace)
		p.NamespaceLabels, p.NamespaceAnnotations = v.labels, v.annotations
		complete = complete && ok
	}
	if c.cfg.Needs.NodeMetadata && p.NodeName != "" {
		v, ok := look(kindNode, "", p.NodeName)
		p.NodeLabels, p.NodeAnnotations, p.NodeUID = v.labels, v.annotations, v.uid
		complete = complete && ok
	}
	if c.cfg.Needs.ClusterUID {
		v, ok := look(kindNamespace, "", clusterUIDNamespace)
		p.ClusterUID = v.uid
		complete = complete && ok
	}
	if (c.cfg.Needs.WorkloadUIDs || c.cfg.Needs.WorkloadMetadata) && len(p.Workloads) > 0 {
		ws := slices.Clone(p.Workloads)
		var rs, job metaVal
		if o.rsName != "" {
			var ok bool
			rs, ok = look(kindReplicaSet, p.Namespace, o.rsName)
			complete = complete && ok
		}
		if o.jobName != "" {
			var ok bool
			job, ok = look(kindJob, p.Namespace, o.jobName)
			complete = complete && ok
		}
		for i := range ws {
			w := &ws[i]
			switch w.Kind {
			case enrich.Deployment:
				if rs.ownerName == w.Name {
					w.UID = rs.ownerUID
				}
			case enrich.CronJob:
				if job.ownerName == w.Name {
					w.UID = job.ownerUID
				}
			default:
				w.UID = o.ownerUIDs[w.Kind]
			}
			if !c.cfg.Needs.WorkloadMetadata {
				continue
			}
			switch w.Kind {
			case enrich.ReplicaSet:
				w.Labels, w.Annotations = rs.labels, rs.annotations
			case enrich.Job:
				w.Labels, w.Annotations = job.labels, job.annotations
			default:
				v, ok := look(metaKind(w.Kind), p.Namespace, w.Name)
				w.Labels, w.Annotations = v.labels, v.annotations
				complete = complete && ok
			}
		}
		if !c.cfg.Needs.WorkloadUIDs {
			for i := range ws {
				ws[i].UID = ""
			}
		}
		p.Workloads = ws
	}
	return &p, complete
}

// nodeRefresh is how often the node is read again when no rule stamps its
// labels, annotations or UID: its addresses and pod CIDRs (for locality and
// the NAT diagnosis) hardly ever change, and a GET of the node every
// MetadataTTL on every node would be most of what a fleet of podstamps asks
// of the API server between pod changes.
const nodeRefresh = time.Hour

// metaLoop reads this node (addresses and pod-CIDR gateways for the NAT
// diagnosis, when node read is allowed) at start, again every MetadataTTL
// when rules need its metadata and every nodeRefresh otherwise, and
// refreshes pod metadata every MetadataTTL.
func (c *Cache) metaLoop(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { c.fillLoop(ctx) })
	if !c.cfg.SkipNodeRead {
		c.refreshNode(ctx)
	}
	nodeRead := c.clock.Now()
	t := c.clock.NewTicker(c.cfg.MetadataTTL)
	defer t.Stop()
	// Only now: whoever waits for the first read finds the refresh ticking
	// (a test clock stepped at once would otherwise step past the ticker).
	close(c.nodeRead)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			if !c.cfg.SkipNodeRead && (c.cfg.Needs.NodeMetadata || c.clock.Now().Sub(nodeRead) >= nodeRefresh) {
				c.refreshNode(ctx)
				nodeRead = c.clock.Now()
			}
			if c.needsMeta() {
				c.republish(ctx, false)
			}
			if c.afterTick != nil {
				c.afterTick()
			}
		}
	}
}

func (c *Cache) refreshNode(ctx context.Context) {
	v, ok := c.lookup(ctx, kindNode, "", c.cfg.NodeName)
	if !ok {
		return
	}
	if c.afterNode != nil {
		defer c.afterNode()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodeIPs = map[netip.Addr]bool{}
	for _, ip := range c.cfg.NodeIPs {
		c.nodeIPs[ip.Unmap()] = true
	}
	for _, ip := range v.addrs {
		c.nodeIPs[ip] = true
	}
	c.gateways = map[netip.Addr]bool{}
	for _, g := range v.gateways {
		c.gateways[g] = true
	}
	c.podCIDRs = v.podCIDRs
	// Requests held for these addresses (before the first read) get their
	// answer now.
	for ip, w := range c.waiters {
		if _, _, ok := c.nonPodLocked(ip); ok {
			close(w.ch)
			delete(c.waiters, ip)
		}
	}
}

// republish rebuilds the metadata of every pod, or only of those whose last
// lookup failed (GETting what expired), and swaps the published pod of
// entries that did not change meanwhile.
func (c *Cache) republish(ctx context.Context, onlyIncomplete bool) {
	c.mu.RLock()
	var objs []*podObj
	for _, e := range c.byUID {
		if e.cls != classDeleted && (e.incomplete || !onlyIncomplete) {
			objs = append(objs, e.obj)
		}
	}
	c.mu.RUnlock()
	for _, o := range objs {
		if ctx.Err() != nil {
			return
		}
		pub, complete := c.publish(ctx, o, true)
		c.mu.Lock()
		if e := c.byUID[string(o.UID)]; e != nil && e.obj == o {
			e.incomplete = !complete
			if !samePod(e.pod, pub) {
				e.pod = pub
			}
		}
		c.mu.Unlock()
	}
}

func samePod(a, b *enrich.Pod) bool {
	return maps.Equal(a.NamespaceLabels, b.NamespaceLabels) && maps.Equal(a.NamespaceAnnotations, b.NamespaceAnnotations) &&
		maps.Equal(a.NodeLabels, b.NodeLabels) && maps.Equal(a.NodeAnnotations, b.NodeAnnotations) &&
		a.NodeUID == b.NodeUID && a.ClusterUID == b.ClusterUID && reflect.DeepEqual(a.Workloads, b.Workloads)
}
