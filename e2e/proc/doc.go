// Package proc starts and stops the child processes of podstamp's
// end-to-end suite, demo and benchmark runner: etcd, kube-apiserver,
// podstamp, the OTLP sink, a raw proxy, the Collector.
//
// Promises:
//   - Start returns once the process is running, or an error naming it. Its
//     stdout and stderr go to its log file, which Start creates or truncates
//     (Options.Append appends instead, so a restarted process keeps one log);
//     Options.Stdout also receives stdout, for a caller that reads it.
//   - The child gets SIGKILL when the thread that started it dies
//     (Pdeathsig), a backstop for a parent killed before it could call Stop.
//   - One goroutine per process waits for it, closes the log file and then
//     Done; it ends when the process does. Err is the result of that wait.
//   - Stop signals only the process Start started, by its PID and never its
//     group or a name: SIGTERM, SIGKILL once the grace period has passed, and
//     it returns only after the process has been reaped. The signal goes
//     through os.Process, which on Linux holds a pidfd, so a PID reused after
//     the process exited is never signalled. Stop is idempotent.
//   - WaitReady polls a readiness check and returns early when the process
//     exits; its errors name the process and end with the tail of its log.
package proc
