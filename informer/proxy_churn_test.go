package informer_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/podstamp/podstamp/enrich"
	"github.com/podstamp/podstamp/enrich/enrichtest"
	"github.com/podstamp/podstamp/informer"
	"github.com/podstamp/podstamp/proxy"

	"github.com/podstamp/podstamp/informer/kubetypes"
)

var churnSeed = flag.Uint64("churn.seed", 0, "seed of the proxy churn tests (0: a new one each run)")

// Resource attributes the test clients send and the upstream checks.
const (
	attrExpectedUID = "test.expected.uid" // the UID of the sender's pod
	attrRequestID   = "test.request.id"   // unique per export request
)

// TestProxyChurn runs the proxy end to end in-process: real gRPC and HTTP
// ingress listeners, a real OTLP/gRPC upstream, the Stamper over a Cache fed
// by FakeAPI. Pods on 127.0.0.10-25 are created and deleted at
// random while every live pod's client exports continuously over gRPC and
// HTTP (protobuf and JSON) from its pod's address; addresses are reused, and
// half of the new clients start sending before their pod object exists (the
// start-up race, resolved by holding). Each client labels its resources with
// the UID of its pod. Every request the proxy acknowledged must have reached
// the upstream, every resource must carry its sender's k8s.pod.uid (none
// unstamped, none wrong), and podstamp_enrich_total must count only hit and
// hold_hit.
//
// An address is reused only after the cache has seen its previous pod's
// deletion (a barrier pod, below): a new pod sending from an address whose
// old pod the cache still believes running cannot be told apart from it.
func TestProxyChurn(t *testing.T) {
	testProxyChurn(t, false)
}

// TestProxyChurnFinishedPods is TestProxyChurn where half of the pods that
// release their address finish (Succeeded or Failed) and stay in the API for
// a while, as Job pods do, instead of being deleted at once. A new pod's
// first requests, sent before its status reached the cache, must not be
// stamped with the finished pod's identity: connections accepted after the
// cache saw a pod finish skip it (enrich.Peer.Accepted), as they skip deleted pods.
func TestProxyChurnFinishedPods(t *testing.T) {
	testProxyChurn(t, true)
}

