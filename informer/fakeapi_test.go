package informer

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/podstamp/podstamp/informer/kubetypes"
)

// FakeAPI is an in-memory API server behind the API interface, for the
// tests of the cache: it keeps pods, nodes and the metadata of namespaces,
// ReplicaSets and Jobs, and answers as a real server does where the cache
// can tell:
//
//   - every change of a pod gets the next resource version; lists answer
//     the latest state with it, in pages (limit and continue) in
//     namespace/name order;
//   - a watch from resource version N replays the changes after N, then
//     follows; from "" or "0" it starts with a synthetic ADDED of every pod.
//     A streaming list (sendInitialEvents, with bookmarks allowed) starts
//     with an ADDED of every pod and a BOOKMARK annotated InitialEventsEnd
//     at the current version, as Kubernetes 1.34 does; after
//     RefuseStreamingLists it is answered 422, as a server with the
//     WatchList feature off does.
//     A version older than the last Compact is answered with an ERROR event
//     of 410 Expired, as the server does once etcd compacted it;
//   - the field selector spec.nodeName=<node> filters lists and watches; a
//     pod that leaves the selection is a DELETED event, one that enters an
//     ADDED. Any other selector is refused (400), not ignored;
//   - Bookmark sends a BOOKMARK with the current version to the watches that
//     allowed them; EndWatches closes the open watches (the server's
//     timeout), BreakWatches breaks them as a dropped connection does with
//     NewAPI (an ERROR event of reason StreamError);
//   - a missing object is a 404 NotFound *StatusError, a pod created twice a
//     409 AlreadyExists.
//
// Prepend puts a reactor in front of a kind of call, for the errors a test
// needs (Forbidden, 429 with Retry-After, a failed dial) or a watch the test
// drives itself. Objects are copied in and out: nothing the cache keeps is
// shared with the test.
type FakeAPI struct {
	mu        sync.Mutex
	rv        uint64
	compacted uint64 // versions up to this one are no longer watchable
	pods      map[string]*kubetypes.Pod
	nodes     map[string]*kubetypes.Node
	meta      map[string]*kubetypes.PartialObjectMetadata // resource/namespace/name
	changes   []podChange
	watches   map[*fakeWatch]struct{}
	reactors  []fakeReactor
	noStream  bool // streaming lists refused (422)
	calls     []fakeCall
	notify    chan struct{} // closed and replaced when calls or watches change
}

var _ API = (*FakeAPI)(nil)

// podChange is one change of a pod: old is nil for a creation, new for a
// deletion.
type podChange struct {
	rv       uint64
	old, new *kubetypes.Pod
}

// fakeCall is one call the fake received.
type fakeCall struct {
	Verb      string // list, watch or get
	Resource  string // pods, nodes, namespaces, replicasets or jobs
	Namespace string
	Name      string
	Opts      ListOptions
}

// A reactor answers a call in place of the fake when it says so (handled).
// obj is what the call returns: *kubetypes.PodList, a Watcher,
// *kubetypes.Node or *kubetypes.PartialObjectMetadata.
type reactor func(fakeCall) (handled bool, obj any, err error)

type fakeReactor struct {
	verb, resource string
	fn             reactor
}

// fakeMeta is an object the fake serves as metadata only.
type fakeMeta struct {
	resource string
	meta     kubetypes.ObjectMeta
}

func namespaceObj(m kubetypes.ObjectMeta) fakeMeta  { return fakeMeta{"namespaces", m} }
func replicaSetObj(m kubetypes.ObjectMeta) fakeMeta { return fakeMeta{"replicasets", m} }
func jobObj(m kubetypes.ObjectMeta) fakeMeta        { return fakeMeta{"jobs", m} }

