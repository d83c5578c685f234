//go:build linux

package main

import (
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// prctl options for the calling thread's timer slack (linux/prctl.h).
const (
	prSetTimerSlack = 29
	prGetTimerSlack = 30
)

// reexecEnv marks the process that applyTimerSlack started, so that it never
// starts another one.
const reexecEnv = "PODSTAMP_TIMER_SLACK_REEXEC"

// applyTimerSlack gives every thread of podstamp the timer slack that
// --timer-slack (or PODSTAMP_TIMER_SLACK) asks for. A thread takes the slack
// of the thread that creates it, and the Go runtime creates its scheduler
// monitor (sysmon) before main runs; the slack is kept across exec. Setting
// the slack of the other threads instead (/proc/self/task/<tid>/timerslack_ns)
// needs CAP_SYS_NICE, which the chart drops. So when this thread's slack is
// lower than asked for, applyTimerSlack raises it and runs the same binary
// file again in place: same PID, arguments and environment.
//
// It execs the binary by its own path, never /proc/self/exe: the kernel names
// the process (/proc/<pid>/comm) after the last element of the path given to
// exec, so the process stays "podstamp" for pgrep, process exporters and
// runtime-security rules, and exec of /proc/self/exe is a pattern those rules
// flag as a container escape.
//
// It returns when there is nothing to do or it could not be done, including
// when the binary file was deleted or replaced since start (running another
// build in place would be a silent upgrade); run logs the slack in effect.
func applyTimerSlack(args []string, getenv func(string) string) {
	if getenv(reexecEnv) != "" {
		_ = os.Unsetenv(reexecEnv)
		return
	}
	cfg, err := ParseConfig(args[1:], getenv, io.Discard)
	if err != nil || cfg.Help || cfg.Version || cfg.TimerSlack <= 0 {
		return // run reports a bad configuration
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cur, ok := timerSlack()
	if !ok || cur >= cfg.TimerSlack {
		return
	}
	path, ok := runningBinary("/proc/self/exe")
	if !ok {
		return
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, uintptr(cfg.TimerSlack), 0); e != 0 {
		return
	}
	env := append(os.Environ(), reexecEnv+"=1")
	_ = syscall.Exec(path, args, env)
	// Still here: exec failed. Carry on as before, with the kernel's slack.
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, uintptr(cur), 0)
}

// runningBinary is the path of the file that the process behind exe (a
// /proc/<pid>/exe link) runs, if that path still names that very file. Not
// os.Executable: it drops the " (deleted)" that the kernel appends when the
// file is gone, and the path may name a newer file by then. Comparing device
// and inode of the path with those of the link (which reaches the running
// file even when deleted) also turns down a file put in its place.
func runningBinary(exe string) (string, bool) {
	path, err := os.Readlink(exe)
	if err != nil || !filepath.IsAbs(path) || strings.HasSuffix(path, " (deleted)") {
		return "", false
	}
	var running, named syscall.Stat_t
	if syscall.Stat(exe, &running) != nil || syscall.Stat(path, &named) != nil {
		return "", false
	}
	if running.Dev != named.Dev || running.Ino != named.Ino {
		return "", false
	}
	return path, true
}

// timerSlack is the calling thread's timer slack.
func timerSlack() (time.Duration, bool) {
	r, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prGetTimerSlack, 0, 0)
	if e != 0 {
		return 0, false
	}
	return time.Duration(r), true
}
