// Package otlpwire holds what the benchmark tools share about OTLP on the
// wire: the gRPC method names, a codec that passes protobuf bytes through
// untouched, and a fast scanner that reads resource attributes and item
// counts from an encoded export request without building message objects.
//
// It promises: Scan never panics on any input and reports malformed input
// as an error; the raw codec never copies more than the gRPC library hands
// it.
package otlpwire
