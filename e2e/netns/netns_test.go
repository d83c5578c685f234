package netns

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces and iptables need root")
	}
	for tool, pkg := range Tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s missing (apt-get install %s)", tool, pkg)
		}
	}
}

// peerSeen accepts one connection on l and returns its remote address.
func peerSeen(t *testing.T, l net.Listener, dialNS, addr string) netip.Addr {
	t.Helper()
	got := make(chan netip.Addr, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- netip.Addr{}
			return
		}
		got <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
		c.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := DialContext(dialNS)(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, dialNS, err)
	}
	defer c.Close()
	select {
	case a := <-got:
		return a
	case <-ctx.Done():
		t.Fatalf("no connection accepted for %s", addr)
	}
	return netip.Addr{}
}

func TestNodeNetwork(t *testing.T) {
	needRoot(t)
	prefix := Prefix()
	t.Cleanup(func() {
		// After every cleanup of the subtest ran, nothing of this run is left.
		left, _ := filepath.Glob("/run/netns/" + prefix + "-*")
		if len(left) > 0 {
			t.Errorf("namespaces left behind: %v", left)
		}
	})
	t.Run("paths", func(t *testing.T) {
		n := NewNode(t, prefix)
		appIP, appIP6 := netip.MustParseAddr("10.244.0.12"), netip.MustParseAddr("fd00:10:244::12")
		agentIP := netip.MustParseAddr("10.244.0.3")
		app := n.AddPod("app", appIP, appIP6)
		agent := n.AddPod("agent", agentIP)

		// hostNetwork listener on the node address sees the pod address.
		l, err := Listen(n.NS, NodeIP.String()+":4317")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if got := peerSeen(t, l, app.NS, NodeIP.String()+":4317"); got != appIP {
			t.Errorf("host network listener saw %v, want %v", got, appIP)
		}
		l6, err := Listen(n.NS, "["+NodeIP6.String()+"]:4317")
		if err != nil {
			t.Fatal(err)
		}
		defer l6.Close()
		if got := peerSeen(t, l6, app.NS, "["+NodeIP6.String()+"]:4317"); got != appIP6 {
			t.Errorf("IPv6 host network listener saw %v, want %v", got, appIP6)
		}
		l.Close()

		// hostPort: the agent pod sees the bridge address.
		rules := n.HostPort(agentIP, 4317, 4318)
		if !strings.Contains(rules, "CNI-HOSTPORT-MASQ") {
			t.Fatalf("rules: %s", rules)
		}
		al, err := Listen(agent.NS, agentIP.String()+":4317")
		if err != nil {
			t.Fatal(err)
		}
		defer al.Close()
		if got := peerSeen(t, al, app.NS, NodeIP.String()+":4317"); got != Gateway {
			t.Errorf("hostPort: agent saw %v, want the gateway %v", got, Gateway)
		}
		if ct := n.Conntrack(4317); !strings.Contains(ct, "src="+appIP.String()) {
			t.Errorf("conntrack does not show the original source:\n%s", ct)
		}

		// ClusterIP with internalTrafficPolicy: Local keeps the pod address.
		vip := netip.MustParseAddr("10.96.0.50")
		n.ClusterIP(vip, 4317, agentIP, 4317)
		if got := peerSeen(t, al, app.NS, vip.String()+":4317"); got != appIP {
			t.Errorf("ClusterIP: agent saw %v, want %v", got, appIP)
		}

		// Forward exposes a loopback service of this namespace inside the pod.
		up, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer up.Close()
		fwd := Forward(t, app.NS, "127.0.0.1:0", up.Addr().String())
		if got := peerSeen(t, up, app.NS, fwd.Addr); !got.IsLoopback() {
			t.Errorf("forwarded connection from %v", got)
		}
		fwd.Down()
		if c, err := DialContext(app.NS)(context.Background(), "tcp", fwd.Addr); err == nil {
			c.Close()
			t.Error("forwarder still accepting after Down")
		}
		if err := fwd.Up(); err != nil {
			t.Fatal(err)
		}
		if got := peerSeen(t, up, app.NS, fwd.Addr); !got.IsLoopback() {
			t.Errorf("forwarded connection after Up from %v", got)
		}

		app.Delete()
		if _, err := os.Stat("/run/netns/" + app.NS); !os.IsNotExist(err) {
			t.Errorf("pod namespace still there after Delete: %v", err)
		}
		// Its address can be reused by a new pod.
		n.AddPod("app2", appIP)
	})
}
