//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	"github.com/podstamp/podstamp/bench/loadgen"
	"github.com/podstamp/podstamp/bench/sink"
	"github.com/podstamp/podstamp/e2e/netns"
)

// Ports of podstamp's admin and debug listeners inside the node namespace.
const (
	adminPort = 10291
	debugPort = 10292
)

// scenarioHostile: senders that lie about who they are, a sender that is
// not on the node, a pod that squats on the hold budget, and the debug
// endpoints seen from the node address.
func scenarioHostile(t *testing.T, s *suite) {
	hostile(t, s.newEnv(t, "10", "hostile senders (impersonation, trusted relay, off-node, hold squatting, debug endpoints)"))
}

// scenarioHostileGRPCGo is scenario 10 on grpc-go's server and client
// (--grpc-transport grpc --upstream-transport grpc).
func scenarioHostileGRPCGo(t *testing.T, s *suite) {
	hostile(t, s.newEnv(t, "10b", "hostile senders, --grpc-transport grpc"), "--grpc-transport", "grpc", "--upstream-transport", "grpc")
}

func hostile(t *testing.T, e *env, extra ...string) {
	batchNS, shopNS, relayNS := e.namespace(t, "batch"), e.namespace(t, "shop"), e.namespace(t, "relay")
	// The chart's default configuration, with one relay trusted: the
	// chart's rules file gets trusted_relays (empty by default), the rest
	// of it and every other flag it renders stay as they are. Its admin
	// listener is on the node address, where the debug probes below look.
	cc := e.chartDefaults(t)
	cc.mergeConfig(t, map[string]any{"trusted_relays": []any{map[string]any{
		"namespaces":   []any{relayNS},
		"pod_selector": map[string]any{"match_labels": map[string]any{"app.kubernetes.io/name": "otel-gateway"}},
	}}})
	// The squatter cancels just before the chart's hold timeout.
	holdTimeout := cc.duration(t, "hold-timeout")
	const holdMaxBytes = 16 << 20
	ps := e.podstampChart(t, cc,
		// Smaller than the chart's 64MiB: small enough that a squatter
		// without a per-peer cap (one 3.5 MiB request and four that fill
		// its eighth) could fill it, which the attack needs to mean
		// anything.
		append([]string{"--hold-max-bytes", strconv.Itoa(holdMaxBytes)}, extra...)...,
	)
	expectProcessName(t, ps.child)

	batch := e.addApp(t, e.deploymentIn(t, batchNS, "nightly-report"), false, true)
	shop := e.addApp(t, e.deploymentIn(t, shopNS, "checkout"), false, true)
	relay := e.addApp(t, e.deploymentIn(t, relayNS, "otel-gateway"), false, true)

	t.Run("impersonation", func(t *testing.T) { hostileImpersonation(t, e, ps, batch, shop, relay) })
	t.Run("off_node", func(t *testing.T) { hostileOffNode(t, e, ps) })
	t.Run("hold_squatter", func(t *testing.T) { hostileHoldSquatter(t, e, ps, batchNS, holdTimeout, holdMaxBytes) })
	t.Run("debug_endpoints", func(t *testing.T) { hostileDebug(t, e, batch) })
}

// claim is a set of resource attributes that name another pod.
type claim struct {
	kind  string
	attrs map[string]string
}

// claimsOf are the four ways a resource can name pod p.
func claimsOf(p *app) []claim {
	return []claim{
		{"uid", map[string]string{"k8s.pod.uid": p.UID}},
		{"ip", map[string]string{"k8s.pod.ip": p.IPs[0].String()}},
		{"name", map[string]string{"k8s.pod.name": p.Name, "k8s.namespace.name": p.Namespace}},
		{"container", map[string]string{"container.id": p.ContainerIDs[0]}},
	}
}

