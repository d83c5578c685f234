//go:build !linux

package proxy

import "syscall"

// reusePort is a no-op outside Linux: listeners are bound exclusively.
func reusePort(_, _ string, _ syscall.RawConn) error { return nil }
