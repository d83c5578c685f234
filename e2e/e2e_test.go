//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/podstamp/podstamp/bench/sink"
	"github.com/podstamp/podstamp/e2e/cluster"
	"github.com/podstamp/podstamp/e2e/netns"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// client-go's transports keep idle connections.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

var agentIP = netip.MustParseAddr("10.244.0.3")

// serviceVIP is the ClusterIP of scenario 3's Service.
var serviceVIP = netip.MustParseAddr("10.96.0.50")

func TestE2E(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the end-to-end suite needs root (network namespaces, iptables): run it as root, e.g. `sudo make e2e`")
	}
	begin := time.Now()
	ensurePackages(t)
	s := &suite{root: repoRoot(t), prefix: netns.Prefix(), binDir: t.TempDir()}
	var err error
	if s.logDir, err = os.MkdirTemp("", "podstamp-e2e-logs-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.printTable(time.Since(begin))
		if t.Failed() {
			fmt.Printf("process logs kept in %s\n", s.logDir)
		} else {
			os.RemoveAll(s.logDir)
		}
	})
	s.buildBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	s.cluster, err = cluster.Start(ctx, cluster.Options{Log: newLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.cluster.Stop)

	for _, sc := range []struct {
		name string
		fn   func(*testing.T, *suite)
	}{
		{"1_hostport_nat", scenarioHostPort},
		{"2_host_network", scenarioHostNetwork},
		{"2b_host_network_lean", scenarioHostNetworkGRPCGo},
		{"3_service_local", scenarioServiceLocal},
		{"4_startup_race", scenarioStartupRace},
		{"5_ip_reuse", scenarioIPReuse},
		{"5b_ip_reuse_early_sender", scenarioIPReuseEarly},
		{"6_upstream_outage", scenarioUpstreamOutage},
		{"6b_upstream_outage_lean", scenarioUpstreamOutageGRPCGo},
		{"7_apiserver_outage", scenarioAPIServerOutage},
		{"8_least_privilege", scenarioLeastPrivilege},
		{"9_dual_stack", scenarioDualStack},
		{"10_hostile_senders", scenarioHostile},
		{"10b_hostile_senders_lean", scenarioHostileGRPCGo},
		{"11_exhaustion_128mib", scenarioExhaustion},
		{"11b_exhaustion_128mib_lean", scenarioExhaustionGRPCGo},
		{"12_rollout_reuseport", scenarioRollout},
		{"12b_rollout_reuseport_lean", scenarioRolloutGRPCGo},
	} {
		t.Run(sc.name, func(t *testing.T) { sc.fn(t, s) })
	}
}

// ------------------------------------------------------------------ 1

