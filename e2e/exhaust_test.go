//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"

	"github.com/podstamp/podstamp/bench/loadgen"
	"github.com/podstamp/podstamp/e2e/netns"
)

// The exhaustion scenario's memory limit; the chart renders GOMEMLIMIT
// from it (resources.limits.memory).
const memLimit = 128 << 20

// scenarioExhaustion: podstamp in a 128 MiB memory cgroup while a hostile
// pod throws every cheap resource attack at it and a legitimate pod keeps
// exporting.
func scenarioExhaustion(t *testing.T, s *suite) {
	exhaustion(t, s, "11", "exhaustion under a 128 MiB memory limit")
}

// scenarioExhaustionGRPCGo is scenario 11 on grpc-go's server and client
// (--grpc-transport grpc --upstream-transport grpc).
func scenarioExhaustionGRPCGo(t *testing.T, s *suite) {
	exhaustion(t, s, "11b", "exhaustion under a 128 MiB memory limit, --grpc-transport grpc", "--grpc-transport", "grpc", "--upstream-transport", "grpc")
}

func exhaustion(t *testing.T, s *suite, num, title string, extra ...string) {
	bin := s.buildNoRace(t)
	e := s.newEnv(t, num, title)
	begin := time.Now()
	cg := newMemCgroup(t, "podstamp-e2e-"+s.prefix+"-"+num, memLimit)
	// The chart's default configuration for a 128Mi container: it derives
	// GOMEMLIMIT from resources.limits.memory (the request is set to the
	// same, as the chart's default keeps them equal).
	cc := e.chartDefaults(t, "resources.limits.memory=128Mi", "resources.requests.memory=128Mi")
	goMemLimit := cc.goMemLimit(t)
	if goMemLimit <= 0 || goMemLimit >= memLimit {
		t.Fatalf("the chart's GOMEMLIMIT %d for a %d byte limit is not below the limit", goMemLimit, memLimit)
	}
	ps := e.startPodstamp(t, podstampOpts{
		ns: e.node.NS, listen: netns.NodeIP, chart: cc,
		kubeconfig: e.kubeconfig(t, e.node.NS, s.cluster.AdminToken()),
		upstream:   e.upstream(t, e.node.NS, false).Addr,
		bin:        bin,
		wrap:       cg.wrap(),
		extra:      extra,
	})
	pid := ps.PID()
	if !cg.has(t, pid) {
		t.Fatalf("podstamp (PID %d) is not in cgroup %s", pid, cg.dir)
	}
	raiseNoFile(t, 19000)

	legit := e.addApp(t, e.deployment(t, "web"), false, true)
	// Three hostile pods, so each attack class gets a peer's full share
	// (per-peer caps) and together they reach for the global budgets:
	// connections and slowness; bombs and JSON; concurrent streams.
	hostile := e.addApp(t, e.deployment(t, "hammer"), false, true)
	bomber := e.addApp(t, e.deployment(t, "hammer"), false, true)
	streamer := e.addApp(t, e.deployment(t, "hammer"), false, true)

	// Every payload is built before the clock starts.
	bomb := gzipBomb(t, 1<<30)
	oneMiB := payloadOfSize(t, "traces", streamer.IPs[0].String(), 1<<20)
	jsonSizes := []int{1 << 20, 2 << 20, 4<<20 - 1024, 8<<20 - 1024, 20<<20 - 1024}
	jsonBodies := make([][]byte, len(jsonSizes))
	for i, n := range jsonSizes {
		jsonBodies[i] = jsonPayloadOfSize(t, bomber.IPs[0].String(), n)
	}
	t.Logf("payloads: gzip bomb %d KiB (1 GiB inflated), 1 MiB protobuf, JSON %v bytes", len(bomb)>>10, jsonSizes)

	const (
		attackWindow = 30 * time.Second
		legitRun     = attackWindow + 8*time.Second
	)
	tl := newTally()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var legitWG sync.WaitGroup
	legitErrs := make(chan error, 2)
	for _, sp := range []loadSpec{
		{Protocol: "grpc", Encoding: "proto", Signal: "traces", Duration: legitRun, Rate: 10, Target: netns.NodeIP, Allow: true},
		{Protocol: "http", Encoding: "proto", Gzip: true, Signal: "logs", Duration: legitRun, Rate: 10, Target: netns.NodeIP, Allow: true},
	} {
		legitWG.Add(1)
		go func() {
			defer legitWG.Done()
			if _, err := e.send(ctx, legit, sp, tl); err != nil {
				legitErrs <- err
			}
		}()
	}
	waitSink(t, e.sink, 2, 20*time.Second)

	// The attacks, all at once, from the hostile pods.
	newHammer := func(a *app) *hammer {
		h := &hammer{ns: a.net.NS, grpcAddr: netip.AddrPortFrom(netns.NodeIP, grpcPort).String(),
			httpAddr: netip.AddrPortFrom(netns.NodeIP, httpPort).String(), results: map[string]map[string]int{}}
		t.Cleanup(h.close)
		return h
	}
	h, hb, hs := newHammer(hostile), newHammer(bomber), newHammer(streamer)
	actx, acancel := context.WithTimeout(ctx, attackWindow)
	defer acancel()
	attacks := []struct {
		name string
		fn   func(context.Context)
	}{
		{"lying_content_length", func(ctx context.Context) { h.lyingContentLength(ctx, 1000, 19<<20) }},
		{"gzip_bomb_http", func(ctx context.Context) { hb.gzipBombHTTP(ctx, bomb, 24, 4) }},
		{"gzip_bomb_grpc", func(ctx context.Context) { hb.gzipBombGRPC(ctx, bomb, 24, 4) }},
		{"json_max", func(ctx context.Context) { hb.jsonBodies(ctx, jsonBodies, 6) }},
		{"idle_connections", func(ctx context.Context) { h.idle(ctx, 10000) }},
		{"slowloris_headers", func(ctx context.Context) { h.slowHeaders(ctx, 100) }},
		{"slowloris_body", func(ctx context.Context) { h.slowBody(ctx, 100) }},
		{"slowloris_grpc", func(ctx context.Context) { h.slowGRPC(ctx, 50) }},
		{"grpc_streams", func(ctx context.Context) { hs.grpcStreams(ctx, oneMiB, 1000) }},
	}
	var wg sync.WaitGroup
	for _, a := range attacks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.fn(actx)
		}()
	}
	wg.Wait()
	acancel()
	for _, x := range []*hammer{h, hb, hs} {
		x.close()
	}
	attacksDone := time.Since(begin)

	legitWG.Wait()
	close(legitErrs)
	for err := range legitErrs {
		t.Error(err)
	}

	// podstamp is still the same process, alive, ready, never OOM-killed.
	alive := !ps.Exited()
	if !alive {
		t.Errorf("podstamp (PID %d) died: %v; log:\n%s", pid, ps.Err(), ps.logTail())
	}
	ready := false
	if alive {
		code, _, err := get(ps.client, "http://"+ps.admin+"/readyz")
		ready = err == nil && code == http.StatusOK
		if !ready {
			t.Errorf("podstamp /readyz after the attacks: %d %v", code, err)
		}
		if !cg.has(t, pid) {
			t.Errorf("PID %d is no longer in the cgroup", pid)
		}
	}
	peak := cg.int(t, "memory.max_usage_in_bytes")
	failcnt := cg.int(t, "memory.failcnt")
	oomKills := cg.oomKills(t)
	hwm := vmHWM(pid)
	m, _ := ps.scrape()

	recs := e.sink.records(t)
	id := check(recs, []*app{legit}, nil)
	lost := e.row.account(tl, id)
	var failed int64
	var nonRetryable []string
	for code, n := range tl.fails {
		failed += n
		if !retryable[code] {
			nonRetryable = append(nonRetryable, fmt.Sprintf("%s=%d", code, n))
		}
	}
	var acked int64
	for _, n := range tl.acked {
		acked += n
	}
	e.row.note("peak cgroup memory %.1f MiB of %d MiB (GOMEMLIMIT %.1f MiB, non-race build), podstamp VmHWM %.1f MiB, failcnt %d, oom_kill %d",
		mib(peak), memLimit>>20, mib(goMemLimit), mib(hwm), failcnt, oomKills)
	var perRun []string
	for _, sm := range tl.sums {
		perRun = append(perRun, fmt.Sprintf("%s %d/%d acked %v", sm.Protocol, sm.Acked, sm.Sent, sm.FailedByCode))
	}
	sort.Strings(perRun)
	e.row.note("legitimate pod: %d acked, %d rejected %v (%s)", acked, failed, tl.fails, strings.Join(perRun, "; "))
	e.row.note("attacks (answers seen by the attackers): %s; %s; %s", h.summary(), hb.summary(), hs.summary())
	e.row.note("podstamp: %s, rejections %s", m.enrichSummary(), rejectSummary(m))
	e.row.note("attacks over %v after start-up", attacksDone.Round(time.Second))

	if oomKills != 0 {
		t.Errorf("the cgroup's oom_control reports %d OOM kills", oomKills)
	}
	if peak >= memLimit {
		t.Errorf("peak cgroup memory %d bytes reached the limit %d (failcnt %d)", peak, memLimit, failcnt)
	}
	if hwm >= memLimit {
		t.Errorf("podstamp's peak RSS %d bytes reached the limit %d", hwm, memLimit)
	}
	if acked == 0 {
		t.Error("the legitimate pod got no export through")
	}
	if len(nonRetryable) > 0 {
		t.Errorf("the legitimate pod got non-retryable failures: %v", nonRetryable)
	}
	if lost != 0 {
		t.Errorf("%d exports acknowledged to the legitimate pod are missing at the sink", lost)
	}
	if id.wrong != 0 || id.unstamped != 0 {
		t.Errorf("legitimate pod: %d stamped wrongly, %d unstamped: %s", id.wrong, id.unstamped, strings.Join(id.examples, "\n"))
	}
	if d := time.Since(begin); d > 3*time.Minute {
		t.Errorf("the scenario took %v, want < 3m", d)
	}
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// rejectSummary lists podstamp's non-zero request outcomes other than ok.
func rejectSummary(m metrics) string {
	var parts []string
	for k, v := range m {
		if strings.HasPrefix(k, "podstamp_requests_total{") && v > 0 && !strings.Contains(k, `outcome="ok"`) {
			parts = append(parts, fmt.Sprintf("%s=%g", strings.TrimPrefix(k, "podstamp_requests_total"), v))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// buildNoRace builds podstamp without the race detector, once: its shadow
// memory would dwarf what the memory limit is there to measure. It is
// still named podstamp.
func (s *suite) buildNoRace(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(s.binDir, "norace", "podstamp")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/podstamp")
	cmd.Dir = s.root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build podstamp: %v\n%s", err, out)
	}
	t.Logf("built %s (no race detector) in %v", bin, time.Since(start).Round(time.Millisecond))
	return bin
}

// raiseNoFile raises this process's open-file soft limit to n (at most the
// hard limit); children started afterwards inherit it.
func raiseNoFile(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	old := lim
	lim.Cur = min(n, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}

// vmHWM is the process's peak resident set size in bytes (0 if unknown).
func vmHWM(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// ---------------------------------------------------------------- cgroup

// memCgroup is a cgroup v1 memory cgroup the test created.
type memCgroup struct{ dir string }

// newMemCgroup creates /sys/fs/cgroup/memory/<name> with the limit;
// cleanup removes it (after the processes in it, which are stopped by
// cleanups registered later).
func newMemCgroup(t *testing.T, name string, limit int64) *memCgroup {
	t.Helper()
	root := "/sys/fs/cgroup/memory"
	if _, err := os.Stat(filepath.Join(root, "memory.limit_in_bytes")); err != nil {
		t.Skipf("needs the cgroup v1 memory controller at %s: %v", root, err)
	}
	cg := &memCgroup{dir: filepath.Join(root, name)}
	if err := os.Mkdir(cg.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The kernel may take a moment to release a cgroup whose last task
		// just exited.
		var err error
		for i := 0; i < 50; i++ {
			if err = os.Remove(cg.dir); err == nil || os.IsNotExist(err) {
				return
			}
			time.Sleep(20 * time.Millisecond) // no event for an emptied cgroup in v1
		}
		t.Errorf("cleanup: remove cgroup %s: %v", cg.dir, err)
	})
	for _, kv := range [][2]string{
		{"memory.limit_in_bytes", strconv.FormatInt(limit, 10)},
		{"memory.swappiness", "0"},
	} {
		if err := os.WriteFile(filepath.Join(cg.dir, kv[0]), []byte(kv[1]), 0o644); err != nil {
			t.Fatalf("cgroup %s: %v", kv[0], err)
		}
	}
	return cg
}

// wrap is a command prefix that moves itself into the cgroup and execs the
// rest of the command line: the program is charged from its first page.
func (cg *memCgroup) wrap() []string {
	return []string{"sh", "-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, cg.dir}
}

func (cg *memCgroup) has(t *testing.T, pid int) bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cg.dir, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Fields(string(b)) {
		if f == strconv.Itoa(pid) {
			return true
		}
	}
	return false
}

func (cg *memCgroup) int(t *testing.T, file string) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cg.dir, file))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("cgroup %s: %v", file, err)
	}
	return n
}

