package proxy

import "testing"

func TestPoolClasses(t *testing.T) {
	if got := poolClassSize(0); got != 512 {
		t.Fatalf("smallest class %d, want 512", got)
	}
	if got := poolClassSize(poolClasses - 1); got != 1<<poolMaxShift {
		t.Fatalf("largest class %d, want %d", got, 1<<poolMaxShift)
	}
	prev := 0
	for i := range poolClasses {
		sz := poolClassSize(i)
		if sz <= prev {
			t.Fatalf("class %d size %d not above class %d's %d", i, sz, i-1, prev)
		}
		if poolClass(sz) != i || poolClass(prev+1) != i {
			t.Fatalf("class %d (%d B): poolClass(%d)=%d, poolClass(%d)=%d", i, sz, sz, poolClass(sz), prev+1, poolClass(prev+1))
		}
		prev = sz
	}
	for _, n := range []int{0, 1, 511, 512, 513, 1000, 150 << 10, 160 << 10, 160<<10 + 1, 1<<20 - 1, 1 << 20, 1<<26 - 3, 1 << 26} {
		bp := bufPool.Get(n)
		if len(*bp) != n {
			t.Fatalf("Get(%d) has length %d", n, len(*bp))
		}
		if c := cap(*bp); n > 512 && c*4 > n*5 {
			t.Errorf("Get(%d) has capacity %d, over a quarter more", n, c)
		}
		bufPool.Put(bp)
	}
	if got := cap(*bufPool.Get(150 << 10)); got != 160<<10 {
		t.Errorf("a 150 KiB buffer has capacity %d, want 160 KiB", got)
	}
	if poolClass(1<<26+1) != -1 {
		t.Error("a size over the largest class has a class")
	}
	big := bufPool.Get(1<<26 + 1)
	if len(*big) != 1<<26+1 {
		t.Fatal("oversized Get has the wrong length")
	}
	bufPool.Put(big) // not pooled, must not panic
	odd := make([]byte, 0, 1000)
	bufPool.Put(&odd) // capacity of no class: dropped
	for range 100 {
		if c := cap(*bufPool.Get(600)); c != 640 {
			t.Fatalf("Get(600) capacity %d, want the 640 B class (a foreign buffer came back?)", c)
		}
	}
}
