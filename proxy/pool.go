package proxy

import (
	"math/bits"
	"sync"
)

// bufPool is the buffer pool of every request and response body podstamp
// handles, and of the gRPC transports it runs. Unlike gRPC's default pool it
// does not zero buffers (every byte handed out is overwritten before it is
// read) and its size classes are powers of two from 512 B to 64 MiB, so a
// 100 KiB message does not take (and clear) a 1 MiB buffer.
var bufPool = &bytePool{}

const (
	poolMinShift = 9
	poolMaxShift = 26
)

type bytePool struct {
	classes [poolMaxShift - poolMinShift + 1]sync.Pool
}

// Get returns a buffer of length n; its contents are undefined.
func (p *bytePool) Get(n int) *[]byte {
	if n > 1<<poolMaxShift {
		b := make([]byte, n)
		return &b
	}
	s := max(bits.Len(uint(n-1)), poolMinShift)
	if n == 0 {
		s = poolMinShift
	}
	if v := p.classes[s-poolMinShift].Get(); v != nil {
		bp := v.(*[]byte)
		*bp = (*bp)[:n]
		return bp
	}
	b := make([]byte, n, 1<<s)
	return &b
}

// Put returns a buffer obtained from Get. Buffers of other capacities (grown
// by append, or over the largest class) are left to the garbage collector.
func (p *bytePool) Put(bp *[]byte) {
	c := cap(*bp)
	if c < 1<<poolMinShift || c > 1<<poolMaxShift || c&(c-1) != 0 {
		return
	}
	p.classes[bits.Len(uint(c))-1-poolMinShift].Put(bp)
}