// oomKills reads oom_kill from memory.oom_control.
func (cg *memCgroup) oomKills(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cg.dir, "memory.oom_control"))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "oom_kill" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	t.Fatalf("no oom_kill in memory.oom_control:\n%s", b)
	return 0
}

// ---------------------------------------------------------------- payloads

// gzipBomb returns gzip data that inflates to n zero bytes: one member
// for 64 MiB, repeated (a gzip stream may hold several members).
func gzipBomb(t *testing.T, n int) []byte {
	t.Helper()
	const chunk = 64 << 20
	var one bytes.Buffer
	zw, err := gzip.NewWriterLevel(&one, gzip.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 1<<20)
	for i := 0; i < chunk/len(zeros); i++ {
		if _, err := zw.Write(zeros); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return bytes.Repeat(one.Bytes(), max(1, n/chunk))
}

// jsonPayloadOfSize builds an OTLP/JSON traces request of about size bytes.
func jsonPayloadOfSize(t *testing.T, source string, size int) []byte {
	t.Helper()
	return sizedPayload(t, loadgen.PayloadSpec{Signal: "traces", Attrs: 8, Source: source, JSON: true}, size)
}

// grpcFrame is a gRPC length-prefixed message.
func grpcFrame(compressed bool, msg []byte) []byte {
	b := make([]byte, 5, 5+len(msg))
	if compressed {
		b[0] = 1
	}
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	return append(b, msg...)
}

// ---------------------------------------------------------------- attacks

// hammer runs the attacks from one namespace and tallies the answers.
type hammer struct {
	ns                 string
	grpcAddr, httpAddr string

	mu      sync.Mutex
	results map[string]map[string]int // attack -> outcome -> count
	conns   []net.Conn
	closers []func()
	closed  bool
}

func (h *hammer) record(attack, outcome string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.results[attack] == nil {
		h.results[attack] = map[string]int{}
	}
	h.results[attack][outcome]++
}

// keep tracks a connection for close; false if the hammer is closed.
func (h *hammer) keep(c net.Conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		c.Close()
		return false
	}
	h.conns = append(h.conns, c)
	return true
}

