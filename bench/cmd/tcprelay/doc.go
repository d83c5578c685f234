// Command tcprelay is the benchmark's lowest floor (T): a TCP relay that
// copies bytes both ways between each accepted connection and one upstream
// connection, and parses nothing. io.Copy between two *net.TCPConn splices
// on Linux, so the bytes need not pass through the process. No forwarder
// that reads OTLP can cost less; it works for every ingress (gRPC, HTTP,
// plain or gzip), since it never looks at what it carries.
//
//	tcprelay --listen 127.0.0.1:4317 --upstream 127.0.0.1:14317
//
// It promises: every byte read from one side is written to the other, in
// order; a side's end of stream is passed on as a half-close; when either
// direction fails, both connections are closed.
package main
