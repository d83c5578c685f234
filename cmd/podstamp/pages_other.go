//go:build !linux

package main

import (
	"context"
	"log/slog"
)

// releaseBinaryPages does nothing: paging out a mapping is a Linux call.
func releaseBinaryPages() (int, error) { return 0, nil }

// releaseStartupPages does nothing: paging out a mapping is a Linux call.
func releaseStartupPages(context.Context, <-chan struct{}, *slog.Logger) {}
