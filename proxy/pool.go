package proxy

import (
	"math/bits"
	"sync"
)

// bufPool is the buffer pool of every request and response body podstamp
// handles, and of the gRPC transports it runs. Unlike gRPC's default pool it
// does not zero buffers (every byte handed out is overwritten before it is
// read). Its size classes go from 512 B to 64 MiB in quarter steps between
// powers of two (128 KiB, 160 KiB, 192 KiB, 224 KiB, 256 KiB, ...), so a
// buffer is at most a quarter larger than asked: a 150 KiB export takes
// 160 KiB, not 256 KiB.
var bufPool = &bytePool{}

const (
	poolMinShift = 9
	poolMaxShift = 26
	poolSteps    = 4
	poolClasses  = (poolMaxShift-poolMinShift)*poolSteps + 1
)

type bytePool struct {
	classes [poolClasses]sync.Pool
}

// poolClass is the smallest class holding n bytes, or -1 above the largest.
func poolClass(n int) int {
	if n <= 1<<poolMinShift {
		return 0
	}
	if n > 1<<poolMaxShift {
		return -1
	}
	s := bits.Len(uint(n-1)) - 1 // 1<<s < n <= 1<<(s+1)
	step := 1 << (s - 2)
	q := (n - 1<<s + step - 1) / step // 1..4
	return (s-poolMinShift)*poolSteps + q
}

// poolClassSize is the capacity of class i's buffers.
func poolClassSize(i int) int {
	return 1 << (poolMinShift + i/poolSteps) * (poolSteps + i%poolSteps) / poolSteps
}

// Get returns a buffer of length n; its contents are undefined.
func (p *bytePool) Get(n int) *[]byte {
	i := poolClass(n)
	if i < 0 {
		b := make([]byte, n)
		return &b
	}
	if v := p.classes[i].Get(); v != nil {
		bp := v.(*[]byte)
		*bp = (*bp)[:n]
		return bp
	}
	b := make([]byte, n, poolClassSize(i))
	return &b
}

// Put returns a buffer obtained from Get. Buffers of other capacities (grown
// by append, or over the largest class) are left to the garbage collector.
func (p *bytePool) Put(bp *[]byte) {
	c := cap(*bp)
	i := poolClass(c)
	if i < 0 || poolClassSize(i) != c {
		return
	}
	p.classes[i].Put(bp)
}