// close closes every connection the attacks opened and left open.
func (h *hammer) close() {
	h.mu.Lock()
	conns, closers := h.conns, h.closers
	h.conns, h.closers, h.closed = nil, nil, true
	h.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	for _, f := range closers {
		f()
	}
}

func (h *hammer) summary() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	names := make([]string, 0, len(h.results))
	for n := range h.results {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		var outs []string
		for o, c := range h.results[n] {
			outs = append(outs, fmt.Sprintf("%s=%d", o, c))
		}
		sort.Strings(outs)
		parts = append(parts, n+" {"+strings.Join(outs, " ")+"}")
	}
	return strings.Join(parts, ", ")
}

// dialMany opens n connections to addr from inside the namespace with
// workers threads (each stays in the namespace for all its dials) and
// hands each to fn; it stops early when ctx ends.
func (h *hammer) dialMany(ctx context.Context, attack, addr string, n, workers int, fn func(net.Conn)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = netns.Do(h.ns, func() error {
				d := net.Dialer{Timeout: 2 * time.Second}
				for next.Add(1) <= int64(n) && ctx.Err() == nil {
					c, err := d.DialContext(ctx, "tcp", addr)
					if err != nil {
						h.record(attack, "dial_error")
						continue
					}
					if !h.keep(c) {
						return nil
					}
					fn(c)
				}
				return nil
			})
		}()
	}
	wg.Wait()
}

