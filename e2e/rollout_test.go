//go:build e2e

package e2e

import (
	"context"
	"net"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/podstamp/podstamp/e2e/netns"
)

// scenarioRollout: a second podstamp binds the same OTLP ports
// (SO_REUSEPORT) while the first still serves; the first gets SIGTERM,
// drains and exits 0. Two pods sending all along see no failure.
func scenarioRollout(t *testing.T, s *suite) {
	rollout(t, s.newEnv(t, "12", "rollout without a gap (SO_REUSEPORT, SIGTERM the old one)"))
}

// scenarioRolloutGRPCGo is scenario 12 with both podstamps on grpc-go's
// server and client (--grpc-transport grpc --upstream-transport grpc): the
// old one's GOAWAY and drain are grpc-go's.
func scenarioRolloutGRPCGo(t *testing.T, s *suite) {
	rollout(t, s.newEnv(t, "12b", "rollout without a gap, --grpc-transport grpc"), "--grpc-transport", "grpc", "--upstream-transport", "grpc")
}

func rollout(t *testing.T, e *env, lean ...string) {
	s := e.s
	// Connections still queued on the closing listener move to the other
	// listener of the port instead of being reset (per network namespace).
	if out, err := exec.Command("ip", "netns", "exec", e.node.NS, "sysctl", "-qw", "net.ipv4.tcp_migrate_req=1").CombinedOutput(); err != nil {
		t.Fatalf("sysctl net.ipv4.tcp_migrate_req=1: %v: %s", err, out)
	}
	kubeconfig := e.kubeconfig(t, e.node.NS, s.cluster.AdminToken())
	upstream := e.upstream(t, e.node.NS, false).Addr
	cc := e.chartDefaults(t)
	if cc.TerminationGrace <= 0 {
		t.Fatal("the chart renders no terminationGracePeriodSeconds")
	}
	opts := func(name, admin string, extra ...string) podstampOpts {
		return podstampOpts{
			ns: e.node.NS, listen: netns.NodeIP, kubeconfig: kubeconfig, upstream: upstream,
			name: name, chart: cc, admin: admin, extra: append(append([]string(nil), lean...), extra...),
		}
	}
	// The old one runs exactly what the chart renders.
	old := e.startPodstamp(t, opts("podstamp-old", ""))
	expectProcessName(t, old.child)

	grpcApp := e.addApp(t, e.deployment(t, "web"), false, true)
	httpApp := e.addApp(t, e.deployment(t, "worker"), false, true)
	const run = 15 * time.Second
	load := map[*app][]loadSpec{
		grpcApp: {
			{Protocol: "grpc", Encoding: "proto", Signal: "traces", Duration: run, Rate: 40, Target: netns.NodeIP, Allow: true},
			{Protocol: "grpc", Encoding: "proto", Gzip: true, Signal: "metrics", Duration: run, Rate: 20, Target: netns.NodeIP, Allow: true},
		},
		httpApp: {
			{Protocol: "http", Encoding: "proto", Signal: "logs", Duration: run, Rate: 40, Target: netns.NodeIP, Allow: true},
			{Protocol: "http", Encoding: "json", Gzip: true, Signal: "traces", Duration: run, Rate: 20, Target: netns.NodeIP, Allow: true},
		},
	}
	tl := newTally()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for a, specs := range load {
		for _, sp := range specs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := e.send(ctx, a, sp, tl); err != nil {
					errs <- err
				}
			}()
		}
	}
	waitSink(t, e.sink, 40, 20*time.Second)

	// The new one binds the same ports while the old one serves.
	started := time.Now()
	// The chart gives the surge pod the same admin and debug ports too
	// (every listener is bound with SO_REUSEPORT), but then a scrape would
	// reach either process: the test reads each one's own metrics, so the
	// new one's admin and debug listeners get ports of their own (same
	// hosts as the chart's).
	admin, _ := cc.flag("admin-listen")
	adminHost, _, err := net.SplitHostPort(admin)
	if err != nil {
		t.Fatalf("the chart's --admin-listen=%s: %v", admin, err)
	}
	fresh := e.startPodstamp(t, opts("podstamp-new", net.JoinHostPort(adminHost, "10293"), "--debug-listen", "127.0.0.1:10294"))
	readyAfter := time.Since(started)
	expectProcessName(t, fresh.child)
	oldServed := old.metrics(t).sum("podstamp_requests_total{")

	term := time.Now()
	// SIGTERM; fails the test if it needed the SIGKILL that the kubelet
	// sends after the chart's terminationGracePeriodSeconds.
	old.stopWithin(t, cc.TerminationGrace)
	drained := time.Since(term)
	if err := old.Err(); err != nil {
		t.Errorf("the old podstamp did not exit 0 after SIGTERM: %v; log:\n%s", err, old.logTail())
	}
	atExit := fresh.metrics(t).sum("podstamp_requests_total{")

	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	newServed := fresh.metrics(t).sum("podstamp_requests_total{")
	id := check(e.sink.records(t), []*app{grpcApp, httpApp}, nil)
	lost := e.row.account(tl, id)
	var failed int64
	for _, n := range tl.fails {
		failed += n
	}
	e.row.note("new podstamp ready %v after start; old drained and exited in %v; requests: old %g before SIGTERM, new %g at the old one's exit, %g at the end; client failures %d %v",
		readyAfter.Round(time.Millisecond), drained.Round(time.Millisecond), oldServed, atExit, newServed, failed, tl.fails)
	if failed != 0 {
		t.Errorf("clients saw %d failed exports during the rollout: %v", failed, tl.fails)
	}
	expectAllCorrect(t, tl, id, lost)
	if newServed <= atExit {
		t.Errorf("the new podstamp served nothing after the old one exited (%g requests at its exit, %g at the end)", atExit, newServed)
	}
	if oldServed == 0 {
		t.Error("the old podstamp served nothing before SIGTERM")
	}
}
