// Command kube-apiserver builds (or finds in the cache) the kube-apiserver the
// end-to-end tests, the chart tests, the demo and the benchmarks run, and
// prints its path. CI runs it before the tests so that no test spends its
// timeout on the build.
package main