// outcome tells what the server did with a connection, without waiting:
// answered (the HTTP status line), closed, or still open.
func outcome(c net.Conn) string {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return "unknown"
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return "unknown"
	}
	var n int
	var rerr error
	buf := make([]byte, 64)
	if err := rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return true // never wait for readiness
	}); err != nil {
		return "closed"
	}
	switch {
	case errors.Is(rerr, unix.EAGAIN):
		return "still_open"
	case rerr != nil:
		return "closed" // reset
	case n == 0:
		return "closed"
	}
	if line := string(buf[:n]); strings.HasPrefix(line, "HTTP/1.1 ") && len(line) >= 12 {
		return "http_" + line[9:12]
	}
	return "answered"
}

// lyingContentLength: n requests whose headers promise claimed bytes of
// body that never come.
func (h *hammer) lyingContentLength(ctx context.Context, n, claimed int) {
	head := fmt.Sprintf("POST /v1/traces HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-protobuf\r\nContent-Length: %d\r\n\r\n", h.httpAddr, claimed)
	var conns []net.Conn
	var mu sync.Mutex
	h.dialMany(ctx, "lying_content_length", h.httpAddr, n, 8, func(c net.Conn) {
		_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.WriteString(c, head); err != nil {
			h.record("lying_content_length", "write_error")
			return
		}
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	})
	<-ctx.Done()
	for _, c := range conns {
		h.record("lying_content_length", outcome(c))
	}
}

