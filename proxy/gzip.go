package proxy

import (
	"bufio"
	"bytes"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
)

// Every gzip leg goes through klauspost/compress, which reads and writes the
// same format as compress/gzip with much less CPU (with gzip on both legs,
// (de)compression dominates podstamp's cost), and through one pair of pools:
// gRPC messages in both directions, HTTP request bodies in, HTTP upstream
// bodies out. It compresses at BestSpeed, like the Collector's HTTP
// exporters: a node agent's CPU is the scarce resource, not the bytes to a
// collector in the same cluster.
var (
	gzipWriters = sync.Pool{New: func() any {
		w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
		return &gzipWriter{w}
	}}
	gzipReaders sync.Pool // *gzipReader
)

// gzipWriter is a pooled writer; Close finishes the stream and returns it
// to the pool.
type gzipWriter struct{ *gzip.Writer }

func newGzipWriter(w io.Writer) *gzipWriter {
	z := gzipWriters.Get().(*gzipWriter)
	z.Reset(w)
	return z
}

func (z *gzipWriter) Close() error {
	err := z.Writer.Close()
	z.Reset(nil) // drop the destination before pooling
	gzipWriters.Put(z)
	return err
}

// gzipReader is a pooled reader; Close returns it to the pool. The
// compressed stream is read through its own bufio.Reader: the inflater has a
// fast path for *bufio.Reader sources, and reads any other io.ByteReader
// (gRPC hands it a mem.Reader) a byte at a time through an interface call,
// which under gzip load was a third of podstamp's CPU.
type gzipReader struct {
	*gzip.Reader
	src *bufio.Reader
}

// gzipReadBuffer is the bufio.Reader's size: bufio's default.
const gzipReadBuffer = 4 << 10

func newGzipReader(r io.Reader) (*gzipReader, error) {
	z, ok := gzipReaders.Get().(*gzipReader)
	if !ok {
		src := bufio.NewReaderSize(r, gzipReadBuffer)
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, err
		}
		return &gzipReader{Reader: zr, src: src}, nil
	}
	z.src.Reset(r)
	if err := z.Reader.Reset(z.src); err != nil {
		z.Close()
		return nil, err
	}
	return z, nil
}

func (z *gzipReader) Close() error {
	z.src.Reset(eofReader{})
	_ = z.Reader.Reset(z.src) // drop the source before pooling; fails harmlessly
	gzipReaders.Put(z)
	return nil
}

// gzipCompressor replaces grpc-go's own "gzip" compressor (compress/gzip)
// for the ingress and the upstream leg. gRPC closes each reader and writer
// exactly once, after the message.
type gzipCompressor struct{}

func init() { encoding.RegisterCompressor(gzipCompressor{}) }

func (gzipCompressor) Name() string { return "gzip" }

func (gzipCompressor) Compress(w io.Writer) (io.WriteCloser, error) { return newGzipWriter(w), nil }

func (gzipCompressor) Decompress(r io.Reader) (io.Reader, error) { return newGzipReader(r) }

// gzipBuffers compresses body into one pooled buffer and frees body.
func gzipBuffers(body mem.BufferSlice) mem.BufferSlice {
	zb := bufPool.Get(body.Len()/2 + 64)
	out := bytes.NewBuffer((*zb)[:0])
	zw := newGzipWriter(out)
	for _, seg := range body {
		_, _ = zw.Write(seg.ReadOnlyData())
	}
	_ = zw.Close()
	b := out.Bytes()
	body.Free()
	if cap(b) > 0 && cap(*zb) > 0 && &b[:1][0] == &(*zb)[:1][0] { // still the pooled array
		*zb = b
		return mem.BufferSlice{mem.NewBuffer(zb, bufPool)}
	}
	bufPool.Put(zb)
	return mem.BufferSlice{mem.SliceBuffer(b)}
}
