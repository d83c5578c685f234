package informer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podstamp/podstamp/informer/kubetypes"
)

// scriptServer is an API server on 127.0.0.1 that answers each request with
// the next handler queued for its kind (list, watch or get), or with the
// kind's fallback once the queue is empty, and records every request as
// "<kind> rv=<resourceVersion>".
type scriptServer struct {
	t        *testing.T
	mu       sync.Mutex
	queue    map[string][]http.HandlerFunc
	fallback map[string]http.HandlerFunc
	reqs     []string
	arrived  chan string
}

func newScriptServer(t *testing.T) (*scriptServer, *httptest.Server) {
	s := &scriptServer{t: t, queue: map[string][]http.HandlerFunc{}, arrived: make(chan string, 64),
		fallback: map[string]http.HandlerFunc{
			// A watch nobody scripted stays open and quiet.
			"watch": func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusOK)
				w.(http.Flusher).Flush()
				<-r.Context().Done()
			},
			"list": func(w http.ResponseWriter, r *http.Request) {
				writeStatus(w, http.StatusInternalServerError, "InternalError", "no list scripted")
			},
			"get": func(w http.ResponseWriter, r *http.Request) {
				writeStatus(w, http.StatusNotFound, "NotFound", "not found")
			},
		}}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts
}

func (s *scriptServer) add(kind string, h ...http.HandlerFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue[kind] = append(s.queue[kind], h...)
}

func (s *scriptServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.reqs...)
}

func (s *scriptServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("sendInitialEvents") == "true" {
		// As a server with the WatchList feature off: these scripts are of
		// the LIST and WATCH path.
		writeStatus(w, http.StatusUnprocessableEntity, "Invalid", "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled")
		return
	}
	kind := "get"
	if r.URL.Path == "/api/v1/pods" {
		kind = "list"
		if r.URL.Query().Get("watch") == "true" {
			kind = "watch"
		}
	}
	s.mu.Lock()
	h := s.fallback[kind]
	if q := s.queue[kind]; len(q) > 0 {
		h, s.queue[kind] = q[0], q[1:]
	}
	rec := kind + " rv=" + r.URL.Query().Get("resourceVersion")
	if kind == "get" {
		rec = "get " + r.URL.Path
	}
	s.reqs = append(s.reqs, rec)
	s.mu.Unlock()
	select {
	case s.arrived <- rec:
	default:
	}
	h(w, r)
}

func writeStatus(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":%q,"message":%q,"code":%d}`, reason, msg, code)
}

// podJSON is a running pod of this node as the API server sends it, with
// an annotation of pad bytes.
func podJSON(name, rv, ip string, pad int) string {
	return fmt.Sprintf(`{"metadata":{"name":%q,"namespace":"default","uid":"uid-%s","resourceVersion":%q,"annotations":{"pad":%q}},`+
		`"spec":{"nodeName":%q},"status":{"phase":"Running","podIP":%q,"podIPs":[{"ip":%q}]}}`,
		name, name, rv, strings.Repeat("x", pad), testNode, ip, ip)
}

func listOf(rv string, pods ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":%q},"items":[%s]}`, rv, strings.Join(pods, ","))
	}
}

// watchThen streams events (raw lines), then ends as end says: "close"
// (the server ends the watch), "abort" (the connection drops) or "hang"
// (stays open).
func watchThen(end string, events ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		for _, e := range events {
			_, _ = io.WriteString(w, e+"\n")
		}
		w.(http.Flusher).Flush()
		switch end {
		case "abort":
			panic(http.ErrAbortHandler)
		case "hang":
			<-r.Context().Done()
		}
	}
}

func watchEvent(typ, obj string) string { return fmt.Sprintf(`{"type":%q,"object":%s}`, typ, obj) }

