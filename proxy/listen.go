package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"
)

// bindListener listens on addr with SO_REUSEPORT (Linux; see reusePort);
// "" binds nothing. what names the listener in errors. The listener is
// tracked, so that /livez can tell when its accept loop stopped.
func bindListener(addr, what string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	lc := net.ListenConfig{Control: reusePort}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listener: %w", what, err)
	}
	return newTrackedListener(ln, what), nil
}

// trackedListener records whether its accept loop is waiting in Accept. A
// server goroutine that returned, or is stuck between two Accept calls,
// accepts no connection: the process is alive but useless, and only a
// restart helps.
type trackedListener struct {
	net.Listener
	what string
	// outSince is when Accept last returned (or the listener was bound),
	// in Unix nanoseconds; 0 while a call to Accept is waiting.
	outSince atomic.Int64
}

func newTrackedListener(ln net.Listener, what string) *trackedListener {
	t := &trackedListener{Listener: ln, what: what}
	t.outSince.Store(time.Now().UnixNano())
	return t
}

func (t *trackedListener) Accept() (net.Conn, error) {
	t.outSince.Store(0)
	c, err := t.Listener.Accept()
	t.outSince.Store(time.Now().UnixNano())
	return c, err
}

// acceptStall is how long an accept loop may be away from Accept before
// /livez fails. The servers go back to Accept at once after each connection;
// a temporary accept error pauses them for at most a second.
const acceptStall = 3 * time.Second

// accepting returns an error when the listener's accept loop has not been
// waiting in Accept for longer than within.
func (t *trackedListener) accepting(now time.Time, within time.Duration) error {
	out := t.outSince.Load()
	if out == 0 {
		return nil
	}
	if d := now.Sub(time.Unix(0, out)); d > within {
		return fmt.Errorf("%s listener has not accepted connections for %v", t.what, d.Round(time.Millisecond))
	}
	return nil
}

// listenersLive is the proxy's own liveness check: the OTLP listeners'
// accept loops run. While draining the listeners are closed on purpose.
func (p *Proxy) listenersLive() error {
	if p.Draining() {
		return nil
	}
	now := time.Now()
	var errs []error
	for _, ln := range []net.Listener{p.grpcLn, p.httpLn} {
		if t, ok := ln.(*trackedListener); ok {
			if err := t.accepting(now, acceptStall); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