// scenarioHostPort is the write-up's broken setup: the agent runs in the pod
// network behind a hostPort. First a plain collector stands in the agent's
// place and records which peer it sees; then podstamp stands there.
func scenarioHostPort(t *testing.T, s *suite) {
	e := s.newEnv(t, "1", "hostPort, agent in pod network (the write-up's setup)")
	agent := e.agent(t)
	rules := e.node.HostPort(agentIP, grpcPort, httpPort)
	t.Logf("node nat table (portmap):\n%s", rules)
	apps := []*app{
		e.addApp(t, e.deployment(t, "hello-otel"), false, true),
		e.addApp(t, e.deployment(t, "hello-otel"), false, true),
		e.addApp(t, e.deployment(t, "checkout"), false, true),
	}

	// A. What any receiver in the agent's place sees.
	col := s.startSink(t, "collector", agent.NS, agentIP)
	tlA := newTally()
	e.sendAll(t, apps, func(*app) []loadSpec { return mix(netns.NodeIP, 4)[:3] }, tlA)
	recs := col.records(t)
	peers := map[string]int{}
	for _, r := range recs {
		peers[r.Peer]++
	}
	if len(recs) == 0 || peers[netns.Gateway.String()] != len(recs) {
		t.Fatalf("collector behind the hostPort: want every peer %v, got %v", netns.Gateway, peers)
	}
	e.row.note("collector behind hostPort saw peer %v for %d/%d resources", netns.Gateway, peers[netns.Gateway.String()], len(recs))
	ct := e.node.Conntrack(grpcPort)
	if !strings.Contains(ct, "src="+apps[0].IPs[0].String()) {
		t.Errorf("conntrack should keep the original source %v:\n%s", apps[0].IPs[0], ct)
	}
	t.Logf("node conntrack (original tuple = the pod, reply tuple = the agent):\n%s", ct)
	col.stop(t)

	// B. podstamp in the agent's place.
	ps := e.startPodstamp(t, podstampOpts{
		ns: agent.NS, listen: agentIP,
		kubeconfig: e.kubeconfig(t, agent.NS, s.cluster.AdminToken()),
		upstream:   e.upstream(t, agent.NS, false).Addr,
	})
	tl := newTally()
	e.sendAll(t, apps, func(*app) []loadSpec { return mix(netns.NodeIP, 10) }, tl)
	id := check(e.sink.records(t), apps, nil)
	lost := e.row.account(tl, id)
	m := ps.metrics(t)
	e.row.note("podstamp: %s", m.enrichSummary())
	if lost != 0 {
		t.Errorf("%d acknowledged resources lost", lost)
	}
	if id.wrong != 0 {
		t.Errorf("%d resources stamped with a wrong identity: %s", id.wrong, strings.Join(id.examples, "\n"))
	}
	if id.correct != 0 {
		t.Errorf("%d resources stamped although the peer is the gateway", id.correct)
	}
	var acked int64
	for _, n := range tl.acked {
		acked += n
	}
	if got := m.enrich("nat_suspected"); got < float64(acked) {
		t.Errorf("podstamp_enrich_total{result=nat_suspected} = %g, want >= %d (every request); all: %s", got, acked, m.enrichSummary())
	}
	if b, _ := os.ReadFile(ps.LogPath()); !strings.Contains(strings.ToLower(string(b)), "hostnetwork") {
		t.Errorf("podstamp did not log the NAT warning naming the fix; log:\n%s", ps.logTail())
	}
}

// ------------------------------------------------------------------ 2

// scenarioHostNetwork is the fix: podstamp with host networking on the
// node address.
func scenarioHostNetwork(t *testing.T, s *suite) {
	e := s.newEnv(t, "2", "hostNetwork on HOST_IP:4317 (the fix)")
	runIdentity(t, e, "")
}

// scenarioHostNetworkGRPCGo is scenario 2 on grpc-go's server and client
// (--grpc-transport grpc --upstream-transport grpc) instead of podstamp's own.
func scenarioHostNetworkGRPCGo(t *testing.T, s *suite) {
	e := s.newEnv(t, "2b", "hostNetwork, --grpc-transport grpc --upstream-transport grpc")
	runIdentity(t, e, "", "--grpc-transport", "grpc", "--upstream-transport", "grpc")
}

// runIdentity runs podstamp on the node address and checks that N app pods
// of two Deployments are stamped right; token "" = admin.
func runIdentity(t *testing.T, e *env, token string, extra ...string) {
	t.Helper()
	ps := e.podstampHostNetwork(t, token, extra...)
	web, worker := e.deployment(t, "web"), e.deployment(t, "worker")
	apps := []*app{
		e.addApp(t, web, false, true), e.addApp(t, web, false, true),
		e.addApp(t, worker, false, true), e.addApp(t, worker, false, true),
	}
	tl := newTally()
	e.sendAll(t, apps, func(*app) []loadSpec { return mix(netns.NodeIP, 10) }, tl)
	id := check(e.sink.records(t), apps, nil)
	lost := e.row.account(tl, id)
	m := ps.metrics(t)
	e.row.note("podstamp: %s", m.enrichSummary())
	expectAllCorrect(t, tl, id, lost)
}

// ------------------------------------------------------------------ 3

