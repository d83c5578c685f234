//go:build !unix

package proxy

// readyReader is empty: without a ReadOnReady method, gRPC reads a
// connection through a bufio.Reader of its own.
type readyReader struct{}
