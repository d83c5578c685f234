package informer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/podstamp/podstamp/informer/kubetypes"
)

// API is what the cache reads from the Kubernetes API server. NewAPI is the
// implementation for a real API server; tests use an in-memory fake.
//
// A refusal of the server is a *StatusError: IsNotFound tells a missing
// object (cached as absent), IsForbidden a denied read, IsGone a resource
// version too old to watch or list from.
type API interface {
	// ListPods lists pods in all namespaces with opts (the cache sets the
	// field selector spec.nodeName=<node>).
	ListPods(ctx context.Context, opts ListOptions) (*kubetypes.PodList, error)
	// WatchPods watches pods in all namespaces with opts.
	WatchPods(ctx context.Context, opts ListOptions) (Watcher, error)
	// GetNode reads a node (labels, annotations, UID, addresses, pod CIDRs).
	GetNode(ctx context.Context, name string) (*kubetypes.Node, error)
	// GetNamespaceMetadata reads the metadata of a namespace (labels,
	// annotations, UID).
	GetNamespaceMetadata(ctx context.Context, name string) (*kubetypes.PartialObjectMetadata, error)
	// GetReplicaSetMetadata reads the metadata of an apps/v1 ReplicaSet (UID
	// and owner references).
	GetReplicaSetMetadata(ctx context.Context, namespace, name string) (*kubetypes.PartialObjectMetadata, error)
	// GetJobMetadata reads the metadata of a batch/v1 Job (UID and owner
	// references).
	GetJobMetadata(ctx context.Context, namespace, name string) (*kubetypes.PartialObjectMetadata, error)
}

// ListOptions are the query parameters of a list or watch of pods.
type ListOptions struct {
	FieldSelector       string
	ResourceVersion     string
	Limit               int64
	Continue            string
	TimeoutSeconds      int64 // 0: the server's default
	AllowWatchBookmarks bool
	// SendInitialEvents asks a watch to start with an ADDED event of every
	// pod it selects, ended by a BOOKMARK annotated InitialEventsEnd (a
	// streaming list, the API server's WatchList feature); it is sent with
	// resourceVersionMatch=NotOlderThan, as the server requires.
	SendInitialEvents bool
}

// InitialEventsEnd is the annotation of the BOOKMARK that ends the initial
// events of a streaming list.
const InitialEventsEnd = "k8s.io/initial-events-end"

func (o ListOptions) query(watch bool) url.Values {
	q := url.Values{}
	if o.FieldSelector != "" {
		q.Set("fieldSelector", o.FieldSelector)
	}
	if o.ResourceVersion != "" {
		q.Set("resourceVersion", o.ResourceVersion)
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.FormatInt(o.Limit, 10))
	}
	if o.Continue != "" {
		q.Set("continue", o.Continue)
	}
	if o.TimeoutSeconds > 0 {
		q.Set("timeoutSeconds", strconv.FormatInt(o.TimeoutSeconds, 10))
	}
	if watch {
		q.Set("watch", "true")
		if o.AllowWatchBookmarks {
			q.Set("allowWatchBookmarks", "true")
		}
		if o.SendInitialEvents {
			q.Set("sendInitialEvents", "true")
			q.Set("resourceVersionMatch", "NotOlderThan")
		}
	}
	return q
}

// Watcher is an open watch. Its channel is closed when the watch ends: the
// server closed it, the connection broke, or Stop was called.
type Watcher interface {
	ResultChan() <-chan Event
	Stop()
}

// Event is one watch event. Pod is set for ADDED, MODIFIED and DELETED, and
// for BOOKMARK (metadata.resourceVersion only); Status for ERROR.
type Event struct {
	Type   string
	Pod    *kubetypes.Pod
	Status *kubetypes.Status
}