// scenarioServiceLocal: podstamp in the pod network behind a ClusterIP
// Service with internalTrafficPolicy: Local (DNAT, no masquerade).
func scenarioServiceLocal(t *testing.T, s *suite) {
	e := s.newEnv(t, "3", "Service, internalTrafficPolicy: Local")
	agent := e.agent(t)
	e.node.ClusterIP(serviceVIP, grpcPort, agentIP, grpcPort)
	rules := e.node.ClusterIP(serviceVIP, httpPort, agentIP, httpPort)
	t.Logf("node nat table (kube-proxy):\n%s", rules)
	ps := e.startPodstamp(t, podstampOpts{
		ns: agent.NS, listen: agentIP,
		kubeconfig: e.kubeconfig(t, agent.NS, s.cluster.AdminToken()),
		upstream:   e.upstream(t, agent.NS, true).Addr,
		protocol:   "http/protobuf",
	})
	web := e.deployment(t, "web")
	apps := []*app{e.addApp(t, web, false, true), e.addApp(t, web, false, true), e.addApp(t, e.deployment(t, "worker"), false, true)}
	tl := newTally()
	e.sendAll(t, apps, func(*app) []loadSpec { return mix(serviceVIP, 10) }, tl)
	id := check(e.sink.records(t), apps, nil)
	lost := e.row.account(tl, id)
	e.row.note("upstream http/protobuf; podstamp: %s", ps.metrics(t).enrichSummary())
	expectAllCorrect(t, tl, id, lost)
}

// ------------------------------------------------------------------ 4

// scenarioStartupRace: the app sends before its Pod object exists; the
// object appears once podstamp holds the requests.
func scenarioStartupRace(t *testing.T, s *suite) {
	e := s.newEnv(t, "4", "start-up race (pod object appears after the first export)")
	ps := e.podstampHostNetwork(t, "")
	a := e.addApp(t, e.deployment(t, "fresh"), false, false)
	tl := newTally()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	specs := []loadSpec{
		{Protocol: "grpc", Encoding: "proto", Signal: "traces", Requests: 5, Target: netns.NodeIP},
		{Protocol: "http", Encoding: "json", Gzip: true, Signal: "logs", Requests: 5, Target: netns.NodeIP},
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(specs))
	sendStart := time.Now()
	for _, sp := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.send(ctx, a, sp, tl); err != nil {
				errs <- err
			}
		}()
	}
	ps.waitMetric(t, "both first requests held", 10*time.Second, func(m metrics) bool {
		return m["podstamp_held_requests"] >= float64(len(specs))
	})
	heldAfter := time.Since(sendStart)
	created := time.Now()
	e.createPodObject(t, a)
	objectAfter := time.Since(created)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	id := check(e.sink.records(t), []*app{a}, nil)
	lost := e.row.account(tl, id)
	m := ps.metrics(t)
	holdSum, holdCount := m.sum("podstamp_hold_duration_seconds_sum"), m.sum("podstamp_hold_duration_seconds_count")
	var maxLat float64
	for _, sum := range tl.sums {
		maxLat = max(maxLat, sum.LatencyMs.Max)
	}
	e.row.note("pod object created %v after the first export (+%v to create and patch); slowest export %.0f ms; hold mean %.0f ms over %g holds; podstamp: %s",
		heldAfter.Round(time.Millisecond), objectAfter.Round(time.Millisecond), maxLat,
		1000*holdSum/max(holdCount, 1), holdCount, m.enrichSummary())
	expectAllCorrect(t, tl, id, lost)
	if m.enrich("hold_hit") < float64(len(specs)) {
		t.Errorf("want >= %d hold_hit, got %s", len(specs), m.enrichSummary())
	}
}

// ------------------------------------------------------------------ 5

// scenarioIPReuse: a pod is deleted and a new pod gets its address, in the
// order a kubelet goes: the new Pod object (with its IP) exists before its
// app sends.
func scenarioIPReuse(t *testing.T, s *suite) {
	e := s.newEnv(t, "5", "IP reuse (new pod on a deleted pod's address)")
	runIPReuse(t, e, false)
}

// scenarioIPReuseEarly is the harder order: the new pod's app sends before
// its Pod status (with the reused IP) reaches the API server, while the old
// pod is deleted but still within --pod-delete-grace.
func scenarioIPReuseEarly(t *testing.T, s *suite) {
	e := s.newEnv(t, "5b", "IP reuse, new app sends before its pod status is known")
	runIPReuse(t, e, true)
}