// NewFakeAPI returns a fake holding objs: *kubetypes.Pod, *kubetypes.Node
// or the fakeMeta of a namespace, ReplicaSet or Job.
func NewFakeAPI(objs ...any) *FakeAPI {
	f := &FakeAPI{rv: 1, pods: map[string]*kubetypes.Pod{}, nodes: map[string]*kubetypes.Node{},
		meta: map[string]*kubetypes.PartialObjectMetadata{}, watches: map[*fakeWatch]struct{}{}, notify: make(chan struct{})}
	for _, o := range objs {
		switch o := o.(type) {
		case *kubetypes.Pod:
			if err := f.CreatePod(o); err != nil {
				panic(err)
			}
		case *kubetypes.Node:
			f.PutNode(o)
		case fakeMeta:
			f.PutMeta(o)
		default:
			panic(fmt.Sprintf("FakeAPI: cannot hold a %T", o))
		}
	}
	return f
}

func podKey(ns, name string) string { return ns + "/" + name }

func apiError(code int32, reason, msg string) *StatusError {
	return &StatusError{Status: kubetypes.Status{Status: "Failure", Code: code, Reason: reason, Message: msg}}
}

func notFoundErr(resource, name string) error {
	return apiError(http.StatusNotFound, kubetypes.StatusReasonNotFound, fmt.Sprintf("%s %q not found", resource, name))
}

func forbiddenErr(resource, name string) error {
	return apiError(http.StatusForbidden, kubetypes.StatusReasonForbidden,
		fmt.Sprintf("%s %q is forbidden: User \"podstamp\" cannot get resource %q", resource, name, resource))
}

// CreatePod stores a new pod.
func (f *FakeAPI) CreatePod(p *kubetypes.Pod) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := podKey(p.Namespace, p.Name)
	if f.pods[k] != nil {
		return apiError(http.StatusConflict, "AlreadyExists", fmt.Sprintf("pods %q already exists", p.Name))
	}
	f.changeLocked(nil, clonePod(p))
	return nil
}

// UpdatePod replaces a stored pod.
func (f *FakeAPI) UpdatePod(p *kubetypes.Pod) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.pods[podKey(p.Namespace, p.Name)]
	if old == nil {
		return notFoundErr("pods", p.Name)
	}
	f.changeLocked(old, clonePod(p))
	return nil
}

// DeletePod deletes a stored pod.
func (f *FakeAPI) DeletePod(ns, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.pods[podKey(ns, name)]
	if old == nil {
		return notFoundErr("pods", name)
	}
	f.changeLocked(old, nil)
	return nil
}

// changeLocked applies one change under the next resource version and tells
// the open watches.
func (f *FakeAPI) changeLocked(old, new *kubetypes.Pod) {
	f.rv++
	rv := strconv.FormatUint(f.rv, 10)
	if new != nil {
		new.ResourceVersion = rv
		f.pods[podKey(new.Namespace, new.Name)] = new
	} else {
		del := clonePod(old)
		del.ResourceVersion = rv
		delete(f.pods, podKey(old.Namespace, old.Name))
		old = del
	}
	ch := podChange{rv: f.rv, old: old, new: new}
	f.changes = append(f.changes, ch)
	for w := range f.watches {
		if ev, ok := ch.eventFor(w.node); ok {
			w.push(ev)
		}
	}
}

// eventFor is the watch event of the change for a watch of node's pods
// ("": all pods), if any.
func (c podChange) eventFor(node string) (Event, bool) {
	in := func(p *kubetypes.Pod) bool { return p != nil && (node == "" || p.Spec.NodeName == node) }
	was, is := in(c.old), in(c.new)
	switch {
	case !was && is:
		return Event{Type: kubetypes.Added, Pod: clonePod(c.new)}, true
	case was && is:
		return Event{Type: kubetypes.Modified, Pod: clonePod(c.new)}, true
	case was:
		gone := c.new
		if gone == nil {
			gone = c.old // deleted: the last state, at the deletion's version
		}
		return Event{Type: kubetypes.Deleted, Pod: clonePod(gone)}, true
	}
	return Event{}, false
}

// PutNode stores a node.
func (f *FakeAPI) PutNode(n *kubetypes.Node) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodes[n.Name] = cloneNode(n)
}

