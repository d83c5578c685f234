package netns

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Fixed addresses of the node network. They exist only inside the
// namespaces this package creates.
var (
	NodeIP     = netip.MustParseAddr("10.77.0.2")
	NodeIP6    = netip.MustParseAddr("fd00:77::2")
	WireIP     = netip.MustParseAddr("10.77.0.1")
	WireIP6    = netip.MustParseAddr("fd00:77::1")
	Gateway    = netip.MustParseAddr("10.244.0.1")
	Gateway6   = netip.MustParseAddr("fd00:10:244::1")
	PodCIDR    = netip.MustParsePrefix("10.244.0.0/24")
	PodCIDR6   = netip.MustParsePrefix("fd00:10:244::/64")
	ClusterNet = netip.MustParsePrefix("10.244.0.0/16")
)

// Tools are the commands this package runs, by Debian package.
var Tools = map[string]string{"ip": "iproute2", "iptables": "iptables", "ip6tables": "iptables", "conntrack": "conntrack"}

// Prefix returns a short random prefix for one run's namespace names.
func Prefix() string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return "ps" + hex.EncodeToString(b)
}

// run runs a command and returns its combined output, or an error that
// carries the command line and output.
func run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Node is a node's network namespace with its bridge and node address.
type Node struct {
	tb     testing.TB
	Prefix string
	// NS is the node namespace, Wire the namespace on the other end of the
	// node's eth0 (10.77.0.1).
	NS, Wire string

	mu     sync.Mutex
	next   int
	chains map[string]bool
}

// NewNode creates the node and wire namespaces. Cleanup deletes them.
func NewNode(tb testing.TB, prefix string) *Node {
	tb.Helper()
	n := &Node{tb: tb, Prefix: prefix, NS: prefix + "-node", Wire: prefix + "-wire"}
	n.addNS(n.NS)
	n.addNS(n.Wire)
	n.must("ip", "link", "add", "name", "eth0", "netns", n.NS, "type", "veth", "peer", "name", "eth0", "netns", n.Wire)
	n.must("ip", "-n", n.Wire, "addr", "add", WireIP.String()+"/24", "dev", "eth0")
	n.must("ip", "-n", n.Wire, "addr", "add", WireIP6.String()+"/64", "dev", "eth0", "nodad")
	n.must("ip", "-n", n.Wire, "link", "set", "eth0", "up")
	n.must("ip", "-n", n.NS, "addr", "add", NodeIP.String()+"/24", "dev", "eth0")
	n.must("ip", "-n", n.NS, "addr", "add", NodeIP6.String()+"/64", "dev", "eth0", "nodad")
	n.must("ip", "-n", n.NS, "link", "set", "eth0", "up")
	// A bridge without an address of its own takes the lowest of its
	// ports' and changes it as pods come and go: pods' ARP entries for the
	// gateway then point at a MAC the bridge dropped, and their open
	// connections stall until the entries expire. The CNI bridge plugin
	// gives the bridge a fixed address for the same reason.
	n.must("ip", "-n", n.NS, "link", "add", "cni0", "address", "02:00:0a:f4:00:01", "type", "bridge")
	n.must("ip", "-n", n.NS, "addr", "add", Gateway.String()+"/24", "dev", "cni0")
	n.must("ip", "-n", n.NS, "addr", "add", Gateway6.String()+"/64", "dev", "cni0", "nodad")
	n.must("ip", "-n", n.NS, "link", "set", "cni0", "up")
	for _, s := range []string{
		"net.ipv4.ip_forward=1",
		"net.ipv6.conf.all.forwarding=1",
		"net.bridge.bridge-nf-call-iptables=1",
		"net.bridge.bridge-nf-call-ip6tables=1",
	} {
		n.must("ip", "netns", "exec", n.NS, "sysctl", "-qw", s)
	}
	return n
}

func (n *Node) must(name string, args ...string) string {
	n.tb.Helper()
	out, err := run(name, args...)
	if err != nil {
		n.tb.Fatal(err)
	}
	return out
}

func (n *Node) addNS(name string) {
	n.tb.Helper()
	n.must("ip", "netns", "add", name)
	n.tb.Cleanup(func() {
		if _, err := os.Stat(filepath.Join("/run/netns", name)); os.IsNotExist(err) {
			return // deleted already (Pod.Delete)
		}
		if _, err := run("ip", "netns", "del", name); err != nil {
			n.tb.Errorf("cleanup: %v", err)
		}
	})
	n.must("ip", "-n", name, "link", "set", "lo", "up")
}

// Pod is a pod's network namespace.
type Pod struct {
	Name string
	NS   string
	// IPs are the pod's addresses: IPv4 first, then IPv6 when given.
	IPs  []netip.Addr
	veth string
	node *Node
	gone bool
}