func runIPReuse(t *testing.T, e *env, early bool) {
	t.Helper()
	ps := e.podstampHostNetwork(t, "")
	old := e.addApp(t, e.deployment(t, "alpha"), false, true)
	ip := old.IPs
	tlOld := newTally()
	e.sendAll(t, []*app{old}, func(*app) []loadSpec {
		return withAttr(mix(netns.NodeIP, 6), "e2e.phase", "old")
	}, tlOld)

	// The old pod goes away: object deleted, sandbox (namespace) removed.
	if err := e.s.cluster.DeletePod(context.Background(), old.Namespace, old.Name); err != nil {
		t.Fatal(err)
	}
	old.net.Delete()

	beta := e.deployment(t, "beta")
	var fresh *app
	tlNew := newTally()
	if !early {
		fresh = e.addAppAt(t, beta, ip, true)
		e.sendAll(t, []*app{fresh}, func(*app) []loadSpec {
			return withAttr(mix(netns.NodeIP, 6), "e2e.phase", "new")
		}, tlNew)
	} else {
		fresh = e.addAppAt(t, beta, ip, false)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		before := ps.metrics(t).sum("podstamp_requests_total{")
		done := make(chan error, 1)
		go func() {
			_, err := e.send(ctx, fresh, loadSpec{Protocol: "grpc", Encoding: "proto", Signal: "traces", Requests: 5,
				Target: netns.NodeIP, Attrs: map[string]string{"e2e.phase": "new"}}, tlNew)
			done <- err
		}()
		// The first export is in podstamp (being stamped or held) before
		// the new pod's object exists.
		ps.waitMetric(t, "first export of the new pod received", 10*time.Second, func(m metrics) bool {
			return m.sum("podstamp_requests_total{") > before || m["podstamp_held_requests"] >= 1
		})
		e.createPodObject(t, fresh)
		if err := <-done; err != nil {
			t.Error(err)
		}
	}

	recs := e.sink.records(t)
	phase := func(p string) func(sink.Record) bool {
		return func(r sink.Record) bool { return r.Attributes["e2e.phase"] == p }
	}
	idOld := check(recs, []*app{old}, phase("old"))
	idNew := check(recs, []*app{fresh}, phase("new"))
	lostOld := e.row.account(tlOld, idOld)
	lostNew := e.row.account(tlNew, idNew)
	e.row.note("old pod: %d/%d right; new pod: %d/%d right, %d with the old identity; podstamp: %s",
		idOld.correct, idOld.received, idNew.correct, idNew.received, idNew.wrong, ps.metrics(t).enrichSummary())
	expectAllCorrect(t, tlOld, idOld, lostOld)
	expectAllCorrect(t, tlNew, idNew, lostNew)
}

func withAttr(specs []loadSpec, k, v string) []loadSpec {
	for i := range specs {
		specs[i].Attrs = map[string]string{k: v}
	}
	return specs
}

// ------------------------------------------------------------------ 6

// scenarioUpstreamOutage: the sink goes away mid-run (its port refuses
// connections, the process is killed) and a new one comes back on the same
// port.
func scenarioUpstreamOutage(t *testing.T, s *suite) {
	upstreamOutage(t, s.newEnv(t, "6", "upstream outage (sink killed mid-run, restarted)"))
}

// scenarioUpstreamOutageGRPCGo is scenario 6 with grpc-go's client
// (--upstream-transport grpc) towards the upstream.
func scenarioUpstreamOutageGRPCGo(t *testing.T, s *suite) {
	upstreamOutage(t, s.newEnv(t, "6b", "upstream outage, --upstream-transport grpc"), "--upstream-transport", "grpc")
}

