package proxy

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/podstamp/podstamp/enrich"
)

// byteReader is an io.ByteReader that is not one of the inflater's fast-path
// types, like gRPC's mem.Reader.
type byteReader struct{ r *bytes.Reader }

func (b *byteReader) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *byteReader) ReadByte() (byte, error)    { return b.r.ReadByte() }

// BenchmarkGzipDecompress: a gzip-compressed export read through
// newGzipReader from a byte reader like gRPC's, against the inflater
// reading that byte reader itself.
func BenchmarkGzipDecompress(b *testing.B) {
	body, _ := payload(b, enrich.Traces, 512)
	// Values that compress about as well as real attributes do.
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range body {
		if i%3 == 0 {
			body[i] = byte('a' + rng.IntN(26))
		}
	}
	var zb bytes.Buffer
	zw := newGzipWriter(&zb)
	zw.Write(body)
	zw.Close()
	out := make([]byte, 0, len(body))
	b.Run("pooled", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			zr, err := newGzipReader(&byteReader{bytes.NewReader(zb.Bytes())})
			if err != nil {
				b.Fatal(err)
			}
			n, _ := io.ReadFull(zr, out[:len(body)])
			zr.Close()
			if n != len(body) {
				b.Fatal("short")
			}
		}
	})
	b.Run("bytereader", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		zr, _ := gzip.NewReader(bytes.NewReader(zb.Bytes()))
		for b.Loop() {
			zr.Reset(&byteReader{bytes.NewReader(zb.Bytes())})
			n, _ := io.ReadFull(zr, out[:len(body)])
			if n != len(body) {
				b.Fatal("short")
			}
		}
	})
}