// claimSpecs sends every claim over gRPC, HTTP protobuf (gzip) and HTTP
// JSON; each resource carries e2e.claim=<kind>.
func claimSpecs(claims []claim, requests int) []loadSpec {
	var specs []loadSpec
	for _, c := range claims {
		attrs := maps.Clone(c.attrs)
		attrs["e2e.claim"] = c.kind
		specs = append(specs,
			loadSpec{Protocol: "grpc", Encoding: "proto", Signal: "traces", Requests: requests, Target: netns.NodeIP, Attrs: attrs},
			loadSpec{Protocol: "http", Encoding: "proto", Gzip: true, Signal: "logs", Requests: requests, Target: netns.NodeIP, Attrs: attrs},
			loadSpec{Protocol: "http", Encoding: "json", Signal: "metrics", Requests: requests, Target: netns.NodeIP, Attrs: attrs},
		)
	}
	return specs
}

func hasClaim(r sink.Record) bool { return r.Attributes["e2e.claim"] != "" }

func hostileImpersonation(t *testing.T, e *env, ps *podstampProc, batch, shop, relay *app) {
	claims := claimsOf(shop)
	conflicts := func() float64 { return ps.metrics(t).sum("podstamp_identity_conflicts_total") }

	// An ordinary pod claims to be the shop pod: the connection wins.
	before := conflicts()
	tlBatch := newTally()
	e.sendAll(t, []*app{batch}, func(*app) []loadSpec { return claimSpecs(claims, 3) }, tlBatch)
	rose := conflicts() - before

	// A trusted relay forwards the same claims: the claimed pod wins. Its
	// own data, with no claim, is stamped as the relay.
	tlRelay := newTally()
	e.sendAll(t, []*app{relay}, func(*app) []loadSpec { return claimSpecs(claims, 3) }, tlRelay)
	tlRelayOwn := newTally()
	e.sendAll(t, []*app{relay}, func(*app) []loadSpec {
		return withAttr(mix(netns.NodeIP, 3)[:3], "e2e.relay", "own")
	}, tlRelayOwn)

	recs := e.sink.records(t)
	idBatch := check(recs, []*app{batch}, hasClaim)
	lostBatch := e.row.account(tlBatch, idBatch)
	idRelay := checkAs(recs, relay, shop, hasClaim)
	lostRelay := e.row.account(tlRelay, idRelay)
	idOwn := check(recs, []*app{relay}, func(r sink.Record) bool { return r.Attributes["e2e.relay"] == "own" })
	lostOwn := e.row.account(tlRelayOwn, idOwn)

	var ackedBatch int64
	for _, n := range tlBatch.acked {
		ackedBatch += n
	}
	e.row.note("impersonation: %d/%d claims from %s/%s stamped as itself, identity conflicts +%g; trusted relay: %d/%d claims stamped as the claimed pod, own data %d/%d as itself",
		idBatch.correct, idBatch.received, batch.Namespace, batch.Deployment, rose, idRelay.correct, idRelay.received, idOwn.correct, idOwn.received)

	t.Run("untrusted_sender_stamped_as_itself", func(t *testing.T) {
		expectAllCorrect(t, tlBatch, idBatch, lostBatch)
		expectEveryClaim(t, recs, batch, claims)
		if rose < float64(ackedBatch) {
			t.Errorf("podstamp_identity_conflicts_total rose by %g, want >= %d (one per resource that claimed another pod)", rose, ackedBatch)
		}
	})
	t.Run("trusted_relay_claim_wins", func(t *testing.T) {
		expectAllCorrect(t, tlRelay, idRelay, lostRelay)
		expectEveryClaim(t, recs, relay, claims)
		expectAllCorrect(t, tlRelayOwn, idOwn, lostOwn)
	})
}

// expectEveryClaim asserts that resources of every claim kind sent from a
// arrived, so no kind passes by being absent.
func expectEveryClaim(t *testing.T, recs []sink.Record, a *app, claims []claim) {
	t.Helper()
	got := map[string]int{}
	for _, r := range recs {
		if r.Attributes[loadgen.SourceAttr] == a.IPs[0].String() {
			got[r.Attributes["e2e.claim"]]++
		}
	}
	for _, c := range claims {
		if got[c.kind] == 0 {
			t.Errorf("no resource with the %s claim from %v arrived", c.kind, a.IPs[0])
		}
	}
}

