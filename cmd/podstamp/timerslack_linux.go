//go:build linux

package main

import (
	"io"
	"os"
	"runtime"
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
// monitor (sysmon) before main runs; the slack is kept across exec. So when
// this thread's slack is lower than asked for, applyTimerSlack raises it and
// runs the same binary again in place: same PID, arguments and environment.
// It returns when there is nothing to do or it could not be done; run logs
// the slack in effect.
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
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, uintptr(cfg.TimerSlack), 0); e != 0 {
		return
	}
	env := append(os.Environ(), reexecEnv+"=1")
	_ = syscall.Exec("/proc/self/exe", args, env)
	// Still here: exec failed. Carry on as before, with the kernel's slack.
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, uintptr(cur), 0)
}

// timerSlack is the calling thread's timer slack.
func timerSlack() (time.Duration, bool) {
	r, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prGetTimerSlack, 0, 0)
	if e != 0 {
		return 0, false
	}
	return time.Duration(r), true
}
