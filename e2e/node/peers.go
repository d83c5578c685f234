package node

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Peers returns the remote addresses of the established TCP connections to
// the given local ports in the network namespace of process pid, read from
// /proc/<pid>/net/tcp and tcp6 (IPv4-mapped addresses are given as IPv4):
// the peer addresses a receiver's sockets see.
func Peers(pid int, ports ...int) ([]string, error) {
	var out []string
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) < 4 || fields[3] != "01" { // ESTABLISHED
				continue
			}
			_, lport, err := parseProcAddr(fields[1])
			if err != nil || !slices.Contains(ports, lport) {
				continue
			}
			raddr, _, err := parseProcAddr(fields[2])
			if err != nil {
				return nil, err
			}
			if s := raddr.Unmap().String(); !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// parseProcAddr parses "0100007F:10E1" (IPv4) or the 32-digit IPv6 form:
// each 32-bit word in host (little-endian) byte order, the port in hex.
func parseProcAddr(s string) (netip.Addr, int, error) {
	host, port, ok := strings.Cut(s, ":")
	if !ok {
		return netip.Addr{}, 0, fmt.Errorf("address %q", s)
	}
	p, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return netip.Addr{}, 0, err
	}
	raw, err := hex.DecodeString(host)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.Addr{}, 0, fmt.Errorf("address %q", s)
	}
	for i := 0; i < len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	a, _ := netip.AddrFromSlice(raw)
	return a, int(p), nil
}