// checkAs checks the resources sent from sender's addresses against the
// identity of pod as (a trusted relay forwarding another pod's data). The
// counts by source stay the sender's, for row.account.
func checkAs(recs []sink.Record, sender, as *app, keep func(sink.Record) bool) identity {
	from := map[string]bool{}
	for _, ip := range sender.IPs {
		from[ip.String()] = true
	}
	var moved []sink.Record
	bySrc := map[string]int64{}
	for _, r := range recs {
		src := r.Attributes[loadgen.SourceAttr]
		if !from[src] || (keep != nil && !keep(r)) {
			continue
		}
		bySrc[src]++
		r.Attributes = maps.Clone(r.Attributes)
		r.Attributes[loadgen.SourceAttr] = as.IPs[0].String()
		moved = append(moved, r)
	}
	id := check(moved, []*app{as}, nil)
	id.bySource = bySrc
	return id
}

// hostileOffNode: a sender beyond the node's eth0 (the "wire" namespace)
// dials the node address. It is refused at once, never held, and nothing
// it sent is forwarded.
func hostileOffNode(t *testing.T, e *env, ps *podstampProc) {
	outsider := &app{Deployment: "off-node", IPs: []netip.Addr{netns.WireIP}, net: &netns.Pod{Name: "wire", NS: e.node.Wire}}
	m0 := ps.metrics(t)
	stop := make(chan struct{})
	sampled := make(chan [2]float64, 1) // max held requests, scrapes
	go func() {
		var mx, n float64
		defer func() { sampled <- [2]float64{mx, n} }()
		for {
			if m, err := ps.scrape(); err == nil {
				mx = max(mx, m["podstamp_held_requests"])
				n++
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond): // sampling a gauge of another process
			}
		}
	}()
	tl := newTally()
	e.sendAll(t, []*app{outsider}, func(*app) []loadSpec {
		return []loadSpec{
			{Protocol: "grpc", Encoding: "proto", Signal: "traces", Requests: 5, Target: netns.NodeIP, Allow: true},
			{Protocol: "grpc", Encoding: "proto", Gzip: true, Signal: "metrics", Requests: 5, Target: netns.NodeIP, Allow: true},
			{Protocol: "http", Encoding: "proto", Signal: "logs", Requests: 5, Target: netns.NodeIP, Allow: true},
			{Protocol: "http", Encoding: "json", Gzip: true, Signal: "traces", Requests: 5, Target: netns.NodeIP, Allow: true},
		}
	}, tl)
	close(stop)
	smp := <-sampled
	m1 := ps.metrics(t)
	id := check(e.sink.records(t), []*app{outsider}, nil)
	e.row.account(tl, id)
	var slowest float64
	for _, sm := range tl.sums {
		slowest = max(slowest, sm.LatencyMs.Max)
	}
	e.row.note("off-node sender %v: %v, slowest answer %.0f ms, held max %g over %g scrapes",
		netns.WireIP, tl.fails, slowest, smp[0], smp[1])

	var acked int64
	for _, n := range tl.acked {
		acked += n
	}
	if acked != 0 {
		t.Errorf("%d exports from off the node were accepted", acked)
	}
	if id.received != 0 {
		t.Errorf("%d resources from off the node reached the upstream", id.received)
	}
	if tl.fails["PermissionDenied"] != 10 || tl.fails["http_403"] != 10 {
		t.Errorf("off-node sender: want 10 PermissionDenied (gRPC) and 10 http_403, got %v", tl.fails)
	}
	if smp[0] != 0 {
		t.Errorf("podstamp_held_requests rose to %g while only the off-node sender sent", smp[0])
	}
	for _, k := range []string{"podstamp_hold_duration_seconds_count", `podstamp_enrich_total{result="hold_hit"}`, `podstamp_enrich_total{result="hold_timeout"}`} {
		if m1.sum(k) != m0.sum(k) {
			t.Errorf("%s went from %g to %g while only the off-node sender sent", k, m0.sum(k), m1.sum(k))
		}
	}
	if slowest >= 1000 {
		t.Errorf("the slowest refusal took %.0f ms: refusals must not wait", slowest)
	}
}

