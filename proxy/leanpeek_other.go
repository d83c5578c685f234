//go:build !unix

package proxy

import "syscall"

// pending cannot peek here: an idle connection is taken as live, and a
// closed one fails its call.
func pending(syscall.RawConn) pendingState { return pendingNone }
