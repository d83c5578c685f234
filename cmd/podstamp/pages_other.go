//go:build !linux

package main

// releaseBinaryPages does nothing: paging out a mapping is a Linux call.
func releaseBinaryPages() (int, error) { return 0, nil }