// hostileHoldSquatter: a pod without a Pod object sends large requests to
// be held and cancels each just before the hold times out; meanwhile, in
// every cycle, a new pod whose object is created after it starts sending
// must still be held and stamped. holdMaxBytes is podstamp's
// --hold-max-bytes; the per-peer share is its default, an eighth.
func hostileHoldSquatter(t *testing.T, e *env, ps *podstampProc, ns string, holdTimeout time.Duration, holdMaxBytes int) {
	const (
		cycles    = 6
		squatters = 5               // connections, one request each per cycle
		bigBytes  = 3<<20 + 512<<10 // under the 4 MiB gRPC default
	)
	squatter := e.addApp(t, e.deploymentIn(t, ns, "squatter"), false, false) // its object never exists
	// One request larger than a peer's share of the hold budget, and four
	// that together just fit in it: what a squatter can get held.
	src := squatter.IPs[0].String()
	bodies := [][]byte{payloadOfSize(t, "traces", src, bigBytes)}
	small := payloadOfSize(t, "traces", src, holdMaxBytes/8/(squatters-1)-16<<10)
	for range squatters - 1 {
		bodies = append(bodies, small)
	}
	conns := make([]*grpc.ClientConn, squatters)
	for i := range conns {
		conns[i] = rawGRPCConn(t, squatter.net.NS, netip.AddrPortFrom(netns.NodeIP, grpcPort).String())
	}
	fresh := e.deploymentIn(t, ns, "fresh")
	m0 := ps.metrics(t)
	var apps []*app
	tl := newTally()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var squatterCodes []string
	var heldBySquatter []float64
	var squatterSlowest []time.Duration
	for cycle := range cycles {
		// The squatter fires and cancels shortly before the hold would end.
		sctx, scancel := context.WithCancel(ctx)
		timer := time.AfterFunc(holdTimeout-300*time.Millisecond, scancel)
		var answered atomic.Int32
		var slowest atomic.Int64
		codes := make(chan string, squatters)
		fired := time.Now()
		for i, cc := range conns {
			go func() {
				err := exportRaw(sctx, cc, "traces", bodies[i])
				took := int64(time.Since(fired))
				for {
					old := slowest.Load()
					if took <= old || slowest.CompareAndSwap(old, took) {
						break
					}
				}
				answered.Add(1)
				codes <- status.Code(err).String()
			}()
		}
		// Its requests are held, or answered (a per-peer cap, or the
		// negative cache after an earlier cancel).
		hm := ps.waitMetric(t, "the squatter's requests held or answered", 5*time.Second, func(m metrics) bool {
			return m["podstamp_held_requests"]+float64(answered.Load()) >= squatters
		})
		h := hm["podstamp_held_requests"]
		heldBySquatter = append(heldBySquatter, h)

		// A new pod starts sending before its object exists.
		a := e.addApp(t, fresh, false, false)
		apps = append(apps, a)
		specs := []loadSpec{
			{Protocol: "grpc", Encoding: "proto", Signal: "traces", Requests: 1, Target: netns.NodeIP, Attrs: map[string]string{"e2e.cycle": strconv.Itoa(cycle)}},
			{Protocol: "http", Encoding: "proto", Signal: "logs", Requests: 1, Target: netns.NodeIP, Attrs: map[string]string{"e2e.cycle": strconv.Itoa(cycle)}},
		}
		var wg sync.WaitGroup
		var sent atomic.Int32
		errs := make(chan error, len(specs))
		for _, sp := range specs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer sent.Add(1)
				if _, err := e.send(ctx, a, sp, tl); err != nil {
					errs <- err
				}
			}()
		}
		ps.waitMetric(t, fmt.Sprintf("cycle %d: the new pod's exports held (%g held by the squatter)", cycle, h), 5*time.Second, func(m metrics) bool {
			// The squatter holds at most what it held before and has not
			// had answered since.
			squatting := min(h, float64(squatters-answered.Load()))
			return m["podstamp_held_requests"]-squatting >= float64(len(specs)) || sent.Load() > 0
		})
		if sent.Load() > 0 {
			t.Errorf("cycle %d: an export of the new pod was answered before its Pod object existed (not held)", cycle)
		}
		e.createPodObject(t, a)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("cycle %d: %v", cycle, err)
		}
		for range squatters {
			squatterCodes = append(squatterCodes, <-codes)
		}
		timer.Stop()
		scancel()
		squatterSlowest = append(squatterSlowest, time.Duration(slowest.Load()).Round(10*time.Millisecond))
		// podstamp has seen every cancel (and so negatively cached the
		// squatter) before the next cycle measures what it holds.
		ps.waitMetric(t, fmt.Sprintf("cycle %d: nothing held at its end", cycle), 5*time.Second, func(m metrics) bool {
			return m["podstamp_held_requests"] == 0
		})
	}
	m1 := ps.metrics(t)
	id := check(e.sink.records(t), apps, nil)
	lost := e.row.account(tl, id)
	hits := m1.enrich("hold_hit") - m0.enrich("hold_hit")
	codeCount := map[string]int{}
	for _, c := range squatterCodes {
		codeCount[c]++
	}
	e.row.note("hold squatter (1 x %d KiB + %d x %d KiB per cycle, cancelled %v into each hold): held by it per cycle %v, its slowest answer per cycle %v, its answers %v; new pods: %d/%d stamped, hold_hit +%g",
		len(bodies[0])>>10, squatters-1, len(small)>>10, holdTimeout-300*time.Millisecond, heldBySquatter, squatterSlowest, codeCount, id.correct, id.received, hits)
	expectAllCorrect(t, tl, id, lost)
	// The attack is real only if the squatter got held at first; having
	// cancelled while held, it is not held again (negative cache).
	if heldBySquatter[0] == 0 {
		t.Errorf("the squatter was never held in the first cycle (%v): the attack did not reach the hold", heldBySquatter)
	}
	for c, h := range heldBySquatter[1:] {
		if h != 0 {
			t.Errorf("cycle %d: %g of the squatter's requests held after it cancelled held requests (negative cache)", c+1, h)
		}
	}
	// Not held, its requests are answered at once (forwarded or refused):
	// none may sit unanswered until the client gives up.
	for c, d := range squatterSlowest[1:] {
		if d >= holdTimeout-300*time.Millisecond {
			t.Errorf("cycle %d: a request of the (negatively cached, so never held) squatter went unanswered until it cancelled it after %v; slowest answer per cycle %v",
				c+1, d, squatterSlowest)
		}
	}
	if want := float64(cycles * 2); hits < want {
		t.Errorf("hold_hit rose by %g over %d cycles, want >= %g (every new pod's first exports)", hits, cycles, want)
	}
	perCycle := map[string]int{}
	for _, r := range e.sink.records(t) {
		if c := r.Attributes["e2e.cycle"]; c != "" && r.Attributes["k8s.pod.uid"] != "" {
			perCycle[c]++
		}
	}
	for c := range cycles {
		if perCycle[strconv.Itoa(c)] < 2 {
			t.Errorf("cycle %d: %d stamped resources of the new pod, want 2", c, perCycle[strconv.Itoa(c)])
		}
	}
}