func testProxyChurn(t *testing.T, finish bool) {
	const (
		firstIP, lastIP = 10, 25 // pod addresses 127.0.0.10 .. 127.0.0.25
		churnFor        = 5 * time.Second
		maxRounds       = 1000
		minLive         = 4
	)
	seed := *churnSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -args -churn.seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	began := time.Now()

	e := newChurnEnv(t, informer.Config{NodeName: "node-a", HoldTimeout: 10 * time.Second})

	type slot struct {
		ip     netip.Addr
		client *churnClient // nil: the address is free
		pod    *kubetypes.Pod
		used   bool // some pod had this address before
	}
	var slots []*slot
	for i := firstIP; i <= lastIP; i++ {
		slots = append(slots, &slot{ip: netip.AddrFrom4([4]byte{127, 0, 0, byte(i)})})
	}
	var (
		gen                                                  int
		created, deleted, reused, clientFirst, labelsChanged int
		finished                                             []*kubetypes.Pod // finished pods not deleted yet
		finishedCount                                        int
	)
	start := func(s *slot) {
		gen++
		s.pod = churnPod("default", fmt.Sprintf("app-%d", gen), fmt.Sprintf("uid-%d-%d", seed%1000, gen), s.ip, gen)
		if s.used {
			reused++
		}
		s.used = true
		created++
		c := e.newClient(s.pod, seed+uint64(gen))
		if rng.IntN(2) == 0 {
			// The start-up race: the pod's first requests reach the proxy
			// before its pod object reaches the cache (created as the first
			// request goes out, or up to 20ms later).
			clientFirst++
			c.start()
			<-c.sending
			if d := rng.IntN(20); d > 0 {
				<-time.After(time.Duration(d) * time.Millisecond)
			}
			e.create(s.pod)
		} else {
			e.create(s.pod)
			c.start()
		}
		s.client = c
	}
	release := func(s *slot) {
		s.client.close() // a pod's client never sends after its pod is gone
		s.client = nil
		if finish && rng.IntN(2) == 0 {
			p := shallowCopy(s.pod) // the fake API copies what it stores
			p.Status.Phase = []kubetypes.PodPhase{kubetypes.PodSucceeded, kubetypes.PodFailed}[rng.IntN(2)]
			e.update(p)
			finished = append(finished, p)
			finishedCount++
		} else {
			e.delete(s.pod)
			deleted++
		}
		e.barrier() // the cache has seen the release: the address is free
	}

	for _, s := range slots[:len(slots)/2] {
		start(s)
	}
	rounds := 0
	for deadline := time.Now().Add(churnFor); rounds < maxRounds && time.Now().Before(deadline); rounds++ {
		var live, free []*slot
		for _, s := range slots {
			if s.client != nil {
				live = append(live, s)
			} else {
				free = append(free, s)
			}
		}
		switch op := rng.IntN(6); {
		case op == 0 && len(live) > 0: // an update that changes nothing about the address
			s := live[rng.IntN(len(live))]
			s.pod = shallowCopy(s.pod)
			s.pod.Labels = map[string]string{"round": fmt.Sprint(rounds)}
			e.update(s.pod)
			labelsChanged++
		case op == 1 && len(finished) > 0: // a finished pod is deleted, late
			k := rng.IntN(len(finished))
			e.delete(finished[k])
			finished = slices.Delete(finished, k, k+1)
			deleted++
		case len(free) == 0 || (op <= 3 && len(live) > minLive):
			release(live[rng.IntN(len(live))])
		default:
			start(free[rng.IntN(len(free))])
		}
	}
	e.closeClients()
	churned := time.Since(began)
	e.shutdown()

	t.Logf("%d rounds in %s: %d pods created (%d on a reused address, %d whose client sent first), %d finished, %d deleted, %d label updates",
		rounds, churned.Round(time.Millisecond), created, reused, clientFirst, finishedCount, deleted, labelsChanged)
	e.check(t)
	if reused == 0 || clientFirst == 0 {
		t.Errorf("the churn reused %d addresses and started %d clients before their pod: nothing was tested", reused, clientFirst)
	}
}

// churnEnv is the proxy, its pod cache, the upstream and the load's books.
type churnEnv struct {
	t        *testing.T
	api      *informer.FakeAPI
	cache    *informer.Cache
	reg      *prometheus.Registry
	grpcAddr string
	httpURL  string
	rec      *recorder

	stopProxy func() error
	stopCache func()
	stopUp    func()

	mu      sync.Mutex
	acked   map[string]int // request id -> resources, for requests the proxy acknowledged
	failed  []string       // requests the proxy did not acknowledge
	byProto map[string]int // acknowledged requests by ingress and encoding

	barriers int
	clients  map[*churnClient]bool // started and not closed
}

