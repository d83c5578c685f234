//go:build linux

package informer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

var routeSeq atomic.Uint32

// kernelRoute asks the kernel for its route to ip (RTM_GETROUTE, as
// `ip route get` does) and reads the addresses of the outgoing interface.
func kernelRoute(ip netip.Addr) (Route, error) {
	ip = ip.Unmap()
	family, bits := unix.AF_INET, 32
	if ip.Is6() {
		family, bits = unix.AF_INET6, 128
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return Route{}, fmt.Errorf("netlink socket: %w", err)
	}
	defer unix.Close(fd)
	// The kernel answers at once; the timeout only guards against a wedge.
	tv := unix.Timeval{Sec: 1}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return Route{}, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return Route{}, fmt.Errorf("netlink bind: %w", err)
	}

	addr := ip.AsSlice()
	attrLen := unix.SizeofRtAttr + len(addr)
	req := make([]byte, unix.SizeofNlMsghdr+unix.SizeofRtMsg+rtaAlign(attrLen))
	seq := routeSeq.Add(1)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.RTM_GETROUTE)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(req[8:], seq)
	rtm := req[unix.SizeofNlMsghdr:]
	rtm[0] = byte(family)
	rtm[1] = byte(bits) // rtm_dst_len
	attr := rtm[unix.SizeofRtMsg:]
	ne.PutUint16(attr[0:], uint16(attrLen))
	ne.PutUint16(attr[2:], unix.RTA_DST)
	copy(attr[unix.SizeofRtAttr:], addr)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return Route{}, fmt.Errorf("netlink send: %w", err)
	}

	buf := make([]byte, 16<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return Route{}, fmt.Errorf("netlink receive: %w", err)
		}
		r, done, err := parseRouteReply(buf[:n], seq)
		if err != nil || !done {
			if err != nil {
				return Route{}, err
			}
			continue
		}
		if r.oif > 0 {
			ifi, err := net.InterfaceByIndex(r.oif)
			if err != nil {
				return Route{}, fmt.Errorf("interface #%d of the route to %s: %w", r.oif, ip, err)
			}
			r.Interface = ifi.Name
			as, err := ifi.Addrs()
			if err != nil {
				return Route{}, fmt.Errorf("addresses of %s: %w", ifi.Name, err)
			}
			for _, a := range as {
				if n, ok := a.(*net.IPNet); ok {
					if x, ok := netip.AddrFromSlice(n.IP); ok {
						r.InterfaceAddrs = append(r.InterfaceAddrs, x.Unmap())
					}
				}
			}
		}
		return r.Route, nil
	}
}

type rawRoute struct {
	Route
	oif int
}

func rtaAlign(n int) int { return (n + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1) }

// parseRouteReply reads the kernel's answer to the request seq. done is
// false when the datagram held nothing for it.
func parseRouteReply(b []byte, seq uint32) (r rawRoute, done bool, err error) {
	ne := binary.NativeEndian
	for len(b) >= unix.SizeofNlMsghdr {
		l := int(ne.Uint32(b[0:]))
		typ := ne.Uint16(b[4:])
		if l < unix.SizeofNlMsghdr || l > len(b) {
			return r, false, errors.New("netlink: malformed message")
		}
		msg := b[unix.SizeofNlMsghdr:l]
		mseq := ne.Uint32(b[8:])
		b = b[min(rtaAlign(l), len(b)):]
		if mseq != seq {
			continue
		}
		switch typ {
		case unix.NLMSG_ERROR:
			if len(msg) < 4 {
				return r, false, errors.New("netlink: short error message")
			}
			if e := int32(ne.Uint32(msg)); e != 0 {
				return r, false, fmt.Errorf("netlink route lookup: %w", unix.Errno(-e))
			}
		case unix.RTM_NEWROUTE:
			if len(msg) < unix.SizeofRtMsg {
				return r, false, errors.New("netlink: short route message")
			}
			r.Local = msg[7] == unix.RTN_LOCAL // rtm_type
			attrs := msg[unix.SizeofRtMsg:]
			for len(attrs) >= unix.SizeofRtAttr {
				al := int(ne.Uint16(attrs[0:]))
				at := ne.Uint16(attrs[2:])
				if al < unix.SizeofRtAttr || al > len(attrs) {
					return r, false, errors.New("netlink: malformed route attribute")
				}
				v := attrs[unix.SizeofRtAttr:al]
				switch at {
				case unix.RTA_OIF:
					if len(v) >= 4 {
						r.oif = int(ne.Uint32(v))
					}
				case unix.RTA_GATEWAY:
					if a, ok := netip.AddrFromSlice(v); ok {
						r.Gateway = a.Unmap()
					}
				case unix.RTA_VIA: // struct rtvia: family, then the address
					if len(v) > 2 {
						if a, ok := netip.AddrFromSlice(v[2:]); ok {
							r.Gateway = a.Unmap()
						}
					}
				}
				attrs = attrs[min(rtaAlign(al), len(attrs)):]
			}
			return r, true, nil
		}
	}
	return r, false, nil
}
