// Package enrichtest provides an in-memory enrich.Resolver for tests of
// packages that use enrich.
//
// It promises: pods are found by UID, IP (host-network pods excluded),
// namespace/name and container ID; ResolvePeer answers through the IP index
// or an answer fixed with SetPeer, counts its calls, and can be made to hold
// until released or until the request's context ends (then it returns the
// context's error, as a real pod cache must). It never starts goroutines.
package enrichtest