func newChurnEnv(t *testing.T, icfg informer.Config) *churnEnv {
	t.Helper()
	e := &churnEnv{t: t, reg: prometheus.NewRegistry(), rec: &recorder{resources: map[string]int{}},
		acked: map[string]int{}, byProto: map[string]int{}, clients: map[*churnClient]bool{}}

	// The upstream: a real OTLP/gRPC server that decodes with pdata.
	srv := grpc.NewServer()
	ptraceotlp.RegisterGRPCServer(srv, &traceSink{r: e.rec})
	plogotlp.RegisterGRPCServer(srv, &logSink{r: e.rec})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	upDone := make(chan struct{})
	go func() { defer close(upDone); _ = srv.Serve(ln) }()
	e.stopUp = sync.OnceFunc(func() { srv.Stop(); <-upDone })
	t.Cleanup(e.stopUp)

	// The pod cache, on a fake API server that knows this node.
	node := &kubetypes.Node{ObjectMeta: kubetypes.ObjectMeta{Name: icfg.NodeName, UID: "node-uid"},
		Status: kubetypes.NodeStatus{Addresses: []kubetypes.NodeAddress{{Address: "192.0.2.1"}}}}
	e.api = informer.NewFakeAPI(node)
	rules := enrich.DefaultConfig()
	icfg.Needs = rules.Needs()
	e.cache, err = informer.New(e.api, icfg, nil, e.reg)
	if err != nil {
		t.Fatal(err)
	}
	stamper := enrich.NewStamper(enrichtest.Rules(rules), e.cache)
	cacheCtx, cancelCache := context.WithCancel(context.Background())
	cacheDone := make(chan error, 1)
	go func() { cacheDone <- e.cache.Run(cacheCtx) }()
	e.stopCache = sync.OnceFunc(func() {
		cancelCache()
		if err := <-cacheDone; err != nil {
			t.Errorf("cache Run: %v", err)
		}
	})
	t.Cleanup(e.stopCache)

	// The proxy, wired as cmd/podstamp does.
	cfg := proxy.DefaultConfig()
	cfg.GRPCListen, cfg.HTTPListen = "127.0.0.1:0", "127.0.0.1:0"
	for sig := range cfg.Upstream { // every signal to the one upstream
		cfg.Upstream[sig] = proxy.Target{Protocol: proxy.ProtocolGRPC, Endpoint: "http://" + ln.Addr().String(), Timeout: time.Minute}
	}
	cfg.ShutdownTimeout = 10 * time.Second
	p, err := proxy.New(cfg, proxy.Options{Enricher: stamper, Registerer: e.reg, Gatherer: e.reg,
		Checks: []proxy.Check{{Name: "pod-cache", Check: e.cache.Ready}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Listen(); err != nil {
		p.Close()
		t.Fatal(err)
	}
	e.grpcAddr = p.GRPCAddr().String()
	e.httpURL = "http://" + p.HTTPAddr().String()
	proxyCtx, cancelProxy := context.WithCancel(context.Background())
	serveDone := make(chan error, 1)
	go func() { serveDone <- p.Serve(proxyCtx) }()
	e.stopProxy = sync.OnceValue(func() error {
		cancelProxy()
		select {
		case err := <-serveDone:
			return err
		case <-time.After(30 * time.Second):
			return fmt.Errorf("proxy did not stop within %s", 30*time.Second)
		}
	})
	t.Cleanup(func() { _ = e.stopProxy() })
	t.Cleanup(e.closeClients) // runs first: no client outlives the test

	// The informer delivers events: from here on, pods appear in the cache.
	e.barrier()
	return e
}

// shutdown stops the proxy (which drains), then the cache, then the upstream,
// as cmd/podstamp does.
func (e *churnEnv) shutdown() {
	e.t.Helper()
	e.closeClients()
	if err := e.stopProxy(); err != nil {
		e.t.Errorf("Serve: %v", err)
	}
	if err := e.cache.Ready(); err != nil {
		e.t.Errorf("cache not ready after the run: %v", err)
	}
	e.stopCache()
	e.stopUp()
}

// closeClients stops every client still sending.
func (e *churnEnv) closeClients() {
	for c := range e.clients {
		c.close()
	}
}

func (e *churnEnv) create(p *kubetypes.Pod) {
	e.t.Helper()
	if err := e.api.CreatePod(p); err != nil {
		e.t.Fatal(err)
	}
}

func (e *churnEnv) update(p *kubetypes.Pod) {
	e.t.Helper()
	if err := e.api.UpdatePod(p); err != nil {
		e.t.Fatal(err)
	}
}

func (e *churnEnv) delete(p *kubetypes.Pod) {
	e.t.Helper()
	if err := e.api.DeletePod(p.Namespace, p.Name); err != nil {
		e.t.Fatal(err)
	}
}

// barrier returns once the cache has applied every pod event issued before
// it. It creates a pod on an address nobody uses (fd00::n) and resolves that
// address, which holds until the informer indexes the pod; the informer
// applies events in the order the API server sent them.
func (e *churnEnv) barrier() {
	e.t.Helper()
	e.barriers++
	n := e.barriers
	ip := netip.AddrFrom16([16]byte{0: 0xfd, 14: byte(n >> 8), 15: byte(n)})
	p := churnPod("barrier", fmt.Sprintf("barrier-%d", n), fmt.Sprintf("barrier-uid-%d", n), ip, 0)
	e.create(p)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, res, err := e.cache.ResolvePeer(ctx, enrich.Peer{Addr: ip}, 0)
	if res == enrich.ResultHoldTimeout {
		// Only with a HoldTimeout shorter than the informer's latency (as
		// when checking that this test can fail): watch for the pod instead.
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for got = e.cache.ByUID(string(p.UID)); got == nil && ctx.Err() == nil; got = e.cache.ByUID(string(p.UID)) {
			<-tick.C
		}
		err = ctx.Err()
	}
	if err != nil || got == nil || got.UID != string(p.UID) {
		e.t.Fatalf("barrier pod %s: resolved %v, %s, %v", ip, got, res, err)
	}
}

// done records the outcome of one export request.
func (e *churnEnv) done(id, proto string, resources int, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		e.failed = append(e.failed, fmt.Sprintf("%s: %v", id, err))
		return
	}
	e.acked[id] = resources
	e.byProto[proto]++
}

// check compares what the clients sent with what the upstream received and
// with the proxy's podstamp_enrich_total.
func (e *churnEnv) check(t *testing.T) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.rec
	r.mu.Lock()
	defer r.mu.Unlock()

	resources, missing := 0, 0
	for id, n := range e.acked {
		resources += n
		if got := r.resources[id]; got != n {
			missing++
			if missing <= 5 {
				t.Errorf("request %s: acknowledged with %d resources, the upstream received %d", id, n, got)
			}
		}
	}
	results := map[string]float64{}
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "podstamp_enrich_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && m.GetCounter().GetValue() > 0 {
					results[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	var protos []string
	for p, n := range e.byProto {
		protos = append(protos, fmt.Sprintf("%s %d", p, n))
	}
	slices.Sort(protos)

	t.Logf("%d requests acknowledged (%s), %d failed; %d resources sent, upstream: %d stamped right, %d wrong, %d unstamped; %d acknowledged requests missing upstream",
		len(e.acked), strings.Join(protos, ", "), len(e.failed), resources, r.right, r.wrong, r.unstamped, missing)
	t.Logf("podstamp_enrich_total: %v", results)

	for i, f := range e.failed {
		if i == 5 {
			t.Errorf("... %d more failed requests", len(e.failed)-i)
			break
		}
		t.Errorf("request not acknowledged: %s", f)
	}
	for _, p := range r.problems {
		t.Error(p)
	}
	if r.wrong != 0 || r.unstamped != 0 {
		t.Errorf("%d resources stamped with a wrong identity, %d unstamped (of %d)", r.wrong, r.unstamped, r.right+r.wrong+r.unstamped)
	}
	if total := r.right + r.wrong + r.unstamped; total != resources {
		t.Errorf("the upstream received %d resources, the proxy acknowledged %d", total, resources)
	}
	for res, n := range results {
		if res != string(enrich.ResultHit) && res != string(enrich.ResultHoldHit) {
			t.Errorf("podstamp_enrich_total{result=%q} = %v, want 0", res, n)
		}
	}
	if sum := results[string(enrich.ResultHit)] + results[string(enrich.ResultHoldHit)]; int(sum) != len(e.acked) {
		t.Errorf("podstamp_enrich_total counts %v hits, %d requests were acknowledged", sum, len(e.acked))
	}
	if results[string(enrich.ResultHoldHit)] == 0 {
		t.Errorf("no request was held: the start-up race was not exercised")
	}
}

func shallowCopy(p *kubetypes.Pod) *kubetypes.Pod {
	c := *p
	return &c
}

// churnPod is a running single-container pod of node-a on ip.
func churnPod(ns, name, uid string, ip netip.Addr, gen int) *kubetypes.Pod {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(gen) * time.Second)
	return &kubetypes.Pod{
		ObjectMeta: kubetypes.ObjectMeta{Namespace: ns, Name: name, UID: uid, CreationTimestamp: kubetypes.Time{Time: start}},
		Spec: kubetypes.PodSpec{NodeName: "node-a",
			Containers: []kubetypes.Container{{Name: "app", Image: "registry.example:5000/team/app:1.2"}}},
		Status: kubetypes.PodStatus{Phase: kubetypes.PodRunning, StartTime: &kubetypes.Time{Time: start},
			PodIP: ip.String(), PodIPs: []kubetypes.PodIP{{IP: ip.String()}},
			ContainerStatuses: []kubetypes.ContainerStatus{{Name: "app", ContainerID: "containerd://cid-" + uid}}},
	}
}

// churnClient is one pod generation's OTLP exporter: gRPC and HTTP from the
// pod's address, labelling every resource with the pod's UID.
type churnClient struct {
	e       *churnEnv
	uid     string
	name    string
	seed    uint64
	cc      *grpc.ClientConn
	tr      *http.Transport
	hc      *http.Client
	stop    chan struct{}
	sending chan struct{} // closed as the first request goes out
	once    sync.Once
	wg      sync.WaitGroup
}

func (e *churnEnv) newClient(p *kubetypes.Pod, seed uint64) *churnClient {
	e.t.Helper()
	ip := netip.MustParseAddr(p.Status.PodIP)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip.AsSlice()}}
	cc, err := grpc.NewClient("passthrough:///"+e.grpcAddr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		}))
	if err != nil {
		e.t.Fatal(err)
	}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 1}
	return &churnClient{e: e, uid: string(p.UID), name: p.Name, seed: seed, cc: cc, tr: tr,
		hc: &http.Client{Transport: tr}, stop: make(chan struct{}), sending: make(chan struct{})}
}

