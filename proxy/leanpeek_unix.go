//go:build unix

package proxy

import "syscall"

// pending peeks at a socket without blocking: nothing waiting, bytes
// waiting, or closed (or failed).
func pending(raw syscall.RawConn) pendingState {
	if raw == nil {
		return pendingNone
	}
	st := pendingClosed
	err := raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
			st = pendingNone
		case err == nil && n > 0:
			st = pendingData
		}
		return true // never wait
	})
	if err != nil {
		return pendingClosed
	}
	return st
}