func upstreamOutage(t *testing.T, e *env, extra ...string) {
	ps := e.startPodstamp(t, podstampOpts{
		ns: e.node.NS, listen: netns.NodeIP,
		kubeconfig: e.kubeconfig(t, e.node.NS, e.s.cluster.AdminToken()),
		upstream:   e.upstreamOutage(t).Addr,
		extra:      extra,
	})
	web := e.deployment(t, "web")
	apps := []*app{e.addApp(t, web, false, true), e.addApp(t, web, false, true), e.addApp(t, e.deployment(t, "worker"), false, true)}
	tl := newTally()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for _, a := range apps {
		for _, sp := range []loadSpec{
			{Protocol: "grpc", Encoding: "proto", Signal: "traces", Duration: 12 * time.Second, Rate: 10, Target: netns.NodeIP, Allow: true},
			{Protocol: "http", Encoding: "proto", Gzip: true, Signal: "logs", Duration: 12 * time.Second, Rate: 10, Target: netns.NodeIP, Allow: true},
		} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := e.send(ctx, a, sp, tl); err != nil {
					errs <- err
				}
			}()
		}
	}
	// Outage once the sink has data; back once podstamp has refused some.
	first := e.sink
	waitSink(t, first, 60, 20*time.Second)
	e.fwdUp.Down()
	before := first.records(t)
	first.stop(t)
	outage := time.Now()
	ps.waitMetric(t, "upstream errors during the outage", 20*time.Second, func(m metrics) bool {
		return m.sum(`podstamp_requests_total{`) > 0 && sumOutcome(m, "upstream_error") >= 40
	})
	second := first.restart(t, e.s, "sink-restarted")
	if err := e.fwdUp.Up(); err != nil {
		t.Fatal(err)
	}
	down := time.Since(outage)
	// How long podstamp takes to forward again once the upstream is back
	// (its client's reconnect backoff).
	back := time.Now()
	waitSink(t, second, 1, 30*time.Second)
	recovery := time.Since(back)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	after := second.records(t)
	id := check(append(before, after...), apps, nil)
	lost := e.row.account(tl, id)
	var failed int64
	var nonRetryable []string
	for code, n := range tl.fails {
		failed += n
		if !retryable[code] {
			nonRetryable = append(nonRetryable, fmt.Sprintf("%s=%d", code, n))
		}
	}
	e.row.note("outage %v, first export accepted %v after the sink was back; clients got %d errors %v; sink before/after: %d/%d; podstamp: %s",
		down.Round(100*time.Millisecond), recovery.Round(10*time.Millisecond), failed, tl.fails, len(before), len(after), ps.metrics(t).enrichSummary())
	if failed == 0 {
		t.Error("no client saw an error during the outage")
	}
	if len(nonRetryable) > 0 {
		t.Errorf("clients got non-retryable errors during the outage: %v", nonRetryable)
	}
	if lost != 0 {
		t.Errorf("%d acknowledged resources are not at the sink", lost)
	}
	if id.wrong != 0 || id.unstamped != 0 {
		t.Errorf("wrong %d, unstamped %d: %s", id.wrong, id.unstamped, strings.Join(id.examples, "\n"))
	}
	if len(after) == 0 {
		t.Error("nothing reached the restarted sink")
	}
}

// retryable are the OTLP-retryable failures as loadgen names them.
var retryable = map[string]bool{
	"Unavailable": true, "DeadlineExceeded": true, "Aborted": true, "ResourceExhausted": true,
	"http_429": true, "http_502": true, "http_503": true, "http_504": true,
}

func sumOutcome(m metrics, outcome string) float64 {
	var s float64
	for k, v := range m {
		if strings.HasPrefix(k, "podstamp_requests_total{") && strings.Contains(k, `outcome="`+outcome+`"`) {
			s += v
		}
	}
	return s
}

// upstreamOutage forwards the sink into the node namespace and keeps the
// forwarder for Down/Up.
func (e *env) upstreamOutage(t *testing.T) *netns.Forwarder {
	e.fwdUp = e.upstream(t, e.node.NS, false)
	return e.fwdUp
}

// waitSink polls the sink's counters until it has n resources.
func waitSink(t *testing.T, sp *sinkProc, n int64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var st sink.Stats
		sp.getJSON(t, "/stats", &st)
		var got int64
		for _, v := range st.Resources {
			got += v
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sink has %d resources after %v, want %d", got, timeout, n)
		}
		time.Sleep(50 * time.Millisecond) // polling an external process's counters
	}
}

// ------------------------------------------------------------------ 7