// StatusError is the API server's refusal of a request, with the Status it
// sent (or one made from the HTTP status when it sent none).
type StatusError struct {
	Status kubetypes.Status
	// RetryAfter is how long the server asked the client to wait before
	// asking again (Retry-After of a 429 or 5xx answer, at most
	// maxRetryAfter); 0 when it did not say.
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	if e.Status.Message != "" {
		return e.Status.Message
	}
	return fmt.Sprintf("the server answered %d %s", e.Status.Code, e.Status.Reason)
}

// retryAfterOf is the wait the server asked for with err, if any.
func retryAfterOf(err error) time.Duration {
	var se *StatusError
	if errors.As(err, &se) {
		return se.RetryAfter
	}
	return 0
}

func statusOf(err error) (kubetypes.Status, bool) {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status, true
	}
	return kubetypes.Status{}, false
}

// IsNotFound reports whether err is the server's "not found".
func IsNotFound(err error) bool {
	st, ok := statusOf(err)
	return ok && (st.Reason == kubetypes.StatusReasonNotFound || st.Reason == "" && st.Code == http.StatusNotFound)
}

// IsForbidden reports whether err is the server's "forbidden".
func IsForbidden(err error) bool {
	st, ok := statusOf(err)
	return ok && (st.Reason == kubetypes.StatusReasonForbidden || st.Reason == "" && st.Code == http.StatusForbidden)
}

// IsGone reports whether err says a resource version is too old: the
// client must list again.
func IsGone(err error) bool {
	st, ok := statusOf(err)
	return ok && isGoneStatus(st)
}

func isGoneStatus(st kubetypes.Status) bool {
	return st.Reason == kubetypes.StatusReasonExpired || st.Reason == kubetypes.StatusReasonGone || st.Code == http.StatusGone
}

// restAPI is API over HTTP(S) with JSON.
type restAPI struct {
	base      *url.URL
	client    *http.Client
	userAgent string
	limiter   *rate.Limiter
	// sleep waits out a Retry-After; tests shorten it.
	sleep func(ctx context.Context, d time.Duration) error
	// maxList and maxObject are maxListBytes and maxEventBytes.
	maxList, maxObject int64
}

// Media types NewAPI sends and accepts. Pods and nodes are read as JSON.
const (
	mediaJSON = "application/json"
	// acceptPods asks for pods (lists and watches) as Kubernetes protobuf,
	// about two thirds of their JSON size on the wire; a server (or a
	// proxy in front of it) that does not speak it answers JSON.
	acceptPods = kubetypes.ContentTypeProtobuf + ", " + mediaJSON
	// acceptMetadata asks for the object's metadata only; a server that
	// cannot convert answers with the whole object as JSON, whose metadata
	// is read the same way.
	acceptMetadata = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1, application/json"
	// maxRetryAfter bounds the wait a Retry-After answer asks for, and
	// maxRetries how often one request is sent again after such answers
	// (client-go's numbers).
	maxRetryAfter = time.Minute
	maxRetries    = 10
	// Reasons of the ERROR events a Watcher makes up itself when the stream
	// fails: it broke (the connection dropped, or what came was not a watch
	// event), or one event was larger than maxEventBytes.
	reasonStreamBroken  = "StreamError"
	reasonEventTooLarge = "EventTooLarge"
)

// Size caps of what the server sends: one list page, and one object (a GET
// or one watch event). Larger answers are errors, not truncated. NewAPI
// sets them on restAPI; tests lower them there.
const (
	maxListBytes  int64 = 256 << 20
	maxEventBytes int64 = 16 << 20
)