func (h *hammer) httpClient() *http.Client {
	tr := &http.Transport{DialContext: netns.DialContext(h.ns), DisableCompression: true, MaxIdleConnsPerHost: 16}
	h.mu.Lock()
	h.closers = append(h.closers, tr.CloseIdleConnections)
	h.mu.Unlock()
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// h2Client speaks gRPC's HTTP/2 (h2c) itself, to send frames grpc-go would
// not: precompressed bombs, half-sent messages.
func (h *hammer) h2Client() *http.Client {
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true) // h2c with prior knowledge, as gRPC speaks it
	tr := &http.Transport{DialContext: netns.DialContext(h.ns), DisableCompression: true, Protocols: &protos}
	h.mu.Lock()
	h.closers = append(h.closers, tr.CloseIdleConnections)
	h.mu.Unlock()
	return &http.Client{Transport: tr}
}

// postHTTP sends one request and returns its outcome.
func postHTTP(ctx context.Context, c *http.Client, url, contentType string, gz bool, body io.Reader) string {
	hdr := [][2]string{{"Content-Type", contentType}}
	if gz {
		hdr = append(hdr, [2]string{"Content-Encoding", "gzip"})
	}
	resp, outcome := post(ctx, c, url, hdr, body)
	if resp == nil {
		return outcome
	}
	return "http_" + strconv.Itoa(resp.StatusCode)
}