// PutMeta stores a namespace, ReplicaSet or Job.
func (f *FakeAPI) PutMeta(m fakeMeta) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.meta[m.resource+"/"+m.meta.Namespace+"/"+m.meta.Name] = &kubetypes.PartialObjectMetadata{
		TypeMeta: kubetypes.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: "meta.k8s.io/v1"}, ObjectMeta: cloneMeta(m.meta)}
}

// Prepend makes fn answer the calls of verb on resource before the fake and
// every reactor prepended earlier.
func (f *FakeAPI) Prepend(verb, resource string, fn reactor) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reactors = append([]fakeReactor{{verb, resource, fn}}, f.reactors...)
}

// Calls returns the calls of verb on resource received so far.
func (f *FakeAPI) Calls(verb, resource string) []fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeCall
	for _, c := range f.calls {
		if c.Verb == verb && c.Resource == resource {
			out = append(out, c)
		}
	}
	return out
}

// RefuseStreamingLists makes the fake answer a streaming list 422, as a
// server with the WatchList feature off does.
func (f *FakeAPI) RefuseStreamingLists() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.noStream = true
}

// Compact forgets the changes made so far: a watch or a continued list from
// an older version is answered 410 Expired.
func (f *FakeAPI) Compact() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.compacted = f.rv
	f.changes = nil
}

// Bookmark sends every open watch that allowed bookmarks the current
// resource version.
func (f *FakeAPI) Bookmark() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for w := range f.watches {
		if w.bookmarks {
			w.push(Event{Type: kubetypes.Bookmark, Pod: &kubetypes.Pod{ObjectMeta: kubetypes.ObjectMeta{ResourceVersion: strconv.FormatUint(f.rv, 10)}}})
		}
	}
}

// EndWatches ends the open watches as the server does at their timeout.
func (f *FakeAPI) EndWatches() { f.endWatches(nil) }

// BreakWatches breaks the open watches as a dropped connection does.
func (f *FakeAPI) BreakWatches() {
	f.endWatches(&kubetypes.Status{Status: "Failure", Reason: reasonStreamBroken, Message: "watch stream: connection reset by peer"})
}

func (f *FakeAPI) endWatches(st *kubetypes.Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for w := range f.watches {
		if st != nil {
			w.push(Event{Type: kubetypes.Error, Status: st})
		}
		w.end()
		delete(f.watches, w)
	}
	f.signalLocked()
}

// signalLocked wakes waitFor.
func (f *FakeAPI) signalLocked() {
	close(f.notify)
	f.notify = make(chan struct{})
}

// waitFor waits until cond, which is checked whenever a call arrives or a
// watch opens or ends, holds; false after timeout.
func (f *FakeAPI) waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.After(timeout)
	for {
		f.mu.Lock()
		next := f.notify
		f.mu.Unlock()
		if cond() {
			return true
		}
		select {
		case <-next:
		case <-deadline:
			return false
		}
	}
}

// rvNow is the current resource version.
func (f *FakeAPI) rvNow() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strconv.FormatUint(f.rv, 10)
}

// OpenWatches is the number of watches open now.
func (f *FakeAPI) OpenWatches() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.watches)
}

// react records c and returns the answer of the first reactor that handles
// it.
func (f *FakeAPI) react(c fakeCall) (bool, any, error) {
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.signalLocked()
	rs := slices.Clone(f.reactors)
	f.mu.Unlock()
	for _, r := range rs {
		if r.verb == c.Verb && r.resource == c.Resource {
			if handled, obj, err := r.fn(c); handled {
				return true, obj, err
			}
		}
	}
	return false, nil, nil
}

