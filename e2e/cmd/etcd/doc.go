// Command etcd builds (or finds in the cache) the etcd server the end-to-end
// tests, the chart tests, the one-node cluster, the demo and the benchmarks
// run, and prints its path. CI runs it before the tests so that no test
// spends its timeout on the build.
package main