// postGRPC sends one raw gRPC export and returns its outcome.
func postGRPC(ctx context.Context, c *http.Client, addr string, gz bool, body io.Reader) string {
	hdr := [][2]string{{"Content-Type", "application/grpc"}, {"Te", "trailers"}}
	if gz {
		hdr = append(hdr, [2]string{"Grpc-Encoding", "gzip"})
	}
	resp, outcome := post(ctx, c, "http://"+addr+exportMethod["traces"], hdr, body)
	if resp == nil {
		return outcome
	}
	if resp.StatusCode != http.StatusOK {
		return "http_" + strconv.Itoa(resp.StatusCode)
	}
	st := resp.Trailer.Get("Grpc-Status")
	if st == "" {
		st = resp.Header.Get("Grpc-Status")
	}
	n, err := strconv.Atoi(st)
	if err != nil {
		return "no_grpc_status"
	}
	return codes.Code(n).String()
}

// post sends one POST with hdr. It returns the response, its body read (so
// its trailers are in) and closed, or nil and the outcome when the request
// never got an answer.
func post(ctx context.Context, c *http.Client, url string, hdr [][2]string, body io.Reader) (*http.Response, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, body)
	if err != nil {
		return nil, "request_error"
	}
	for _, kv := range hdr {
		req.Header.Set(kv[0], kv[1])
	}
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, "cancelled"
		}
		return nil, "transport_error"
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return resp, ""
}

// parallel runs fn n times, at most conc at once, until ctx ends.
func parallel(ctx context.Context, n, conc int, fn func(i int)) {
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for i := 0; i < n && ctx.Err() == nil; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(i)
		}()
	}
	wg.Wait()
}

func (h *hammer) gzipBombHTTP(ctx context.Context, bomb []byte, n, conc int) {
	c := h.httpClient()
	parallel(ctx, n, conc, func(int) {
		h.record("gzip_bomb_http", postHTTP(ctx, c, "http://"+h.httpAddr+"/v1/traces", "application/x-protobuf", true, bytes.NewReader(bomb)))
	})
}

func (h *hammer) gzipBombGRPC(ctx context.Context, bomb []byte, n, conc int) {
	c := h.h2Client()
	frame := grpcFrame(true, bomb)
	parallel(ctx, n, conc, func(int) {
		h.record("gzip_bomb_grpc", postGRPC(ctx, c, h.grpcAddr, true, bytes.NewReader(frame)))
	})
}

// jsonBodies keeps conc senders per body size busy for the whole window,
// as an attacker that retries would: a refusal to retry (429, 503, a
// dropped connection) is retried after a pause, an acceptance is repeated;
// a final answer (413) ends that sender.
func (h *hammer) jsonBodies(ctx context.Context, bodies [][]byte, conc int) {
	c := h.httpClient()
	var wg sync.WaitGroup
	for _, b := range bodies {
		name := fmt.Sprintf("json_%dKiB", len(b)>>10)
		for range conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					out := postHTTP(ctx, c, "http://"+h.httpAddr+"/v1/traces", "application/json", false, bytes.NewReader(b))
					if out == "cancelled" {
						return
					}
					h.record(name, out)
					if out == "http_413" || out == "http_400" {
						return
					}
					select {
					case <-ctx.Done():
					case <-time.After(100 * time.Millisecond): // the attacker's pace
					}
				}
			}()
		}
	}
	wg.Wait()
}