// NewAPI returns the API of the server cfg points to. Pods are read as
// Kubernetes protobuf (or JSON, when the server answers JSON) into the lean
// types of package kubetypes, nodes as JSON, namespaces, ReplicaSets and Jobs as metadata only
// (acceptMetadata; an answer with the whole object is read the same way),
// which needs the same RBAC verbs (a metadata GET is a get). cfg's QPS and
// Burst bound the request rate (a watch counts once, when it starts). What
// it does in place of client-go:
//
//   - A 429 or 5xx answer with Retry-After (seconds or a date) is waited
//     out, at most maxRetryAfter, and the request sent again, up to
//     maxRetries times, for lists, watches and GETs alike. When the
//     request's deadline comes first, the error carries the wait
//     (StatusError.RetryAfter).
//   - A list page larger than maxListBytes, a GET answer or one watch event
//     larger than maxEventBytes is an error saying so, never a truncated
//     read; a watch stream that breaks ends with an ERROR event of reason
//     reasonStreamBroken, which the cache tells from the server's.
//   - Token and client certificate files are read again as RESTConfig says;
//     a new client certificate gets new connections.
func NewAPI(cfg *RESTConfig) (API, error) {
	a, err := newRESTAPI(cfg, "API server")
	if err != nil {
		return nil, err
	}
	return a, nil
}

// newRESTAPI is NewAPI's client for the server cfg points to (what names
// it in errors).
func newRESTAPI(cfg *RESTConfig, what string) (*restAPI, error) {
	if cfg == nil {
		return nil, errors.New("informer: nil REST config")
	}
	base, err := url.Parse(cfg.Host)
	if err != nil || base.Host == "" || (base.Scheme != "https" && base.Scheme != "http") {
		return nil, fmt.Errorf("informer: %s address %q: want https://host[:port]", what, cfg.Host)
	}
	rt, err := cfg.transport()
	if err != nil {
		return nil, fmt.Errorf("informer: %w", err)
	}
	a := &restAPI{base: base, client: &http.Client{Transport: rt}, userAgent: cfg.UserAgent, sleep: sleepCtx,
		maxList: maxListBytes, maxObject: maxEventBytes}
	if a.userAgent == "" {
		a.userAgent = "podstamp"
	}
	if cfg.QPS > 0 {
		a.limiter = rate.NewLimiter(rate.Limit(cfg.QPS), max(cfg.Burst, 1))
	}
	return a, nil
}