// nodeSelector reads the only field selector the fake (and the cache)
// knows.
func nodeSelector(sel string) (string, error) {
	if sel == "" {
		return "", nil
	}
	if node, ok := strings.CutPrefix(sel, "spec.nodeName=="); ok {
		return node, nil
	}
	if node, ok := strings.CutPrefix(sel, "spec.nodeName="); ok && !strings.ContainsAny(node, ",=!") {
		return node, nil
	}
	return "", apiError(http.StatusBadRequest, "BadRequest", fmt.Sprintf("field selector %q: only spec.nodeName=<node> is supported", sel))
}

func parseRV(rv string) (uint64, error) {
	n, err := strconv.ParseUint(rv, 10, 64)
	if err != nil {
		return 0, apiError(http.StatusBadRequest, "BadRequest", fmt.Sprintf("invalid resource version %q", rv))
	}
	return n, nil
}

func expiredErr(rv uint64) *StatusError {
	return apiError(http.StatusGone, kubetypes.StatusReasonExpired, fmt.Sprintf("too old resource version: %d", rv))
}

// ListPods implements API.
func (f *FakeAPI) ListPods(ctx context.Context, opts ListOptions) (*kubetypes.PodList, error) {
	if handled, obj, err := f.react(fakeCall{Verb: "list", Resource: "pods", Opts: opts}); handled {
		l, _ := obj.(*kubetypes.PodList)
		return l, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	node, err := nodeSelector(opts.FieldSelector)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	after := ""
	if opts.Continue != "" {
		rvs, key, ok := strings.Cut(opts.Continue, "/")
		rv, err := strconv.ParseUint(rvs, 10, 64)
		if !ok || err != nil {
			return nil, apiError(http.StatusBadRequest, "BadRequest", fmt.Sprintf("invalid continue token %q", opts.Continue))
		}
		if rv < f.compacted {
			return nil, expiredErr(rv)
		}
		after = key
	} else if opts.ResourceVersion != "" {
		rv, err := parseRV(opts.ResourceVersion)
		if err != nil {
			return nil, err
		}
		if rv > f.rv {
			return nil, apiError(http.StatusGatewayTimeout, "Timeout", fmt.Sprintf("Too large resource version: %d, current: %d", rv, f.rv))
		}
	}
	keys := slices.Sorted(maps.Keys(f.pods))
	l := &kubetypes.PodList{TypeMeta: kubetypes.TypeMeta{Kind: "PodList", APIVersion: "v1"},
		ListMeta: kubetypes.ListMeta{ResourceVersion: strconv.FormatUint(f.rv, 10)}, Items: []kubetypes.Pod{}}
	for _, k := range keys {
		p := f.pods[k]
		if k <= after || node != "" && p.Spec.NodeName != node {
			continue
		}
		if opts.Limit > 0 && int64(len(l.Items)) == opts.Limit {
			l.Continue = strconv.FormatUint(f.rv, 10) + "/" + podKey(l.Items[len(l.Items)-1].Namespace, l.Items[len(l.Items)-1].Name)
			break
		}
		l.Items = append(l.Items, *clonePod(p))
	}
	return l, nil
}

// WatchPods implements API.
func (f *FakeAPI) WatchPods(ctx context.Context, opts ListOptions) (Watcher, error) {
	if handled, obj, err := f.react(fakeCall{Verb: "watch", Resource: "pods", Opts: opts}); handled {
		w, _ := obj.(Watcher)
		return w, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	node, err := nodeSelector(opts.FieldSelector)
	if err != nil {
		return nil, err
	}
	var from uint64
	if opts.ResourceVersion != "" && opts.ResourceVersion != "0" {
		if from, err = parseRV(opts.ResourceVersion); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if opts.SendInitialEvents && (f.noStream || !opts.AllowWatchBookmarks) {
		return nil, apiError(http.StatusUnprocessableEntity, "Invalid",
			`ListOptions.meta.k8s.io "" is invalid: sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled`)
	}
	w := newFakeWatch(node, opts.AllowWatchBookmarks)
	switch {
	case opts.SendInitialEvents:
		for _, k := range slices.Sorted(maps.Keys(f.pods)) {
			if p := f.pods[k]; node == "" || p.Spec.NodeName == node {
				w.push(Event{Type: kubetypes.Added, Pod: clonePod(p)})
			}
		}
		w.push(Event{Type: kubetypes.Bookmark, Pod: &kubetypes.Pod{ObjectMeta: kubetypes.ObjectMeta{
			ResourceVersion: strconv.FormatUint(f.rv, 10), Annotations: map[string]string{InitialEventsEnd: "true"}}}})
	case opts.ResourceVersion == "" || opts.ResourceVersion == "0":
		for _, k := range slices.Sorted(maps.Keys(f.pods)) {
			if p := f.pods[k]; node == "" || p.Spec.NodeName == node {
				w.push(Event{Type: kubetypes.Added, Pod: clonePod(p)})
			}
		}
	case from < f.compacted:
		st := expiredErr(from).Status
		w.push(Event{Type: kubetypes.Error, Status: &st})
		w.end()
		go w.pump()
		return w, nil
	default:
		for _, ch := range f.changes {
			if ch.rv <= from {
				continue
			}
			if ev, ok := ch.eventFor(node); ok {
				w.push(ev)
			}
		}
	}
	f.watches[w] = struct{}{}
	f.signalLocked()
	w.forget = func() {
		f.mu.Lock()
		delete(f.watches, w)
		f.signalLocked()
		f.mu.Unlock()
	}
	stopOnCtx := context.AfterFunc(ctx, w.Stop)
	var timeout *time.Timer
	if opts.TimeoutSeconds > 0 {
		timeout = time.AfterFunc(time.Duration(opts.TimeoutSeconds)*time.Second, func() {
			f.mu.Lock()
			delete(f.watches, w)
			f.signalLocked()
			f.mu.Unlock()
			w.end()
		})
	}
	w.release = func() {
		stopOnCtx()
		if timeout != nil {
			timeout.Stop()
		}
	}
	go w.pump()
	return w, nil
}

func (f *FakeAPI) get(c fakeCall) (any, error) {
	if handled, obj, err := f.react(c); handled {
		return obj, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c.Resource == "nodes" {
		if n := f.nodes[c.Name]; n != nil {
			return cloneNode(n), nil
		}
		return nil, notFoundErr(c.Resource, c.Name)
	}
	if m := f.meta[c.Resource+"/"+c.Namespace+"/"+c.Name]; m != nil {
		return &kubetypes.PartialObjectMetadata{TypeMeta: m.TypeMeta, ObjectMeta: cloneMeta(m.ObjectMeta)}, nil
	}
	return nil, notFoundErr(c.Resource, c.Name)
}

// GetNode implements API.
func (f *FakeAPI) GetNode(_ context.Context, name string) (*kubetypes.Node, error) {
	obj, err := f.get(fakeCall{Verb: "get", Resource: "nodes", Name: name})
	n, _ := obj.(*kubetypes.Node)
	return n, err
}

func (f *FakeAPI) getMeta(resource, ns, name string) (*kubetypes.PartialObjectMetadata, error) {
	obj, err := f.get(fakeCall{Verb: "get", Resource: resource, Namespace: ns, Name: name})
	m, _ := obj.(*kubetypes.PartialObjectMetadata)
	return m, err
}

// GetNamespaceMetadata implements API.
func (f *FakeAPI) GetNamespaceMetadata(_ context.Context, name string) (*kubetypes.PartialObjectMetadata, error) {
	return f.getMeta("namespaces", "", name)
}

// GetReplicaSetMetadata implements API.
func (f *FakeAPI) GetReplicaSetMetadata(_ context.Context, ns, name string) (*kubetypes.PartialObjectMetadata, error) {
	return f.getMeta("replicasets", ns, name)
}

// GetJobMetadata implements API.
func (f *FakeAPI) GetJobMetadata(_ context.Context, ns, name string) (*kubetypes.PartialObjectMetadata, error) {
	return f.getMeta("jobs", ns, name)
}

// fakeWatch is a watch of the fake. The server never waits for its reader:
// events queue until read, as in a stream's buffers.
type fakeWatch struct {
	node      string
	bookmarks bool

	mu      sync.Mutex
	queue   []Event
	ending  bool // the server ended it: close once the queue is read
	kick    chan struct{}
	stop    chan struct{}
	once    sync.Once
	out     chan Event
	forget  func() // removes it from the fake's open watches
	release func() // stops its timeout and context watch
}

func newFakeWatch(node string, bookmarks bool) *fakeWatch {
	return &fakeWatch{node: node, bookmarks: bookmarks, kick: make(chan struct{}, 1), stop: make(chan struct{}), out: make(chan Event)}
}

func (w *fakeWatch) push(ev Event) {
	w.mu.Lock()
	w.queue = append(w.queue, ev)
	w.mu.Unlock()
	w.poke()
}

func (w *fakeWatch) end() {
	w.mu.Lock()
	w.ending = true
	w.mu.Unlock()
	w.poke()
}

func (w *fakeWatch) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *fakeWatch) pump() {
	defer close(w.out)
	defer func() {
		if w.release != nil {
			w.release()
		}
	}()
	for {
		w.mu.Lock()
		var ev Event
		have := len(w.queue) > 0
		if have {
			ev = w.queue[0]
			w.queue = w.queue[1:]
		}
		ending := w.ending
		w.mu.Unlock()
		switch {
		case have:
			select {
			case w.out <- ev:
			case <-w.stop:
				return
			}
		case ending:
			return
		default:
			select {
			case <-w.kick:
			case <-w.stop:
				return
			}
		}
	}
}

func (w *fakeWatch) ResultChan() <-chan Event { return w.out }

func (w *fakeWatch) Stop() {
	w.once.Do(func() {
		close(w.stop)
		if w.forget != nil {
			w.forget()
		}
	})
}

// clonePod copies p deeply.
func clonePod(p *kubetypes.Pod) *kubetypes.Pod {
	if p == nil {
		return nil
	}
	c := *p
	c.ObjectMeta = cloneMeta(p.ObjectMeta)
	c.Spec.InitContainers = slices.Clone(p.Spec.InitContainers)
	c.Spec.Containers = slices.Clone(p.Spec.Containers)
	c.Status.PodIPs = slices.Clone(p.Status.PodIPs)
	if p.Status.StartTime != nil {
		t := *p.Status.StartTime
		c.Status.StartTime = &t
	}
	c.Status.InitContainerStatuses = cloneStatuses(p.Status.InitContainerStatuses)
	c.Status.ContainerStatuses = cloneStatuses(p.Status.ContainerStatuses)
	return &c
}

func cloneNode(n *kubetypes.Node) *kubetypes.Node {
	c := *n
	c.ObjectMeta = cloneMeta(n.ObjectMeta)
	c.Spec.PodCIDRs = slices.Clone(n.Spec.PodCIDRs)
	c.Status.Addresses = slices.Clone(n.Status.Addresses)
	return &c
}

func cloneStatuses(ss []kubetypes.ContainerStatus) []kubetypes.ContainerStatus {
	out := slices.Clone(ss)
	for i := range out {
		if t := out[i].LastTerminationState.Terminated; t != nil {
			c := *t
			out[i].LastTerminationState.Terminated = &c
		}
	}
	return out
}

func cloneMeta(m kubetypes.ObjectMeta) kubetypes.ObjectMeta {
	c := m
	if m.DeletionTimestamp != nil {
		t := *m.DeletionTimestamp
		c.DeletionTimestamp = &t
	}
	c.Labels = maps.Clone(m.Labels)
	c.Annotations = maps.Clone(m.Annotations)
	c.OwnerReferences = slices.Clone(m.OwnerReferences)
	for i, r := range c.OwnerReferences {
		if r.Controller != nil {
			b := *r.Controller
			c.OwnerReferences[i].Controller = &b
		}
	}
	return c
}
