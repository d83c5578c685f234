// Package buildcmd is the body of the commands that build (or find in the
// cache) a binary the tests run and print its path: e2e/cmd/etcd,
// e2e/cmd/kube-apiserver and e2e/node/cmd/kube-binaries. CI runs them before
// the tests so that no test spends its timeout on a build.
//
// Promises:
//   - The paths, one a line, are all that goes to stdout; progress goes to
//     stderr.
//   - An interrupt or SIGTERM cancels the build (go build is killed, no
//     half-written binary is left in the cache) and the command exits 1.
//   - A failure prints "<name>: <error>" on stderr and exits 1.
package buildcmd
