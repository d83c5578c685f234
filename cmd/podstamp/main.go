package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time: -ldflags '-X main.version=...'.
var version = "dev"

func main() {
	applyTimerSlack(os.Args, os.Getenv) // may run podstamp again in place
	// What package initialisation ran is not needed again.
	if _, err := releaseBinaryPages(); err != nil {
		fmt.Fprintln(os.Stderr, "podstamp: paging out start-up code:", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal, restore the default handling: a second one
	// ends the process at once instead of waiting for the drain.
	go func() { <-ctx.Done(); stop() }()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "podstamp:", err)
		os.Exit(1)
	}
}