// hostileDebug: the pod cache dump is served on loopback only.
func hostileDebug(t *testing.T, e *env, known *app) {
	c := httpIn(e.node.NS)
	node := netns.NodeIP.String()
	// The debug listener is not on the node address at all.
	_, err := c.Get("http://" + net.JoinHostPort(node, strconv.Itoa(debugPort)) + "/debug/pods")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("GET /debug/pods on %s:%d: want connection refused, got %v", node, debugPort, err)
	}
	wire := httpIn(e.node.Wire)
	_, err = wire.Get("http://" + net.JoinHostPort(node, strconv.Itoa(debugPort)) + "/debug/pods")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("GET /debug/pods on %s:%d from off the node: want connection refused, got %v", node, debugPort, err)
	}
	// The admin listener (on the node address, as the chart puts it) does
	// not serve it.
	code, _, err := get(c, "http://"+net.JoinHostPort(node, strconv.Itoa(adminPort))+"/debug/pods")
	if err != nil || code != http.StatusNotFound {
		t.Errorf("GET /debug/pods on the admin port %s:%d: want 404, got %d %v", node, adminPort, code, err)
	}
	if code, _, err := get(c, "http://"+net.JoinHostPort(node, strconv.Itoa(adminPort))+"/metrics"); err != nil || code != http.StatusOK {
		t.Errorf("GET /metrics on the admin port: want 200, got %d %v", code, err)
	}
	// On loopback inside the node it answers, and knows the pods.
	code, body, err := get(c, "http://127.0.0.1:"+strconv.Itoa(debugPort)+"/debug/pods")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /debug/pods on 127.0.0.1:%d: want 200, got %d %v", debugPort, code, err)
	}
	if !strings.Contains(body, known.Name) {
		t.Errorf("/debug/pods on loopback does not list pod %s:\n%.2000s", known.Name, body)
	}
	e.row.note("/debug/pods: refused on %s:%d, 404 on the admin port, 200 on 127.0.0.1:%d", node, debugPort, debugPort)
}