// scenarioAPIServerOutage: the API server stops mid-run; known pods keep
// being stamped from the cache; after it returns a new pod resolves.
func scenarioAPIServerOutage(t *testing.T, s *suite) {
	e := s.newEnv(t, "7", "API server outage")
	// A hold long enough to span the informer's reconnect after the outage.
	ps := e.podstampHostNetwork(t, "", "--hold-timeout", "30s")
	web := e.deployment(t, "web")
	known := []*app{e.addApp(t, web, false, true), e.addApp(t, web, false, true)}
	tl := newTally()
	e.sendAll(t, known, func(*app) []loadSpec { return mix(netns.NodeIP, 4)[:2] }, tl)

	if err := s.cluster.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			if err := s.cluster.StartAPIServer(context.Background()); err != nil {
				t.Errorf("restart API server: %v", err)
			}
		}
	})
	tlOut := newTally()
	e.sendAll(t, known, func(*app) []loadSpec {
		return withAttr(mix(netns.NodeIP, 6), "e2e.phase", "outage")
	}, tlOut)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := s.cluster.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	restarted = true
	down := time.Since(stopped)

	// A new pod, created after the API server came back, sends at once.
	newcomer := e.addApp(t, e.deployment(t, "newcomer"), false, true)
	tlNew := newTally()
	sendNew := time.Now()
	e.sendAll(t, []*app{newcomer}, func(*app) []loadSpec { return mix(netns.NodeIP, 4)[:2] }, tlNew)
	firstNew := time.Since(sendNew)

	recs := e.sink.records(t)
	outage := func(r sink.Record) bool { return r.Attributes["e2e.phase"] == "outage" }
	idOut := check(recs, known, outage)
	idAll := check(recs, known, nil)
	idNew := check(recs, []*app{newcomer}, nil)
	lostAll := e.row.account(tl, check(recs, known, func(r sink.Record) bool { return !outage(r) }))
	lostOut := e.row.account(tlOut, idOut)
	lostNew := e.row.account(tlNew, idNew)
	var maxNew float64
	for _, sm := range tlNew.sums {
		maxNew = max(maxNew, sm.LatencyMs.Max)
	}
	m := ps.metrics(t)
	e.row.note("API server down %v; during it %d/%d stamped from cache; new pod after restart %d/%d (slowest export %.0f ms, its sends took %v); watch errors %g; podstamp: %s",
		down.Round(100*time.Millisecond), idOut.correct, idOut.received, idNew.correct, idNew.received, maxNew,
		firstNew.Round(time.Millisecond), m.sum("podstamp_cache_watch_errors_total"), m.enrichSummary())
	_ = idAll
	expectAllCorrect(t, tl, check(recs, known, func(r sink.Record) bool { return !outage(r) }), lostAll)
	expectAllCorrect(t, tlOut, idOut, lostOut)
	expectAllCorrect(t, tlNew, idNew, lostNew)
}

// ------------------------------------------------------------------ 9

// scenarioDualStack: pods with IPv4 and IPv6 addresses; podstamp listens on
// a dual-stack socket; IPv6 senders resolve like IPv4 ones.
func scenarioDualStack(t *testing.T, s *suite) {
	e := s.newEnv(t, "9", "dual stack (IPv6 pod addresses)")
	ps := e.startPodstamp(t, podstampOpts{
		ns: e.node.NS, listen: netip.IPv6Unspecified(),
		kubeconfig: e.kubeconfig(t, e.node.NS, s.cluster.AdminToken()),
		upstream:   e.upstream(t, e.node.NS, false).Addr,
	})
	web := e.deployment(t, "web")
	v6only := e.addApp(t, web, true, true)
	both := e.addApp(t, web, true, true)
	v4 := e.addApp(t, e.deployment(t, "worker"), true, true)
	apps := []*app{v6only, both, v4}
	tl := newTally()
	e.sendAll(t, apps, func(a *app) []loadSpec {
		v6 := func(specs []loadSpec) []loadSpec {
			for i := range specs {
				specs[i].Source, specs[i].Target = a.IPs[1], netns.NodeIP6
			}
			return specs
		}
		switch a {
		case v6only:
			return v6(mix(netns.NodeIP6, 10))
		case both:
			return append(v6(mix(netns.NodeIP6, 5)), mix(netns.NodeIP, 5)...)
		default:
			return mix(netns.NodeIP, 10)
		}
	}, tl)
	recs := e.sink.records(t)
	id := check(recs, apps, nil)
	lost := e.row.account(tl, id)
	var v6n int64
	for src, n := range id.bySource {
		if netip.MustParseAddr(src).Is6() {
			v6n += n
		}
	}
	e.row.note("%d resources sent over IPv6; podstamp: %s", v6n, ps.metrics(t).enrichSummary())
	if v6n == 0 {
		t.Error("no resource arrived from an IPv6 source")
	}
	expectAllCorrect(t, tl, id, lost)
}
