package proxy

import (
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"google.golang.org/grpc/encoding"
)

// gzip for gRPC, both ways: the ingress decompresses clients' messages and
// the upstream leg compresses with --upstream-compression gzip. It replaces
// grpc-go's own "gzip" compressor (compress/gzip) with klauspost/compress,
// which reads and writes the same format with much less CPU: with gzip on
// both legs, (de)compression dominates podstamp's cost. Like the HTTP
// upstream leg (and the Collector's HTTP exporters), it compresses at
// BestSpeed: a node agent's CPU is the scarce resource, not the bytes to a
// collector in the same cluster. HTTP ingress and egress use the same
// implementation.
func init() { encoding.RegisterCompressor(&gzipCompressor{}) }

type gzipCompressor struct {
	writers sync.Pool // *gzipWriter
	readers sync.Pool // *gzipReader
}

func (*gzipCompressor) Name() string { return "gzip" }

type gzipWriter struct {
	*gzip.Writer
	pool *sync.Pool
}

func (c *gzipCompressor) Compress(w io.Writer) (io.WriteCloser, error) {
	z, ok := c.writers.Get().(*gzipWriter)
	if !ok {
		zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
		if err != nil {
			return nil, err
		}
		return &gzipWriter{Writer: zw, pool: &c.writers}, nil
	}
	z.Reset(w)
	return z, nil
}

func (z *gzipWriter) Close() error {
	defer z.pool.Put(z)
	return z.Writer.Close()
}

type gzipReader struct {
	*gzip.Reader
	pool *sync.Pool
}

func (c *gzipCompressor) Decompress(r io.Reader) (io.Reader, error) {
	z, ok := c.readers.Get().(*gzipReader)
	if !ok {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, err
		}
		return &gzipReader{Reader: zr, pool: &c.readers}, nil
	}
	if err := z.Reset(r); err != nil {
		c.readers.Put(z)
		return nil, err
	}
	return z, nil
}

// Close returns the reader to its pool; gRPC calls it exactly once, after
// reading the message.
func (z *gzipReader) Close() error {
	z.pool.Put(z)
	return nil
}
