package buildcmd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// Main runs build until it returns or an interrupt or SIGTERM cancels its
// context, then prints the paths it returned, or "name: error" and exits 1.
// build's logf writes a line to stderr.
func Main(name string, build func(ctx context.Context, logf func(string, ...any)) ([]string, error)) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	paths, err := build(ctx, func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) })
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
	for _, p := range paths {
		fmt.Println(p)
	}
}

// One is Main for a build of one binary, such as cluster.Etcd, whose
// progress goes to stderr when its logger is nil.
func One(name string, build func(context.Context, *slog.Logger) (string, error)) {
	Main(name, func(ctx context.Context, _ func(string, ...any)) ([]string, error) {
		p, err := build(ctx, nil)
		return []string{p}, err
	})
}
