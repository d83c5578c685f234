package node

import (
	"strconv"
	"testing"
)

func TestBySenderCountsOnlyTheRightPod(t *testing.T) {
	rs := []Resource{
		{Signal: "traces", Items: 3, Seqs: []int64{0, 1, 2}, Attrs: map[string]string{
			"demo.pod.name": "a", "k8s.pod.name": "a", "k8s.namespace.name": "demo", "k8s.pod.ip": "10.244.0.5"}},
		{Signal: "logs", Items: 2, Attrs: map[string]string{
			"demo.pod.name": "a", "k8s.pod.name": "b", "k8s.namespace.name": "demo", "k8s.pod.ip": "10.244.0.6"}},
		{Signal: "traces", Items: 1, Seqs: []int64{0}, Attrs: map[string]string{
			"demo.pod.name": "b", "k8s.pod.ip": "10.244.0.1"}},
		{Signal: "metrics", Items: 1, Attrs: map[string]string{"service.name": "other"}},
	}
	s := BySender(rs, "demo")
	if len(s) != 2 {
		t.Fatalf("%d senders, want 2", len(s))
	}
	a, b := s["a"], s["b"]
	if a.Resources != 2 || a.Right != 1 || a.Spans != 3 || a.Logs != 2 || a.FirstSpanStamped == nil || !*a.FirstSpanStamped {
		t.Errorf("a: %+v", a)
	}
	if b.Right != 0 || b.FirstSpanStamped == nil || *b.FirstSpanStamped || len(b.SeenAs) != 1 || b.SeenAs[0] != "10.244.0.1" {
		t.Errorf("b: %+v", b)
	}
	if f := a.Fraction(); f != 0.5 {
		t.Errorf("fraction %v", f)
	}
}

func TestParseProcAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0300F40A:10DD":                         "10.244.0.3:4317",
		"0000000000000000FFFF00000100F40A:10DE": "10.244.0.1:4318",
	} {
		a, p, err := parseProcAddr(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := a.Unmap().String() + ":" + strconv.Itoa(p); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}
