//go:build !linux

package informer

import (
	"errors"
	"net/netip"
)

// kernelRoute is only implemented on Linux (netlink); elsewhere senders the
// cache does not know count as local.
func kernelRoute(netip.Addr) (Route, error) {
	return Route{}, errors.ErrUnsupported
}
