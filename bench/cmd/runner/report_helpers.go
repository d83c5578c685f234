package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"

	"github.com/podstamp/podstamp/e2e/cluster"
)

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "**no**"
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// trimProfile drops the header lines that name local files.
// firstLines keeps the first n lines of s, ending with a newline.
func firstLines(s string, n int) string {
	l := strings.SplitAfter(s, "\n")
	if len(l) > n {
		l = l[:n]
	}
	return strings.Join(l, "")
}

func trimProfile(p string) string {
	var out []string
	for _, l := range strings.Split(p, "\n") {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.Contains(l, "/tmp/") {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "unknown"
	}
	m := regexp.MustCompile(`MemTotal:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		return "unknown"
	}
	var kb float64
	fmt.Sscan(string(m[1]), &kb)
	return fmt.Sprintf("%.1f GiB", kb/1024/1024)
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// gitDescribe names the commit podstamp was built from, "-dirty" when the
// tree differs from it (the results file itself does not count).
func gitDescribe(root string) string {
	out, err := exec.Command("git", "-C", root, "describe", "--always").Output()
	if err != nil {
		return "unknown"
	}
	d := strings.TrimSpace(string(out))
	st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--", ".", ":!bench/RESULTS.md").Output()
	if err == nil && len(strings.TrimSpace(string(st))) > 0 {
		d += "-dirty"
	}
	return d
}

func modVersion(gomod, mod string) string {
	b, err := os.ReadFile(gomod)
	if err != nil {
		return "?"
	}
	re := regexp.MustCompile(`(?m)^\s*(?:require\s+)?` + regexp.QuoteMeta(mod) + `\s+(v\S+)`)
	m := re.FindSubmatch(b)
	if m == nil {
		return "?"
	}
	return string(m[1])
}

// etcdVersion is the version of the etcd e2e/cluster runs.
func etcdVersion() string {
	bin, ok := cluster.CachedEtcd()
	if !ok {
		return "unknown"
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "unknown"
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(strings.TrimPrefix(first, "etcd Version:"))
}

// profileShare sums the flat% (cum=false), or takes the largest cum%
// (cum=true), of the lines of a `go tool pprof -top` listing whose function
// name contains any of names.
func profileShare(top string, cum bool, names ...string) float64 {
	total := 0.0
	for _, l := range strings.Split(top, "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || !strings.HasSuffix(f[1], "%") {
			continue
		}
		fn := strings.Join(f[5:], " ")
		for _, n := range names {
			if strings.Contains(fn, n) {
				col := f[1]
				if cum {
					col = f[4]
				}
				var v float64
				fmt.Sscanf(strings.TrimSuffix(col, "%"), "%g", &v)
				if cum {
					// Cumulative shares nest: take the largest match.
					total = max(total, v)
				} else {
					total += v
				}
				break
			}
		}
	}
	return total
}

func binSize(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("%.0f MiB", float64(st.Size())/(1<<20))
}

func heapTotal(top string) string {
	m := regexp.MustCompile(`of ([0-9.]+[kMG]?B) total`).FindStringSubmatch(top)
	if m == nil {
		return "?"
	}
	return m[1]
}