func (c *churnClient) start() {
	c.e.clients[c] = true
	for i, proto := range []string{"grpc", "http"} {
		c.wg.Go(func() { c.run(proto, rand.New(rand.NewPCG(c.seed, uint64(i)))) })
	}
}

// close stops sending, waits for the requests in flight and closes every
// connection.
func (c *churnClient) close() {
	if !c.e.clients[c] {
		return
	}
	delete(c.e.clients, c)
	close(c.stop)
	c.wg.Wait()
	c.cc.Close()
	c.tr.CloseIdleConnections()
}

// run exports, paced, until stopped: traces or logs, with one or two
// resources; over HTTP, protobuf or JSON.
func (c *churnClient) run(proto string, rng *rand.Rand) {
	traces, logs := ptraceotlp.NewGRPCClient(c.cc), plogotlp.NewGRPCClient(c.cc)
	for n := 0; ; n++ {
		select {
		case <-c.stop:
			return
		default:
		}
		id := fmt.Sprintf("%s/%s/%d", c.name, proto, n)
		resources := 1 + rng.IntN(2)
		isLogs := rng.IntN(2) == 0
		tr, lr := c.traces(id, resources), c.logs(id, resources)
		c.once.Do(func() { close(c.sending) })
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var err error
		kind := proto
		switch {
		case proto == "grpc" && isLogs:
			_, err = logs.Export(ctx, lr)
		case proto == "grpc":
			_, err = traces.Export(ctx, tr)
		default:
			var body []byte
			path, ctype := "/v1/traces", "application/x-protobuf"
			if isLogs {
				path = "/v1/logs"
			}
			json := rng.IntN(2) == 0
			switch {
			case json && isLogs:
				body, err = lr.MarshalJSON()
			case json:
				body, err = tr.MarshalJSON()
			case isLogs:
				body, err = lr.MarshalProto()
			default:
				body, err = tr.MarshalProto()
			}
			kind = "http/protobuf"
			if json {
				ctype, kind = "application/json", "http/json"
			}
			if err == nil {
				err = c.post(ctx, path, ctype, body)
			}
		}
		cancel()
		c.e.done(id, kind, resources, err)
		select {
		case <-c.stop:
			return
		case <-time.After(time.Duration(5+rng.IntN(10)) * time.Millisecond):
		}
	}
}

