package proc_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/podstamp/podstamp/e2e/proc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// bound is how long any single wait of these tests may take before it counts
// as a hang.
const bound = 20 * time.Second

// start starts argv with its log in the test's directory and stops it at
// cleanup.
func start(t *testing.T, opts proc.Options, argv ...string) *proc.Proc {
	t.Helper()
	p, err := proc.Start("child", filepath.Join(t.TempDir(), "child.log"), opts, argv...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(time.Second) })
	return p
}

func waitDone(t *testing.T, p *proc.Proc) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(bound):
		t.Fatalf("PID %d still running after %v", p.PID(), bound)
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -100
}

func signalled(err error) syscall.Signal {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return ws.Signal()
		}
	}
	return 0
}

// lineWriter signals once a line has been written to it (stdout teed by
// Options.Stdout): the event that a shell reached a point of its script.
type lineWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
	once sync.Once
}

func newLineWriter(want string) *lineWriter {
	return &lineWriter{want: want, seen: make(chan struct{})}
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(b)
	if strings.Contains(w.buf.String(), w.want+"\n") {
		w.once.Do(func() { close(w.seen) })
	}
	return len(b), nil
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func (w *lineWriter) wait(t *testing.T) {
	t.Helper()
	select {
	case <-w.seen:
	case <-time.After(bound):
		t.Fatalf("%q not printed within %v; got %q", w.want, bound, w.String())
	}
}

func TestExitAndLog(t *testing.T) {
	p := start(t, proc.Options{}, "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3")
	if p.PID() <= 0 {
		t.Fatalf("PID %d", p.PID())
	}
	waitDone(t, p)
	if !p.Exited() {
		t.Fatal("Exited false after Done")
	}
	if got := exitCode(p.Err()); got != 3 {
		t.Fatalf("Err %v: exit code %d, want 3", p.Err(), got)
	}
	log, err := os.ReadFile(p.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	if string(log) != "to-stdout\nto-stderr\n" {
		t.Fatalf("log %q", log)
	}
	if got := p.LogTail(10); got != "to-stderr\n" {
		t.Fatalf("LogTail(10) = %q", got)
	}
	if got := p.LogTail(1 << 20); got != string(log) {
		t.Fatalf("LogTail(1M) = %q", got)
	}
	if p.Stop(time.Second) {
		t.Fatal("Stop of an exited process reported a SIGKILL")
	}
}

func TestRunning(t *testing.T) {
	p := start(t, proc.Options{}, "sleep", "60")
	if p.Exited() || p.Err() != nil {
		t.Fatalf("fresh process: Exited %v, Err %v", p.Exited(), p.Err())
	}
	select {
	case <-p.Done():
		t.Fatal("Done closed while the process runs")
	default:
	}
	if got := strings.Join(p.Argv(), " "); got != "sleep 60" || p.Name() != "child" {
		t.Fatalf("Name %q, Argv %q", p.Name(), got)
	}
}

func TestStartFails(t *testing.T) {
	_, err := proc.Start("missing", filepath.Join(t.TempDir(), "x.log"), proc.Options{}, filepath.Join(t.TempDir(), "no-such-binary"))
	if err == nil || !strings.Contains(err.Error(), "start missing") {
		t.Fatalf("err %v", err)
	}
	if _, err := proc.Start("empty", filepath.Join(t.TempDir(), "x.log"), proc.Options{}); err == nil {
		t.Fatal("no error for an empty command line")
	}
}

func TestAppendAndTruncate(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "child.log")
	run := func(word string, opts proc.Options) {
		p, err := proc.Start("child", logPath, opts, "echo", word)
		if err != nil {
			t.Fatal(err)
		}
		waitDone(t, p)
	}
	read := func() string {
		b, err := os.ReadFile(logPath)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	run("one", proc.Options{})
	run("two", proc.Options{Append: true})
	if got := read(); got != "one\ntwo\n" {
		t.Fatalf("after Append: %q", got)
	}
	run("three", proc.Options{})
	if got := read(); got != "three\n" {
		t.Fatalf("without Append: %q", got)
	}
}

func TestEnvAndStdoutTee(t *testing.T) {
	tee := newLineWriter("done")
	p := start(t, proc.Options{Env: []string{"PROC_TEST_VALUE=hello"}, Stdout: tee},
		"sh", "-c", `echo "value=$PROC_TEST_VALUE"; echo secret >&2; echo done`)
	waitDone(t, p)
	if p.Err() != nil {
		t.Fatal(p.Err())
	}
	if got := tee.String(); got != "value=hello\ndone\n" {
		t.Fatalf("tee got %q (stderr must not be in it)", got)
	}
	// Teed stdout reaches the log through a pipe, stderr directly: the
	// order of the two in the log is not kept.
	log := p.LogTail(1000)
	for _, line := range []string{"value=hello\n", "secret\n", "done\n"} {
		if !strings.Contains(log, line) {
			t.Fatalf("log %q lacks %q", log, line)
		}
	}
	if len(log) != len("value=hello\nsecret\ndone\n") {
		t.Fatalf("log %q", log)
	}
	if got := strings.Join(p.Env(), " "); got != "PROC_TEST_VALUE=hello" {
		t.Fatalf("Env %q", got)
	}
}

func TestNewProcessGroup(t *testing.T) {
	for _, own := range []bool{false, true} {
		p := start(t, proc.Options{NewProcessGroup: own}, "sleep", "60")
		pgid, err := syscall.Getpgid(p.PID())
		if err != nil {
			t.Fatal(err)
		}
		if got := pgid == p.PID(); got != own {
			t.Fatalf("NewProcessGroup %v: PID %d, process group %d", own, p.PID(), pgid)
		}
		if p.Stop(bound) {
			t.Fatal("sleep needed SIGKILL")
		}
	}
}

func TestStopSIGTERM(t *testing.T) {
	p := start(t, proc.Options{}, "sleep", "60")
	if p.Stop(bound) {
		t.Fatal("sleep needed SIGKILL")
	}
	if !p.Exited() {
		t.Fatal("Stop returned before the process exited")
	}
	if sig := signalled(p.Err()); sig != syscall.SIGTERM {
		t.Fatalf("Err %v, want death by SIGTERM", p.Err())
	}
	if p.Stop(bound) {
		t.Fatal("second Stop reported a SIGKILL")
	}
}

func TestStopSIGKILLAfterGrace(t *testing.T) {
	// An ignored signal stays ignored across exec: the sleep that replaces
	// the shell (same PID) ignores SIGTERM.
	ready := newLineWriter("ready")
	p := start(t, proc.Options{Stdout: ready}, "sh", "-c", `trap "" TERM; echo ready; exec sleep 60`)
	ready.wait(t)
	const grace = 300 * time.Millisecond
	begin := time.Now()
	if !p.Stop(grace) {
		t.Fatalf("Stop did not need SIGKILL (Err %v)", p.Err())
	}
	if took := time.Since(begin); took < grace {
		t.Fatalf("SIGKILL after %v, before the grace of %v", took, grace)
	}
	if sig := signalled(p.Err()); sig != syscall.SIGKILL {
		t.Fatalf("Err %v, want death by SIGKILL", p.Err())
	}
}

func TestWaitReadyPasses(t *testing.T) {
	// The child says it is ready by creating a file; the check looks for it.
	flag := filepath.Join(t.TempDir(), "ready")
	p := start(t, proc.Options{}, "sh", "-c", `echo starting; touch "$0"; exec sleep 60`, flag)
	calls := 0
	err := p.WaitReady(context.Background(), bound, func(context.Context) error {
		calls++
		_, err := os.Stat(flag)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.Exited() {
		t.Fatal("process gone after WaitReady")
	}
	t.Logf("ready after %d checks", calls)
}

func TestWaitReadyProcessExits(t *testing.T) {
	p := start(t, proc.Options{}, "sh", "-c", "echo fatal: cannot listen; exit 7")
	checkErr := errors.New("connection refused")
	begin := time.Now()
	err := p.WaitReady(context.Background(), time.Hour, func(context.Context) error { return checkErr })
	if !errors.Is(err, proc.ErrExited) {
		t.Fatalf("err %v, want ErrExited", err)
	}
	if took := time.Since(begin); took > bound {
		t.Fatalf("WaitReady took %v to notice the exit", took)
	}
	for _, want := range []string{"child:", "exit status 7", "connection refused", "fatal: cannot listen", p.LogPath()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q: %v", want, err)
		}
	}
}

func TestWaitReadyTimeout(t *testing.T) {
	p := start(t, proc.Options{}, "sleep", "60")
	const timeout = 200 * time.Millisecond
	var checkCtx context.Context
	err := p.WaitReady(context.Background(), timeout, func(ctx context.Context) error {
		checkCtx = ctx
		return errors.New("not yet")
	})
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, proc.ErrExited) {
		t.Fatalf("err %v, want a deadline", err)
	}
	if !strings.Contains(err.Error(), "not yet") {
		t.Fatalf("error lacks the last check's error: %v", err)
	}
	if checkCtx.Err() == nil {
		t.Fatal("the check's context outlived WaitReady")
	}
	if p.Exited() {
		t.Fatal("WaitReady stopped the process")
	}
}

func TestWaitReadyContextCancelled(t *testing.T) {
	p := start(t, proc.Options{}, "sleep", "60")
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	err := p.WaitReady(ctx, bound, func(context.Context) error {
		calls++
		if calls == 2 {
			cancel()
		}
		return errors.New("not yet")
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}

func TestHTTPOK(t *testing.T) {
	code := http.StatusServiceUnavailable
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(code)
		_, _ = w.Write([]byte("not ready yet\n"))
	}))
	t.Cleanup(ts.Close)
	check := proc.HTTPOK(ts.Client(), ts.URL+"/readyz")
	if err := check(t.Context()); err == nil || !strings.Contains(err.Error(), "HTTP 503: not ready yet") {
		t.Errorf("503: %v", err)
	}
	code = http.StatusOK
	if err := check(t.Context()); err != nil {
		t.Errorf("200: %v", err)
	}
}
