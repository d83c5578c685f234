package main

import (
	"bufio"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// quickArgs start podstamp quickly: no pod cache, ports of the kernel's choice.
var quickArgs = []string{"--grpc-listen", "127.0.0.1:0", "--http-listen", "", "--admin-listen", "127.0.0.1:0",
	"--upstream", "http://127.0.0.1:1"}

// buildPodstamp builds the binary into dir as a file named podstamp.
func buildPodstamp(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "podstamp")
	build := exec.Command(goCommand(t), "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// inheritedSlack is the timer slack the test process gives its children.
func inheritedSlack(t *testing.T) time.Duration {
	t.Helper()
	own, err := os.ReadFile("/proc/self/timerslack_ns")
	if err != nil {
		t.Skipf("no timer slack in /proc: %v", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(own)))
	if err != nil {
		t.Fatal(err)
	}
	return time.Duration(n)
}

// started is a podstamp process that has logged its start-up line.
type started struct {
	pid   int
	start string // the msg=starting log line
}

// startPodstamp starts cmd, waits for its start-up log line and calls check
// on the running process; then it stops the process by PID with SIGTERM and
// expects exit status 0.
func startPodstamp(t *testing.T, cmd *exec.Cmd, check func(started)) {
	t.Helper()
	cmd.Env = append(os.Environ(), "PODSTAMP_TIMER_SLACK=") // only the flag decides
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	// A process that never logs its start is killed, which ends the scan.
	hung := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
	defer hung.Stop()
	sc := bufio.NewScanner(out)
	var start string
	for sc.Scan() {
		if strings.Contains(sc.Text(), "msg=starting") {
			start = sc.Text()
			break
		}
	}
	if start != "" {
		check(started{pid: pid, start: start})
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	go func() { _, _ = io.Copy(io.Discard, out) }()
	werr := cmd.Wait()
	if start == "" {
		t.Fatalf("%v: no start-up log line; exit: %v", cmd.Args, werr)
	}
	if werr != nil {
		t.Errorf("%v: exit: %v", cmd.Args, werr)
	}
}

// procFile is the trimmed content of /proc/<pid>/<name>.
func procFile(t *testing.T, pid int, name string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// threadSlacks is the timer slack of every thread of pid, by thread ID.
// /proc/<pid>/task/<tid>/ has no timerslack_ns, but /proc/<tid>/ is there
// for every thread, with the files of that thread.
func threadSlacks(t *testing.T, pid int) map[string]string {
	t.Helper()
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	slacks := map[string]string{}
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join("/proc", task.Name(), "timerslack_ns"))
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			continue // the thread ended meanwhile
		}
		if err != nil {
			t.Fatal(err)
		}
		slacks[task.Name()] = strings.TrimSpace(string(b))
	}
	if len(slacks) < 2 {
		t.Fatalf("only %d threads in %s", len(slacks), dir)
	}
	return slacks
}

// TestTimerSlack runs the podstamp binary: by default it runs again in place
// with 25ms of timer slack on every thread (same PID, the slack in the
// start-up log and in /proc) and keeps its name, podstamp, and its command
// line; --timer-slack 0 leaves the slack it inherited.
func TestTimerSlack(t *testing.T) {
	bin := buildPodstamp(t, t.TempDir())
	inherited := inheritedSlack(t)
	pgrep, pgrepErr := exec.LookPath("pgrep")
	for _, tc := range []struct {
		args []string
		want time.Duration
	}{
		{nil, 25 * time.Millisecond},
		{[]string{"--timer-slack", "20ms"}, 20 * time.Millisecond},
		{[]string{"--timer-slack", "0"}, inherited},
	} {
		args := append(slices.Clone(quickArgs), tc.args...)
		startPodstamp(t, exec.Command(bin, args...), func(p started) {
			// The process that logs is the one started: exec kept the PID.
			if got := procFile(t, p.pid, "comm"); got != "podstamp" {
				t.Errorf("%v: /proc/%d/comm = %q, want podstamp", tc.args, p.pid, got)
			}
			wantCmdline := strings.Join(append([]string{bin}, args...), "\x00")
			if got := procFile(t, p.pid, "cmdline"); strings.TrimSuffix(got, "\x00") != wantCmdline {
				t.Errorf("%v: /proc/%d/cmdline = %q, want %q", tc.args, p.pid, got, wantCmdline)
			}
			for tid, got := range threadSlacks(t, p.pid) {
				if got != strconv.Itoa(int(tc.want)) {
					t.Errorf("%v: /proc/%d: /proc/%s/timerslack_ns = %s, want %d", tc.args, p.pid, tid, got, tc.want)
				}
			}
			if !strings.Contains(p.start, "timer_slack="+tc.want.String()) {
				t.Errorf("%v: start-up log %q does not say timer_slack=%v", tc.args, p.start, tc.want)
			}
			if pgrepErr != nil {
				t.Logf("no pgrep: %v", pgrepErr)
				return
			}
			out, err := exec.Command(pgrep, "-x", "podstamp").Output()
			if err != nil {
				t.Errorf("%v: pgrep -x podstamp: %v", tc.args, err)
			}
			if !slices.Contains(strings.Fields(string(out)), strconv.Itoa(p.pid)) {
				t.Errorf("%v: pgrep -x podstamp = %q, does not list %d", tc.args, out, p.pid)
			}
		})
	}
}

// TestTimerSlackDeletedBinary starts podstamp from a binary file deleted
// before it runs: it must not run anything else in its place, and carries on
// with the slack it inherited.
func TestTimerSlackDeletedBinary(t *testing.T) {
	inherited := inheritedSlack(t)
	if inherited >= 25*time.Millisecond {
		t.Skipf("inherited timer slack %v already meets the default", inherited)
	}
	bin := buildPodstamp(t, t.TempDir())
	f, err := os.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Something else now stands at the path: if podstamp ran its path again,
	// it would fail to start.
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The child runs the deleted file through its descriptor 3.
	cmd := exec.Command("/proc/self/fd/3", quickArgs...)
	cmd.ExtraFiles = []*os.File{f}
	startPodstamp(t, cmd, func(p started) {
		exe, err := os.Readlink("/proc/" + strconv.Itoa(p.pid) + "/exe")
		if err != nil {
			t.Fatal(err)
		}
		if exe != bin+" (deleted)" {
			t.Errorf("/proc/%d/exe = %q, want the deleted binary", p.pid, exe)
		}
		for tid, got := range threadSlacks(t, p.pid) {
			if got != strconv.Itoa(int(inherited)) {
				t.Errorf("/proc/%d: /proc/%s/timerslack_ns = %s, want the inherited %d", p.pid, tid, got, inherited)
			}
		}
		if !strings.Contains(p.start, "timer_slack="+inherited.String()) {
			t.Errorf("start-up log %q does not say timer_slack=%v", p.start, inherited)
		}
	})
}

// TestRunningBinary checks which paths applyTimerSlack would run again.
func TestRunningBinary(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := runningBinary("/proc/self/exe"); !ok || got != self {
		t.Errorf("runningBinary(/proc/self/exe) = %q, %v, want %q", got, ok, self)
	}
	dir := t.TempDir()
	deleted := filepath.Join(dir, "podstamp (deleted)")
	if err := os.WriteFile(deleted, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, link := range []struct{ name, target string }{
		{"deleted", deleted},         // the kernel's mark of a deleted file
		{"relative", "podstamp"},     // not a path exec can be trusted with
		{"missing", dir + "/absent"}, // nothing there
	} {
		p := filepath.Join(dir, link.name)
		if err := os.Symlink(link.target, p); err != nil {
			t.Fatal(err)
		}
		if got, ok := runningBinary(p); ok {
			t.Errorf("%s: runningBinary = %q, want none", link.name, got)
		}
	}
	if got, ok := runningBinary(filepath.Join(dir, "not-a-link")); ok {
		t.Errorf("no link: runningBinary = %q, want none", got)
	}
}