func (c *churnClient) post(ctx context.Context, path, ctype string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.e.httpURL+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s: %s", path, resp.Status, b)
	}
	return nil
}

func (c *churnClient) label(m pcommon.Map, id string, i int) {
	m.PutStr("service.name", "churn")
	m.PutStr(attrExpectedUID, c.uid)
	m.PutStr(attrRequestID, id)
	m.PutInt("test.resource.index", int64(i))
}

func (c *churnClient) traces(id string, resources int) ptraceotlp.ExportRequest {
	td := ptrace.NewTraces()
	for i := range resources {
		rs := td.ResourceSpans().AppendEmpty()
		c.label(rs.Resource().Attributes(), id, i)
		sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
		sp.SetName("GET /cart")
		sp.SetTraceID(pcommon.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, byte(i + 1)})
		sp.SetSpanID(pcommon.SpanID{1, 2, 3, 4, 5, 6, 7, byte(i + 1)})
	}
	return ptraceotlp.NewExportRequestFromTraces(td)
}

func (c *churnClient) logs(id string, resources int) plogotlp.ExportRequest {
	ld := plog.NewLogs()
	for i := range resources {
		rl := ld.ResourceLogs().AppendEmpty()
		c.label(rl.Resource().Attributes(), id, i)
		rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body().SetStr("cart updated")
	}
	return plogotlp.NewExportRequestFromLogs(ld)
}