// idle opens n connections, half to each listener, and sends nothing.
func (h *hammer) idle(ctx context.Context, n int) {
	var conns []net.Conn
	var mu sync.Mutex
	collect := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for _, addr := range []string{h.grpcAddr, h.httpAddr} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.dialMany(ctx, "idle_connections", addr, n/2, 8, collect)
		}()
	}
	wg.Wait()
	<-ctx.Done()
	for _, c := range conns {
		h.record("idle_connections", outcome(c))
	}
}

// trickle writes one byte of b every interval until b is sent, the server
// closes, or ctx ends; it records how the connection ended.
func (h *hammer) trickle(ctx context.Context, attack string, c net.Conn, b []byte, interval time.Duration) {
	start := time.Now()
	t := time.NewTicker(interval)
	defer t.Stop()
	for i := 0; i < len(b); i++ {
		_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write(b[i : i+1]); err != nil {
			h.record(attack, fmt.Sprintf("closed_by_server_%ds", bucket(time.Since(start))))
			return
		}
		select {
		case <-ctx.Done():
			h.record(attack, outcome(c))
			return
		case <-t.C:
		}
	}
	h.record(attack, outcome(c))
}

// bucket rounds a duration to a coarse bucket of seconds for the report.
func bucket(d time.Duration) int {
	for _, b := range []int{1, 2, 5, 10, 15, 20, 30} {
		if d <= time.Duration(b)*time.Second {
			return b
		}
	}
	return 60
}

func (h *hammer) slowHeaders(ctx context.Context, n int) {
	req := []byte(fmt.Sprintf("POST /v1/traces HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-protobuf\r\nX-Padding: %s\r\nContent-Length: 2\r\n\r\n\n\x00", h.httpAddr, strings.Repeat("a", 200)))
	var wg sync.WaitGroup
	h.dialMany(ctx, "slowloris_headers", h.httpAddr, n, 4, func(c net.Conn) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.trickle(ctx, "slowloris_headers", c, req, 500*time.Millisecond)
		}()
	})
	wg.Wait()
}

func (h *hammer) slowBody(ctx context.Context, n int) {
	head := fmt.Sprintf("POST /v1/traces HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-protobuf\r\nContent-Length: %d\r\n\r\n", h.httpAddr, 1<<20)
	body := bytes.Repeat([]byte{0}, 1<<20)
	var wg sync.WaitGroup
	h.dialMany(ctx, "slowloris_body", h.httpAddr, n, 4, func(c net.Conn) {
		_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.WriteString(c, head); err != nil {
			h.record("slowloris_body", "write_error")
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.trickle(ctx, "slowloris_body", c, body, 500*time.Millisecond)
		}()
	})
	wg.Wait()
}

// slowGRPC opens streams that announce a 1 MiB message and send it one
// byte per half second.
func (h *hammer) slowGRPC(ctx context.Context, n int) {
	c := h.h2Client()
	// A frame header announcing 1 MiB, then the message.
	msg := grpcFrame(false, make([]byte, 1<<20))
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pr, pw := io.Pipe()
			writer := make(chan struct{})
			go func() {
				defer close(writer)
				t := time.NewTicker(500 * time.Millisecond)
				defer t.Stop()
				for i := range msg {
					if _, err := pw.Write(msg[i : i+1]); err != nil {
						return
					}
					select {
					case <-ctx.Done():
						pw.CloseWithError(ctx.Err())
						return
					case <-t.C:
					}
				}
				pw.Close()
			}()
			out := postGRPC(ctx, c, h.grpcAddr, false, pr)
			pr.CloseWithError(io.ErrClosedPipe)
			<-writer
			h.record("slowloris_grpc", out)
		}()
	}
	wg.Wait()
}

// grpcStreams starts n streams at once, each with a complete 1 MiB export.
func (h *hammer) grpcStreams(ctx context.Context, msg []byte, n int) {
	c := h.h2Client()
	frame := grpcFrame(false, msg)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.record("grpc_streams", postGRPC(ctx, c, h.grpcAddr, false, bytes.NewReader(frame)))
		}()
	}
	wg.Wait()
}