// runOn runs a Cache on NewAPI against ts (changed by tweaks), with a short
// backoff, and reports the events it applies.
func runOn(t *testing.T, ts *httptest.Server, tweaks ...func(*restAPI)) (*Cache, chan string, *syncBuffer) {
	t.Helper()
	api, err := NewAPI(&RESTConfig{Host: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	for _, tw := range tweaks {
		tw(api.(*restAPI))
	}
	logs := &syncBuffer{}
	c, err := New(api, Config{NodeName: testNode}, slog.New(slog.NewTextHandler(logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.lw.backoffInitial = time.Millisecond
	events := make(chan string, 64)
	c.afterEvent = func(kind string, o *podObj) { events <- kind + " " + o.Name + " " + o.ResourceVersion }
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return c, events, logs
}

func expectEvents(t *testing.T, events chan string, want ...string) {
	t.Helper()
	for _, w := range want {
		select {
		case got := <-events:
			if got != w {
				t.Fatalf("event %q, want %q", got, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no event; want %q", w)
		}
	}
}

// awaitRequest waits for the request rec to arrive at s.
func (s *scriptServer) awaitRequest(t *testing.T, rec string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case got := <-s.arrived:
			if got == rec {
				return
			}
		case <-timeout:
			t.Fatalf("no request %q; requests %q", rec, s.requests())
		}
	}
}

func onlyPods(reqs []string) []string {
	var out []string
	for _, r := range reqs {
		if !strings.HasPrefix(r, "get ") {
			out = append(out, r)
		}
	}
	return out
}

// TestWatchResumesAfterBrokenStream: a watch whose connection drops, whose
// stream cannot be decoded, or that the server ends is resumed from the
// last resource version seen, without a list; a 410 Gone lists again at
// once.
func TestWatchResumesAfterBrokenStream(t *testing.T) {
	t.Parallel()
	srv, ts := newScriptServer(t)
	srv.add("list", listOf("5"), listOf("20", podJSON("b", "19", "10.9.1.2", 0)))
	srv.add("watch",
		watchThen("abort", watchEvent("ADDED", podJSON("a", "6", "10.9.1.1", 0))),
		watchThen("close", watchEvent("ADDED", podJSON("b", "7", "10.9.1.2", 0)), `{"type":"MODIFIED","object":{"metadata":}}`),
		watchThen("close", watchEvent("MODIFIED", podJSON("b", "8", "10.9.1.2", 0))),
		watchThen("hang", `{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Expired","message":"too old resource version: 8 (15)","code":410}}`),
	)
	c, events, _ := runOn(t, ts)
	expectEvents(t, events, "upsert a 6", "upsert b 7", "upsert b 8", "upsert b 19", "delete a 6")
	srv.awaitRequest(t, "watch rv=20")
	want := []string{"list rv=0", "watch rv=5", "watch rv=6", "watch rv=7", "watch rv=8", "list rv=", "watch rv=20"}
	if got := onlyPods(srv.requests()); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("requests\n%q\nwant\n%q", got, want)
	}
	// The dropped connection, the undecodable event and the 410.
	if n := testutil.ToFloat64(c.m.watchErrors); n != 3 {
		t.Errorf("watch errors %v, want 3", n)
	}
}

// TestWatchRelistsAfterRepeatedBreaks: a watch that keeps breaking without
// delivering anything is resumed maxResumes times, then the pods are
// listed again.
func TestWatchRelistsAfterRepeatedBreaks(t *testing.T) {
	t.Parallel()
	srv, ts := newScriptServer(t)
	srv.add("list", listOf("5"), listOf("9"))
	for range maxResumes + 1 {
		srv.add("watch", watchThen("abort"))
	}
	c, _, _ := runOn(t, ts)
	srv.awaitRequest(t, "watch rv=9")
	want := []string{"list rv=0"}
	for range maxResumes + 1 {
		want = append(want, "watch rv=5")
	}
	want = append(want, "list rv=5", "watch rv=9")
	if got := onlyPods(srv.requests()); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("requests\n%q\nwant\n%q", got, want)
	}
	if n := testutil.ToFloat64(c.m.watchErrors); n != maxResumes+1 {
		t.Errorf("watch errors %v, want %d", n, maxResumes+1)
	}
}

// TestWatchEventTooLarge: one watch event larger than maxEventBytes ends
// the watch with an error, counted and logged, and the pods are listed
// again (resuming would meet the same event).
func TestWatchEventTooLarge(t *testing.T) {
	t.Parallel()
	srv, ts := newScriptServer(t)
	srv.add("list", listOf("5"), listOf("9"))
	srv.add("watch", watchThen("hang",
		watchEvent("ADDED", podJSON("a", "6", "10.9.1.1", 3000)), // under the cap
		watchEvent("ADDED", podJSON("big", "7", "10.9.1.3", 8000)),
		watchEvent("ADDED", podJSON("c", "8", "10.9.1.4", 0))))
	c, events, logs := runOn(t, ts, func(a *restAPI) { a.maxObject = 4096 })
	expectEvents(t, events, "upsert a 6", "delete a 6")
	srv.awaitRequest(t, "watch rv=9")
	want := []string{"list rv=0", "watch rv=5", "list rv=6", "watch rv=9"}
	if got := onlyPods(srv.requests()); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("requests\n%q\nwant\n%q", got, want)
	}
	if n := testutil.ToFloat64(c.m.watchErrors); n != 1 {
		t.Errorf("watch errors %v, want 1", n)
	}
	if !strings.Contains(logs.String(), "a watch event is larger than 4096 bytes") {
		t.Errorf("not logged:\n%s", logs.String())
	}
}

// TestAnswerTooLarge: a list page larger than maxListBytes and an object
// larger than maxEventBytes are errors that say so, not truncated reads.
func TestAnswerTooLarge(t *testing.T) {
	t.Parallel()
	srv, ts := newScriptServer(t)
	srv.add("list", listOf("5", podJSON("a", "1", "10.9.1.1", 5000), podJSON("b", "2", "10.9.1.2", 5000)), listOf("5", podJSON("a", "1", "10.9.1.1", 5000)))
	srv.add("get", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"metadata":{"name":"n","uid":"u","annotations":{"pad":%q}}}`, strings.Repeat("x", 3000))
	})
	api, err := NewAPI(&RESTConfig{Host: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	api.(*restAPI).maxList, api.(*restAPI).maxObject = 8192, 2048
	if _, err := api.ListPods(t.Context(), ListOptions{}); err == nil || !strings.Contains(err.Error(), "larger than 8192 bytes") {
		t.Errorf("list page over the cap: %v", err)
	}
	if l, err := api.ListPods(t.Context(), ListOptions{}); err != nil || len(l.Items) != 1 {
		t.Errorf("list page under the cap: %v", err)
	}
	if _, err := api.GetNamespaceMetadata(t.Context(), "team"); err == nil || !strings.Contains(err.Error(), "larger than 2048 bytes") {
		t.Errorf("object over the cap: %v", err)
	}
}

// retryAfterServer answers each request to any path with the next scripted
// status (with its Retry-After header, if any), then 200 with body.
func retryAfterServer(t *testing.T, body string, answers ...[2]string) (*httptest.Server, func() int) {
	var mu sync.Mutex
	n := 0
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		i := n
		n++
		mu.Unlock()
		if i < len(answers) {
			var code int
			fmt.Sscan(answers[i][0], &code)
			if answers[i][1] != "" {
				w.Header().Set("Retry-After", answers[i][1])
			}
			writeStatus(w, code, "TooManyRequests", "slow down")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(ts.Close)
	return ts, func() int { mu.Lock(); defer mu.Unlock(); return n }
}

// recordSleeps makes api's Retry-After waits instant and records them.
func recordSleeps(api API) *[]time.Duration {
	var mu sync.Mutex
	var waits []time.Duration
	api.(*restAPI).sleep = func(_ context.Context, d time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		waits = append(waits, d)
		return nil
	}
	return &waits
}

// TestRetryAfterHonoured: a 429 or 5xx answer with Retry-After is waited out
// (at most a minute) and the request sent again, for metadata reads, lists
// and watches; one without Retry-After, or whose wait would outlast the
// request's deadline, is returned at once, the latter with the wait for the
// caller; retries stop after maxRetries.
func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	check := func(name string, got []time.Duration, want ...time.Duration) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: waited %v, want %v", name, got, want)
		}
	}
	meta := `{"metadata":{"name":"team","uid":"ns-uid"}}`

	ts, calls := retryAfterServer(t, meta, [2]string{"429", "7"}, [2]string{"503", "3600"}, [2]string{"500", "0"})
	api, _ := NewAPI(&RESTConfig{Host: ts.URL})
	waits := recordSleeps(api)
	if m, err := api.GetNamespaceMetadata(t.Context(), "team"); err != nil || m.UID != "ns-uid" {
		t.Fatalf("metadata: %v", err)
	}
	check("metadata", *waits, 7*time.Second, time.Minute, 0)
	if calls() != 4 {
		t.Errorf("metadata: %d requests, want 4", calls())
	}

	ts, _ = retryAfterServer(t, `{"metadata":{"resourceVersion":"3"},"items":[]}`, [2]string{"500", "2"})
	api, _ = NewAPI(&RESTConfig{Host: ts.URL})
	waits = recordSleeps(api)
	if l, err := api.ListPods(t.Context(), ListOptions{}); err != nil || l.ResourceVersion != "3" {
		t.Fatalf("list: %v", err)
	}
	check("list", *waits, 2*time.Second)

	ts, _ = retryAfterServer(t, watchEvent("ADDED", podJSON("a", "6", "10.9.1.1", 0))+"\n", [2]string{"429", "1"})
	api, _ = NewAPI(&RESTConfig{Host: ts.URL})
	waits = recordSleeps(api)
	w, err := api.WatchPods(t.Context(), ListOptions{})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	if ev := <-w.ResultChan(); ev.Pod == nil || ev.Pod.Name != "a" {
		t.Errorf("watch event %+v", ev)
	}
	w.Stop()
	check("watch", *waits, time.Second)

	// Without Retry-After: the error at once.
	ts, calls = retryAfterServer(t, meta, [2]string{"503", ""})
	api, _ = NewAPI(&RESTConfig{Host: ts.URL})
	waits = recordSleeps(api)
	_, err = api.GetNamespaceMetadata(t.Context(), "team")
	if st, _ := statusOf(err); st.Code != 503 || retryAfterOf(err) != 0 || calls() != 1 {
		t.Errorf("503 without Retry-After: %v after %d requests", err, calls())
	}
	check("no Retry-After", *waits)

	// A wait longer than the deadline left: returned with the wait.
	ts, calls = retryAfterServer(t, meta, [2]string{"429", "5"})
	api, _ = NewAPI(&RESTConfig{Host: ts.URL})
	waits = recordSleeps(api)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_, err = api.GetNamespaceMetadata(ctx, "team")
	if st, _ := statusOf(err); st.Code != 429 || retryAfterOf(err) != 5*time.Second || calls() != 1 {
		t.Errorf("Retry-After past the deadline: %v (wait %v) after %d requests", err, retryAfterOf(err), calls())
	}
	check("past the deadline", *waits)

	// A server that keeps asking: maxRetries more requests, then the error.
	var many [][2]string
	for range maxRetries + 5 {
		many = append(many, [2]string{"429", "1"})
	}
	ts, calls = retryAfterServer(t, meta, many...)
	api, _ = NewAPI(&RESTConfig{Host: ts.URL})
	recordSleeps(api)
	_, err = api.GetNamespaceMetadata(t.Context(), "team")
	if st, _ := statusOf(err); st.Code != 429 || retryAfterOf(err) != time.Second || calls() != maxRetries+1 {
		t.Errorf("endless 429: %v after %d requests, want %d", err, calls(), maxRetries+1)
	}

	// The real wait: Retry-After: 0 is retried at once.
	ts, calls = retryAfterServer(t, meta, [2]string{"429", "0"})
	api, _ = NewAPI(&RESTConfig{Host: ts.URL})
	if _, err := api.GetNamespaceMetadata(t.Context(), "team"); err != nil || calls() != 2 {
		t.Errorf("Retry-After 0: %v after %d requests", err, calls())
	}
}

// timedAPI records when the pods are listed.
type timedAPI struct {
	*scriptAPI
	listed chan time.Time
}

func (a *timedAPI) ListPods(ctx context.Context, o ListOptions) (*kubetypes.PodList, error) {
	a.listed <- time.Now()
	return a.scriptAPI.ListPods(ctx, o)
}

// TestRetryAfterPacesRelists: a list refused with a wait the server asked
// for is not tried again before that wait, however short the backoff.
func TestRetryAfterPacesRelists(t *testing.T) {
	t.Parallel()
	api := &timedAPI{scriptAPI: newScriptAPI(), listed: make(chan time.Time, 4)}
	c, err := New(api, Config{NodeName: testNode}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.lw.backoffInitial = time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	const wait = 300 * time.Millisecond
	api.listQ <- listAnswer{err: &StatusError{Status: kubetypes.Status{Code: 429, Reason: "TooManyRequests"}, RetryAfter: wait}}
	api.listQ <- listAnswer{l: leanList("1", "")}
	api.watchQ <- watchAnswer{w: newChanWatch()}
	first := <-api.listed
	select {
	case second := <-api.listed:
		if d := second.Sub(first); d < wait {
			t.Errorf("listed again after %v, before the %v the server asked for", d, wait)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not listed again")
	}
}

// retryAfterNS refuses namespace reads with a Retry-After wait and counts
// them.
type retryAfterNS struct {
	API
	mu   sync.Mutex
	gets int
}

func (a *retryAfterNS) GetNamespaceMetadata(context.Context, string) (*kubetypes.PartialObjectMetadata, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gets++
	return nil, &StatusError{Status: kubetypes.Status{Code: 429, Reason: "TooManyRequests"}, RetryAfter: 45 * time.Second}
}

// TestMetadataRetryAfter: a metadata read refused with Retry-After longer
// than metaRetryAfter is not made again before the server's wait.
func TestMetadataRetryAfter(t *testing.T) {
	t.Parallel()
	api := &retryAfterNS{}
	c, err := New(api, Config{NodeName: testNode}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	fc := newFakeClock(time.Now())
	c.clock = fc
	if _, ok := c.lookup(t.Context(), kindNamespace, "", "team"); ok {
		t.Fatal("refused read reported as read")
	}
	fc.Step(metaRetryAfter + time.Second)
	c.lookup(t.Context(), kindNamespace, "", "team")
	if api.gets != 1 {
		t.Errorf("%d reads within the server's wait, want 1", api.gets)
	}
	fc.Step(45 * time.Second)
	c.lookup(t.Context(), kindNamespace, "", "team")
	if api.gets != 2 {
		t.Errorf("%d reads after the server's wait, want 2", api.gets)
	}
}
