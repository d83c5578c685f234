package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTimerSlack runs the podstamp binary: by default it runs again in place
// with 5ms of timer slack (same PID, the slack in the start-up log and in
// /proc), and --timer-slack 0 leaves the slack it inherited.
func TestTimerSlack(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "podstamp")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	own, err := os.ReadFile("/proc/self/timerslack_ns")
	if err != nil {
		t.Skipf("no timer slack in /proc: %v", err)
	}
	inherited, _ := strconv.Atoi(strings.TrimSpace(string(own)))
	for _, tc := range []struct {
		args []string
		want time.Duration
	}{
		{nil, 5 * time.Millisecond},
		{[]string{"--timer-slack", "20ms"}, 20 * time.Millisecond},
		{[]string{"--timer-slack", "0"}, time.Duration(inherited)},
	} {
		args := append([]string{"--grpc-listen", "127.0.0.1:0", "--http-listen", "", "--admin-listen", "127.0.0.1:0",
			"--upstream", "http://127.0.0.1:9"}, tc.args...)
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "PODSTAMP_TIMER_SLACK=") // only the flag decides
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid := cmd.Process.Pid
		sc := bufio.NewScanner(out)
		var start string
		for sc.Scan() {
			if strings.Contains(sc.Text(), "msg=starting") {
				start = sc.Text()
				break
			}
		}
		// The process that logs is the one started: exec kept the PID.
		slack, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/timerslack_ns")
		_ = cmd.Process.Signal(syscall.SIGTERM)
		go func() {
			for sc.Scan() {
			}
		}()
		if werr := cmd.Wait(); werr != nil {
			t.Errorf("%v: exit: %v", tc.args, werr)
		}
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if got := strings.TrimSpace(string(slack)); got != strconv.Itoa(int(tc.want)) {
			t.Errorf("%v: /proc/%d/timerslack_ns = %s, want %d", tc.args, pid, got, tc.want)
		}
		if !strings.Contains(start, "timer_slack="+tc.want.String()) {
			t.Errorf("%v: start-up log %q does not say timer_slack=%v", tc.args, start, tc.want)
		}
	}
}