func get(c *http.Client, url string) (int, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// expectProcessName asserts that the process is findable by its name, as an
// operator would look for it (pgrep -x podstamp), and that /proc agrees.
func expectProcessName(t *testing.T, c *child) {
	t.Helper()
	pid := strconv.Itoa(c.PID())
	comm, err := os.ReadFile("/proc/" + pid + "/comm")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(comm)); got != "podstamp" {
		t.Errorf("/proc/%s/comm = %q, want \"podstamp\"", pid, got)
	}
	out, err := exec.Command("pgrep", "-x", "podstamp").Output()
	if err != nil {
		t.Errorf("pgrep -x podstamp: %v (%q)", err, out)
	}
	if !strings.Contains(" "+strings.Join(strings.Fields(string(out)), " ")+" ", " "+pid+" ") {
		t.Errorf("pgrep -x podstamp = %q, does not list PID %s", out, pid)
	}
}

// ---------------------------------------------------------------- raw gRPC

// rawCodec moves already encoded OTLP protobuf bytes (*[]byte).
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("rawCodec: cannot marshal %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(*b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: cannot unmarshal into %T", v)
	}
	*b = data.Materialize()
	return nil
}

var _ encoding.CodecV2 = rawCodec{}

var exportMethod = map[string]string{
	"traces":  "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
	"metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
	"logs":    "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}

// rawGRPCConn is a gRPC client connection made from inside namespace ns;
// cleanup closes it.
func rawGRPCConn(t *testing.T, ns, target string) *grpc.ClientConn {
	t.Helper()
	dial := netns.DialContext(ns)
	cc, err := grpc.NewClient("passthrough:///"+target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return dial(ctx, "tcp", addr)
		}),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func exportRaw(ctx context.Context, cc *grpc.ClientConn, signal string, body []byte) error {
	var resp []byte
	return cc.Invoke(ctx, exportMethod[signal], &body, &resp)
}

// payloadOfSize builds an OTLP protobuf export request of about size bytes.
func payloadOfSize(t *testing.T, signal, source string, size int) []byte {
	t.Helper()
	return sizedPayload(t, loadgen.PayloadSpec{Signal: signal, Attrs: 8, Source: source}, size)
}

// sizedPayload builds the request spec describes with as many items as
// keep it at or just under size bytes.
func sizedPayload(t *testing.T, spec loadgen.PayloadSpec, size int) []byte {
	t.Helper()
	build := func(items int) []byte {
		spec.Items = items
		b, err := loadgen.BuildPayload(spec)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	probe := build(256)
	items := max(1, 256*size/len(probe))
	b := build(items)
	for len(b) > size && items > 1 {
		items = items * 97 / 100
		b = build(items)
	}
	return b
}
