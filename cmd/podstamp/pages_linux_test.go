package main

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// rssFileKiB reads the process's resident file-backed memory.
func rssFileKiB(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

// TestReleaseBinaryPages: paging out the binary (here the test binary)
// shrinks the resident file-backed memory, and the process keeps running
// the code it pages back in.
func TestReleaseBinaryPages(t *testing.T) {
	before := rssFileKiB(t)
	n, err := releaseBinaryPages()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFileKiB(t)
	t.Logf("advised %d KiB of the binary; RssFile %d → %d KiB", n>>10, before, after)
	if n == 0 {
		t.Fatal("no mapping of the binary found in /proc/self/maps")
	}
	if after >= before {
		t.Errorf("RssFile %d KiB after paging out, %d before: want less", after, before)
	}
}