// recorder is the upstream's view: every resource it received and whose
// identity it carried.
type recorder struct {
	mu                      sync.Mutex
	resources               map[string]int // request id -> resources received
	right, wrong, unstamped int
	problems                []string // the first few wrong or unstamped resources
}

func (r *recorder) resource(attrs pcommon.Map) {
	str := func(k string) string {
		if v, ok := attrs.Get(k); ok {
			return v.AsString()
		}
		return ""
	}
	id, want, got := str(attrRequestID), str(attrExpectedUID), str("k8s.pod.uid")
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resources[id]++
	problem := ""
	switch {
	case got == "":
		r.unstamped++
		problem = fmt.Sprintf("request %s: resource from pod %s arrived unstamped", id, want)
	case got != want:
		r.wrong++
		problem = fmt.Sprintf("request %s: resource from pod %s stamped as pod %s (%s/%s)", id, want, got, str("k8s.namespace.name"), str("k8s.pod.name"))
	default:
		r.right++
	}
	if problem != "" && len(r.problems) < 10 {
		r.problems = append(r.problems, problem)
	}
}

// traceSink and logSink are the upstream's OTLP/gRPC services.
type traceSink struct {
	ptraceotlp.UnimplementedGRPCServer
	r *recorder
}

func (s *traceSink) Export(_ context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	rss := req.Traces().ResourceSpans()
	for i := range rss.Len() {
		s.r.resource(rss.At(i).Resource().Attributes())
	}
	return ptraceotlp.NewExportResponse(), nil
}

type logSink struct {
	plogotlp.UnimplementedGRPCServer
	r *recorder
}

func (s *logSink) Export(_ context.Context, req plogotlp.ExportRequest) (plogotlp.ExportResponse, error) {
	rls := req.Logs().ResourceLogs()
	for i := range rls.Len() {
		s.r.resource(rls.At(i).Resource().Attributes())
	}
	return plogotlp.NewExportResponse(), nil
}
