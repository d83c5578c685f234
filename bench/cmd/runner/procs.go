package main

import (
	"context"
	"net"
	"strings"
	"time"

	"github.com/podstamp/podstamp/e2e/proc"
)

// startProc starts one forwarder with env added to its environment; its
// log is truncated. Stop and the report's command line use the returned
// process's PID, Argv and Env.
func startProc(name, logPath string, env []string, argv ...string) (*proc.Proc, error) {
	return proc.Start(name, logPath, proc.Options{Env: env}, argv...)
}

// stopGrace is how long a forwarder gets between SIGTERM and SIGKILL.
const stopGrace = 10 * time.Second

func tcpUp(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// commandLine renders argv for the report with the work directory and
// binary directories replaced by placeholders.
func commandLine(env, argv []string, repl *strings.Replacer) string {
	parts := append(append([]string(nil), env...), argv...)
	for i, a := range parts {
		a = repl.Replace(a)
		if strings.ContainsAny(a, " \t\"'") {
			a = "'" + a + "'"
		}
		parts[i] = a
	}
	return strings.Join(parts, " ")
}
