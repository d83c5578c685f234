package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat. It
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// cpuSeconds returns the CPU time pid's threads have run, in seconds: the
// sum of their schedstat run times (nanoseconds; utime+stime in
// /proc/<pid>/stat count in 10 ms ticks, too coarse for short paced
// phases), or utime+stime when schedstat is missing. A thread that exited
// takes its time with it; Go's threads do not exit.
func cpuSeconds(pid int) (float64, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err == nil {
		var ns uint64
		ok := true
		for _, t := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
			if err != nil {
				continue // exited meanwhile
			}
			f := strings.Fields(string(b))
			if len(f) < 1 {
				ok = false
				break
			}
			v, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil {
				ok = false
				break
			}
			ns += v
		}
		if ok && ns > 0 {
			return float64(ns) / 1e9, nil
		}
	}
	return statSeconds(pid)
}

// statSeconds returns utime+stime of pid in seconds.
func statSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces: fields after it start
	// after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return float64(ut+st) / clockTicks, nil
}

// memory is a process's memory from /proc/<pid>/status, in KiB.
type memory struct {
	HWM  int64 // VmHWM: peak resident set
	RSS  int64 // VmRSS: resident set now
	Anon int64 // RssAnon: anonymous part of RSS now (heap, stacks)
	File int64 // RssFile: file-backed part of RSS now (the binary's pages)
}

// memKiB returns VmHWM (peak RSS) and VmRSS of pid in KiB.
func memKiB(pid int) (hwm, rss int64, err error) {
	m, err := readMemory(pid)
	return m.HWM, m.RSS, err
}

func readMemory(pid int) (memory, error) {
	var m memory
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		var dst *int64
		switch {
		case strings.HasPrefix(line, "VmHWM:"):
			dst = &m.HWM
		case strings.HasPrefix(line, "VmRSS:"):
			dst = &m.RSS
		case strings.HasPrefix(line, "RssAnon:"):
			dst = &m.Anon
		case strings.HasPrefix(line, "RssFile:"):
			dst = &m.File
		default:
			continue
		}
		fs := strings.Fields(line)
		if len(fs) >= 2 {
			*dst, _ = strconv.ParseInt(fs[1], 10, 64)
		}
	}
	if m.HWM == 0 && m.RSS == 0 {
		return m, fmt.Errorf("/proc/%d/status: no VmHWM/VmRSS", pid)
	}
	return m, sc.Err()
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

// readChars returns rchar of pid from /proc/<pid>/io: the bytes its read
// system calls returned (sockets included).
func readChars(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "rchar:"); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/io: no rchar", pid)
}