// AddPod creates a pod namespace wired into the bridge with the given
// addresses (IPv4 inside PodCIDR, optional IPv6 inside PodCIDR6).
func (n *Node) AddPod(name string, ips ...netip.Addr) *Pod {
	n.tb.Helper()
	n.mu.Lock()
	n.next++
	veth := "veth" + strconv.Itoa(n.next)
	n.mu.Unlock()
	p := &Pod{Name: name, NS: n.Prefix + "-" + name, IPs: ips, veth: veth, node: n}
	n.addNS(p.NS)
	n.must("ip", "link", "add", "name", veth, "netns", n.NS, "type", "veth", "peer", "name", "eth0", "netns", p.NS)
	n.must("ip", "-n", n.NS, "link", "set", veth, "master", "cni0")
	n.must("ip", "-n", n.NS, "link", "set", veth, "up")
	for _, ip := range ips {
		if ip.Is4() {
			n.must("ip", "-n", p.NS, "addr", "add", ip.String()+"/24", "dev", "eth0")
		} else {
			n.must("ip", "-n", p.NS, "addr", "add", ip.String()+"/64", "dev", "eth0", "nodad")
		}
	}
	n.must("ip", "-n", p.NS, "link", "set", "eth0", "up")
	for _, ip := range ips {
		if ip.Is4() {
			n.must("ip", "-n", p.NS, "route", "add", "default", "via", Gateway.String())
		} else {
			n.must("ip", "-n", p.NS, "-6", "route", "add", "default", "via", Gateway6.String())
		}
	}
	return p
}

// Delete removes the pod's namespace (and with it its veth) now, as a
// container runtime does when a pod ends; its addresses become free.
func (p *Pod) Delete() {
	p.node.tb.Helper()
	if p.gone {
		return
	}
	p.gone = true
	p.node.must("ip", "netns", "del", p.NS)
}

// Cmd returns a command that runs inside namespace ns.
func Cmd(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Do runs fn on an OS thread switched into namespace ns; sockets fn creates
// belong to ns for their whole life. The calling goroutine is not affected.
func Do(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it ends with this goroutine and never
			// runs other goroutines in the wrong namespace.
			errc <- errors.Join(ferr, fmt.Errorf("setns back: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Listen opens a TCP listener inside namespace ns.
func Listen(ns, addr string) (net.Listener, error) {
	var l net.Listener
	err := Do(ns, func() (err error) {
		l, err = net.Listen("tcp", addr)
		return err
	})
	return l, err
}

// DialContext dials a TCP address from inside namespace ns. It suits
// http.Transport.DialContext for reaching listeners inside a namespace.
func DialContext(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := Do(ns, func() (err error) {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// Forwarder exposes a TCP service of the caller's namespace inside another
// namespace.
type Forwarder struct {
	ns, target string
	// Addr is the address the forwarder listens on inside the namespace.
	Addr string

	mu     sync.Mutex
	l      net.Listener
	conns  map[net.Conn]bool
	closed bool
	wg     sync.WaitGroup
}

// Forward listens on addr inside namespace ns and forwards every connection
// to target in the caller's namespace. Cleanup closes the listener and every
// open connection.
func Forward(tb testing.TB, ns, addr, target string) *Forwarder {
	tb.Helper()
	f := &Forwarder{ns: ns, target: target, conns: map[net.Conn]bool{}}
	l, err := Listen(ns, addr)
	if err != nil {
		tb.Fatalf("forward %s in %s: %v", addr, ns, err)
	}
	f.Addr = l.Addr().String()
	f.l = l
	f.wg.Add(1)
	go f.serve(l)
	tb.Cleanup(f.close)
	return f
}

// Down closes the listener and every forwarded connection: clients now get
// "connection refused", as when the target is down.
func (f *Forwarder) Down() {
	f.mu.Lock()
	l := f.l
	f.l = nil
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	if l != nil {
		l.Close()
	}
}

// Up listens again on the same address after Down.
func (f *Forwarder) Up() error {
	l, err := Listen(f.ns, f.Addr)
	if err != nil {
		return err
	}
	f.mu.Lock()
	if f.closed || f.l != nil {
		f.mu.Unlock()
		l.Close()
		return errors.New("forwarder closed or already up")
	}
	f.l = l
	f.wg.Add(1)
	f.mu.Unlock()
	go f.serve(l)
	return nil
}

func (f *Forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || f.l == nil {
		c.Close()
		return false
	}
	f.conns[c] = true
	return true
}

func (f *Forwarder) untrack(cs ...net.Conn) {
	f.mu.Lock()
	for _, c := range cs {
		delete(f.conns, c)
	}
	f.mu.Unlock()
}

func (f *Forwarder) serve(l net.Listener) {
	defer f.wg.Done()
	for {
		in, err := l.Accept()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer in.Close()
			if !f.track(in) {
				return
			}
			defer f.untrack(in)
			out, err := net.DialTimeout("tcp", f.target, 5*time.Second)
			if err != nil {
				return
			}
			defer out.Close()
			if !f.track(out) {
				return
			}
			defer f.untrack(out)
			done := make(chan struct{}, 2)
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
				done <- struct{}{}
			}
			go pipe(out, in)
			go pipe(in, out)
			<-done
			<-done
		}()
	}
}

func (f *Forwarder) close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.Down()
	f.wg.Wait()
}
