// Package sink is a counting OTLP receiver for tests and benchmarks.
//
// A Sink listens for OTLP over gRPC and HTTP (protobuf or JSON, gzip or
// not), answers every export with an empty success response, and records,
// per received resource: the signal, its attributes, its item count, the
// peer address and the transport. It keeps aggregate counters for any
// volume and the individual records up to a bound. On demand it fails every
// export (gRPC UNAVAILABLE, HTTP 503) for outage tests, and its control
// handler serves GET /records, GET /stats, GET /identity, POST /fail and
// POST /reset as JSON.
//
// It promises: a request is counted only after it was read and parsed in
// full; a request failed on purpose is counted as failed, never as
// received; Close stops every listener and goroutine it started.
//
// The identity check compares, for every resource, the loadgen.source
// attribute (the source address the load generator bound) with the
// k8s.pod.name / k8s.pod.uid that a stamping proxy added.
package sink
