//go:build !linux

package main

import "time"

// applyTimerSlack does nothing: timer slack is a Linux setting.
func applyTimerSlack([]string, func(string) string) {}

func timerSlack() (time.Duration, bool) { return 0, false }
