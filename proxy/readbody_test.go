package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
)

// chunkReader returns at most n bytes per Read, as a socket does with
// what has arrived.
type chunkReader struct {
	r *bytes.Reader
	n int
}

func (c chunkReader) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.n)]) }

// BenchmarkReadKnown reads OTLP/HTTP bodies of a known length arriving in
// 64 KiB pieces: what growing the buffer as bytes arrive costs in copies.
func BenchmarkReadKnown(b *testing.B) {
	for _, size := range []int{160 << 10, 1 << 20} {
		body := bytes.Repeat([]byte{0xa5}, size)
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				buf, err := readKnown(chunkReader{bytes.NewReader(body), 64 << 10}, size, bufPool)
				if err != nil {
					b.Fatal(err)
				}
				buf.Free()
			}
		})
	}
}

// readKnown returns the body byte for byte whatever the sizes of the
// pieces it arrives in and however many times the buffer grows, and a body
// that ends early is an error, not a short body.
func TestReadKnown(t *testing.T) {
	for _, size := range []int{1, firstChunk - 1, firstChunk, firstChunk + 1, knownGrowth * firstChunk, knownGrowth*firstChunk + 1, 1<<20 + 3} {
		body := make([]byte, size)
		for i := range body {
			body[i] = byte(i * 7)
		}
		for _, piece := range []int{1000, 64 << 10, size} {
			buf, err := readKnown(chunkReader{bytes.NewReader(body), piece}, size, bufPool)
			if err != nil {
				t.Fatalf("size %d in pieces of %d: %v", size, piece, err)
			}
			if got := buf.ReadOnlyData(); !bytes.Equal(got, body) {
				t.Fatalf("size %d in pieces of %d: read %d bytes that differ from the body", size, piece, len(got))
			}
			buf.Free()
		}
		if size > 1 {
			_, err := readKnown(chunkReader{bytes.NewReader(body[:size-1]), 64 << 10}, size, bufPool)
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("size %d, one byte short: err %v, want %v", size, err, io.ErrUnexpectedEOF)
			}
		}
	}
}