// do sends a GET to p (with q) and returns the response of a 2xx answer;
// any other answer is a *StatusError. ctx bounds the whole request. A 429
// or 5xx answer with Retry-After is waited out (at most maxRetryAfter) and
// the request sent again, up to maxRetries times, unless ctx would end
// first: then the error carries the wait (StatusError.RetryAfter) for the
// caller to honour.
func (a *restAPI) do(ctx context.Context, p string, q url.Values, accept string) (*http.Response, error) {
	u := *a.base
	u.Path = path.Join(a.base.Path, p)
	u.RawQuery = q.Encode()
	for attempt := 1; ; attempt++ {
		if a.limiter != nil {
			if err := a.limiter.Wait(ctx); err != nil {
				return nil, err
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", accept)
		req.Header.Set("User-Agent", a.userAgent)
		resp, err := a.client.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode/100 == 2 {
			return resp, nil
		}
		wait, ok := retryAfter(resp)
		if ok && attempt <= maxRetries && fitsIn(ctx, wait) {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			if err := a.sleep(ctx, wait); err != nil {
				return nil, err
			}
			continue
		}
		se := statusError(resp, u.Path)
		if ok {
			se.RetryAfter = wait
		}
		return nil, se
	}
}

// retryAfter is the wait a 429 or 5xx answer asks for with Retry-After
// (seconds or an HTTP date), at most maxRetryAfter.
func retryAfter(resp *http.Response) (time.Duration, bool) {
	if resp.StatusCode != http.StatusTooManyRequests && (resp.StatusCode < 500 || resp.StatusCode > 599) {
		return 0, false
	}
	h := strings.TrimSpace(resp.Header.Get("Retry-After"))
	if h == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(h, 10, 64); err == nil {
		if s < 0 {
			return 0, false
		}
		return time.Duration(min(s, int64(maxRetryAfter/time.Second))) * time.Second, true
	}
	if t, err := http.ParseTime(h); err == nil {
		return min(max(time.Until(t), 0), maxRetryAfter), true
	}
	return 0, false
}

// fitsIn reports whether ctx is still alive after d.
func fitsIn(ctx context.Context, d time.Duration) bool {
	deadline, ok := ctx.Deadline()
	return !ok || time.Until(deadline) > d
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// statusError reads the Status of a refusal and closes its body.
func statusError(resp *http.Response, p string) *StatusError {
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	st := kubetypes.Status{}
	if isProtobuf(resp) {
		if kubetypes.UnmarshalStatusProto(body, &st) != nil {
			st = kubetypes.Status{Status: "Failure", Code: int32(resp.StatusCode)}
		}
	} else if json.Unmarshal(body, &st) != nil || st.Kind != "Status" {
		st = kubetypes.Status{Status: "Failure", Code: int32(resp.StatusCode), Message: strings.TrimSpace(string(body))}
	}
	if st.Code == 0 {
		st.Code = int32(resp.StatusCode)
	}
	if st.Reason == "" {
		switch resp.StatusCode {
		case http.StatusNotFound:
			st.Reason = kubetypes.StatusReasonNotFound
		case http.StatusForbidden:
			st.Reason = kubetypes.StatusReasonForbidden
		case http.StatusGone:
			st.Reason = kubetypes.StatusReasonGone
		}
	}
	if st.Message == "" {
		st.Message = fmt.Sprintf("GET %s: %s", p, resp.Status)
	}
	return &StatusError{Status: st}
}

// tooLargeError is an answer larger than its cap.
type tooLargeError struct {
	what  string
	limit int64
}

func (e *tooLargeError) Error() string {
	if e.limit >= 1<<20 {
		return fmt.Sprintf("%s is larger than %d MiB; refusing to read it", e.what, e.limit>>20)
	}
	return fmt.Sprintf("%s is larger than %d bytes; refusing to read it", e.what, e.limit)
}

// capReader reads r up to limit bytes (in all), then fails with a
// *tooLargeError naming the cap (size) instead of pretending the input
// ended, which would surface as a misleading decode error.
type capReader struct {
	r           io.Reader
	n           int64
	limit, size int64
	what        string
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n >= c.limit {
		return 0, &tooLargeError{what: c.what, limit: c.size}
	}
	if rem := c.limit - c.n; int64(len(p)) > rem {
		p = p[:rem]
	}
	k, err := c.r.Read(p)
	c.n += int64(k)
	return k, err
}

// getJSON GETs p and decodes the answer, at most limit bytes, into v.
func (a *restAPI) getJSON(ctx context.Context, p string, q url.Values, accept string, v any, limit int64) error {
	resp, err := a.do(ctx, p, q, accept)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(&capReader{r: resp.Body, limit: limit, size: limit, what: "the answer to GET " + p}).Decode(v); err != nil {
		var tl *tooLargeError
		if errors.As(err, &tl) {
			return err
		}
		return fmt.Errorf("decoding %s: %w", p, err)
	}
	return nil
}

func (a *restAPI) ListPods(ctx context.Context, opts ListOptions) (*kubetypes.PodList, error) {
	if opts.TimeoutSeconds > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(opts.TimeoutSeconds)*time.Second)
		defer cancel()
	}
	const p = "/api/v1/pods"
	resp, err := a.do(ctx, p, opts.query(false), acceptPods)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	l := &kubetypes.PodList{}
	cr := &capReader{r: resp.Body, limit: a.maxList, size: a.maxList, what: "the answer to GET " + p}
	if !isProtobuf(resp) {
		if err := json.NewDecoder(cr).Decode(l); err != nil {
			return nil, decodeError(p, err)
		}
		return l, nil
	}
	body, err := io.ReadAll(cr)
	if err != nil {
		return nil, decodeError(p, err)
	}
	if err := kubetypes.UnmarshalPodListProto(body, l); err != nil {
		return nil, decodeError(p, err)
	}
	return l, nil
}

// isProtobuf reports whether resp is in Kubernetes protobuf.
func isProtobuf(resp *http.Response) bool {
	return strings.HasPrefix(resp.Header.Get("Content-Type"), kubetypes.ContentTypeProtobuf)
}

// decodeError is an answer to p that could not be read: a *tooLargeError
// as it is, anything else saying what was read.
func decodeError(p string, err error) error {
	var tl *tooLargeError
	if errors.As(err, &tl) {
		return err
	}
	return fmt.Errorf("decoding %s: %w", p, err)
}

func (a *restAPI) WatchPods(ctx context.Context, opts ListOptions) (Watcher, error) {
	ctx, cancel := context.WithCancel(ctx)
	resp, err := a.do(ctx, "/api/v1/pods", opts.query(true), acceptPods)
	if err != nil {
		cancel()
		return nil, err
	}
	w := &streamWatch{body: resp.Body, cancel: cancel, out: make(chan Event), stop: make(chan struct{}), maxEvent: a.maxObject}
	if isProtobuf(resp) {
		go w.loopProto()
	} else {
		go w.loop()
	}
	return w, nil
}

func (a *restAPI) GetNode(ctx context.Context, name string) (*kubetypes.Node, error) {
	if name == "" {
		return nil, errors.New("informer: node name is required")
	}
	n := &kubetypes.Node{}
	if err := a.getJSON(ctx, "/api/v1/nodes/"+url.PathEscape(name), nil, mediaJSON, n, a.maxObject); err != nil {
		return nil, err
	}
	return n, nil
}

func (a *restAPI) GetNamespaceMetadata(ctx context.Context, name string) (*kubetypes.PartialObjectMetadata, error) {
	return a.getMetadata(ctx, "/api/v1", "", "namespaces", name)
}

func (a *restAPI) GetReplicaSetMetadata(ctx context.Context, namespace, name string) (*kubetypes.PartialObjectMetadata, error) {
	return a.getMetadata(ctx, "/apis/apps/v1", namespace, "replicasets", name)
}

func (a *restAPI) GetJobMetadata(ctx context.Context, namespace, name string) (*kubetypes.PartialObjectMetadata, error) {
	return a.getMetadata(ctx, "/apis/batch/v1", namespace, "jobs", name)
}

// getMetadata GETs <prefix>/[namespaces/<ns>/]<resource>/<name> as
// PartialObjectMetadata; a server that answers with the whole object is
// read the same way, as both carry the object's metadata.
func (a *restAPI) getMetadata(ctx context.Context, prefix, ns, resource, name string) (*kubetypes.PartialObjectMetadata, error) {
	if name == "" {
		return nil, fmt.Errorf("informer: %s name is required", resource)
	}
	p := prefix
	if ns != "" {
		p += "/namespaces/" + url.PathEscape(ns)
	}
	p += "/" + resource + "/" + url.PathEscape(name)
	m := &kubetypes.PartialObjectMetadata{}
	if err := a.getJSON(ctx, p, nil, acceptMetadata, m, a.maxObject); err != nil {
		return nil, err
	}
	if m.UID == "" && m.Name == "" {
		return nil, fmt.Errorf("decoding %s %s: no object metadata in the answer", resource, name)
	}
	return m, nil
}

// streamWatch reads a watch stream: one JSON WatchEvent after another, or
// one length-prefixed protobuf WatchEvent after another.
type streamWatch struct {
	body     io.ReadCloser
	maxEvent int64
	cancel   context.CancelFunc
	out      chan Event
	stop     chan struct{}
	once     sync.Once
}

func (w *streamWatch) ResultChan() <-chan Event { return w.out }

func (w *streamWatch) Stop() {
	w.once.Do(func() {
		close(w.stop)
		w.cancel()
	})
}

// loop decodes the stream. A stream that breaks (the connection drops, or
// what comes is not a watch event) ends with an ERROR event of reason
// reasonStreamBroken, one event larger than maxEventBytes with
// reasonEventTooLarge; the end of the stream (the server closed it) just
// closes the channel.
func (w *streamWatch) loop() {
	defer close(w.out)
	defer w.body.Close()
	defer w.cancel()
	cr := &capReader{r: w.body, size: w.maxEvent, what: "a watch event"}
	dec := json.NewDecoder(cr)
	fail := func(reason, msg string) {
		w.send(Event{Type: kubetypes.Error, Status: &kubetypes.Status{Status: "Failure", Reason: reason, Message: msg}})
	}
	for {
		// The cap counts from the end of the last event.
		cr.limit = dec.InputOffset() + w.maxEvent
		var raw kubetypes.WatchEvent
		if err := dec.Decode(&raw); err != nil {
			var tl *tooLargeError
			switch {
			case errors.As(err, &tl):
				fail(reasonEventTooLarge, "watch stream: "+err.Error())
			case errors.Is(err, io.EOF):
			case w.stopped():
			default:
				fail(reasonStreamBroken, "watch stream: "+err.Error())
			}
			return
		}
		ev := Event{Type: raw.Type}
		switch raw.Type {
		case kubetypes.Added, kubetypes.Modified, kubetypes.Deleted, kubetypes.Bookmark:
			p := &kubetypes.Pod{}
			if err := json.Unmarshal(raw.Object, p); err != nil {
				fail(reasonStreamBroken, "decoding a watch event: "+err.Error())
				return
			}
			ev.Pod = p
		case kubetypes.Error:
			st := &kubetypes.Status{}
			if err := json.Unmarshal(raw.Object, st); err != nil {
				st = &kubetypes.Status{Status: "Failure", Message: string(raw.Object)}
			}
			ev.Status = st
		default:
			continue // an event type this client does not know
		}
		if !w.send(ev) {
			return
		}
	}
}

// loopProto is loop for a protobuf stream: each event is a frame, a
// 4-byte length and a WatchEvent whose object is a Pod or a Status.
func (w *streamWatch) loopProto() {
	defer close(w.out)
	defer w.body.Close()
	defer w.cancel()
	fail := func(reason, msg string) {
		w.send(Event{Type: kubetypes.Error, Status: &kubetypes.Status{Status: "Failure", Reason: reason, Message: msg}})
	}
	var buf []byte
	for {
		frame, err := kubetypes.ReadFrame(w.body, buf, int(w.maxEvent))
		if err != nil {
			switch {
			case errors.Is(err, kubetypes.ErrFrameTooLarge):
				fail(reasonEventTooLarge, "watch stream: "+(&tooLargeError{what: "a watch event", limit: w.maxEvent}).Error()+" ("+err.Error()+")")
			case errors.Is(err, io.EOF):
			case w.stopped():
			default:
				fail(reasonStreamBroken, "watch stream: "+err.Error())
			}
			return
		}
		buf = frame
		typ, obj, err := kubetypes.UnmarshalWatchEventProto(frame)
		if err != nil {
			fail(reasonStreamBroken, "decoding a watch event: "+err.Error())
			return
		}
		ev := Event{Type: typ}
		switch typ {
		case kubetypes.Added, kubetypes.Modified, kubetypes.Deleted, kubetypes.Bookmark:
			p := &kubetypes.Pod{}
			if err := kubetypes.UnmarshalPodProto(obj, p); err != nil {
				fail(reasonStreamBroken, "decoding a watch event: "+err.Error())
				return
			}
			ev.Pod = p
		case kubetypes.Error:
			st := &kubetypes.Status{}
			if err := kubetypes.UnmarshalStatusProto(obj, st); err != nil {
				st = &kubetypes.Status{Status: "Failure", Message: "an ERROR event the client could not decode: " + err.Error()}
			}
			ev.Status = st
		default:
			continue // an event type this client does not know
		}
		if !w.send(ev) {
			return
		}
	}
}

func (w *streamWatch) stopped() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}

func (w *streamWatch) send(ev Event) bool {
	select {
	case w.out <- ev:
		return true
	case <-w.stop:
		return false
	}
}
