package netns

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// iptables runs one iptables (or ip6tables, for v6) command in the node
// namespace and registers its undo: -A/-I => -D, -N => -F and -X.
func (n *Node) iptables(v6 bool, args ...string) {
	n.tb.Helper()
	bin := "iptables"
	if v6 {
		bin = "ip6tables"
	}
	full := append([]string{"netns", "exec", n.NS, bin, "-w", "5"}, args...)
	n.must("ip", full...)
	undo := append([]string(nil), full...)
	var extra []string
	for i, a := range args {
		j := len(full) - len(args) + i
		switch a {
		case "-A", "-I":
			undo[j] = "-D"
			if a == "-I" && i+2 < len(args) {
				if _, err := strconv.Atoi(args[i+2]); err == nil { // -I CHAIN N: drop the position
					undo = append(undo[:j+2], undo[j+3:]...)
				}
			}
		case "-N":
			undo[j] = "-X"
			extra = append([]string(nil), full...)
			extra[j] = "-F"
		}
	}
	n.tb.Cleanup(func() {
		if _, err := run("ip", "netns", "exec", n.NS, "true"); err != nil {
			return // namespace already gone, and its rules with it
		}
		if extra != nil {
			_, _ = run("ip", extra...)
		}
		if _, err := run("ip", undo...); err != nil {
			n.tb.Errorf("cleanup: %v", err)
		}
	})
}

// chain creates a nat chain unless this node has it already.
func (n *Node) chain(v6 bool, name string) bool {
	n.mu.Lock()
	key := name
	if v6 {
		key = "6/" + name
	}
	if n.chains == nil {
		n.chains = map[string]bool{}
	}
	had := n.chains[key]
	n.chains[key] = true
	n.mu.Unlock()
	if !had {
		n.iptables(v6, "-t", "nat", "-N", name)
	}
	return !had
}

// HostPort installs what the CNI portmap plugin installs for a pod with
// hostPort == containerPort for each port (as in the problem write-up):
//
//	PREROUTING/OUTPUT  -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
//	CNI-HOSTPORT-DNAT  -p tcp -m multiport --dports P... -j CNI-DN-<id>
//	CNI-DN-<id>        -s 10.244.0.0/16 -p tcp --dport P -j CNI-HOSTPORT-SETMARK
//	CNI-DN-<id>        -s 127.0.0.1     -p tcp --dport P -j CNI-HOSTPORT-SETMARK
//	CNI-DN-<id>        -p tcp --dport P -j DNAT --to-destination POD:P
//	CNI-HOSTPORT-SETMARK -j MARK --set-xmark 0x2000/0x2000
//	POSTROUTING        -j CNI-HOSTPORT-MASQ
//	CNI-HOSTPORT-MASQ  -m mark --mark 0x2000/0x2000 -j MASQUERADE
//
// plus the bridge plugin's per-pod masquerade of traffic leaving the pod
// network. It returns the rules as iptables -S prints them.
func (n *Node) HostPort(pod netip.Addr, ports ...int) string {
	n.tb.Helper()
	id := strings.ReplaceAll(pod.String(), ".", "")
	dn := "CNI-DN-" + id
	if n.chain(false, "CNI-HOSTPORT-DNAT") {
		n.chain(false, "CNI-HOSTPORT-SETMARK")
		n.chain(false, "CNI-HOSTPORT-MASQ")
		n.iptables(false, "-t", "nat", "-A", "CNI-HOSTPORT-SETMARK", "-m", "comment", "--comment", "CNI portfwd masquerade mark", "-j", "MARK", "--set-xmark", "0x2000/0x2000")
		n.iptables(false, "-t", "nat", "-A", "CNI-HOSTPORT-MASQ", "-m", "mark", "--mark", "0x2000/0x2000", "-j", "MASQUERADE")
		n.iptables(false, "-t", "nat", "-A", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT")
		n.iptables(false, "-t", "nat", "-A", "OUTPUT", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT")
		n.iptables(false, "-t", "nat", "-A", "POSTROUTING", "-m", "comment", "--comment", "CNI portfwd requiring masquerade", "-j", "CNI-HOSTPORT-MASQ")
	}
	n.chain(false, dn)
	var list []string
	for _, p := range ports {
		ps := strconv.Itoa(p)
		list = append(list, ps)
		n.iptables(false, "-t", "nat", "-A", dn, "-s", ClusterNet.String(), "-p", "tcp", "--dport", ps, "-j", "CNI-HOSTPORT-SETMARK")
		n.iptables(false, "-t", "nat", "-A", dn, "-s", "127.0.0.1", "-p", "tcp", "--dport", ps, "-j", "CNI-HOSTPORT-SETMARK")
		n.iptables(false, "-t", "nat", "-A", dn, "-p", "tcp", "--dport", ps, "-j", "DNAT", "--to-destination", pod.String()+":"+ps)
	}
	n.iptables(false, "-t", "nat", "-A", "CNI-HOSTPORT-DNAT", "-p", "tcp", "-m", "multiport", "--dports", strings.Join(list, ","), "-j", dn)
	n.bridgeMasq(pod)
	return n.NATRules(false)
}

// bridgeMasq adds the bridge plugin's ipMasq rules for one pod.
func (n *Node) bridgeMasq(pod netip.Addr) {
	c := "CNI-" + strings.ReplaceAll(pod.String(), ".", "")
	if !n.chain(false, c) {
		return
	}
	n.iptables(false, "-t", "nat", "-A", c, "-d", ClusterNet.String(), "-j", "ACCEPT")
	n.iptables(false, "-t", "nat", "-A", c, "!", "-d", "224.0.0.0/4", "-j", "MASQUERADE")
	n.iptables(false, "-t", "nat", "-A", "POSTROUTING", "-s", pod.String(), "-j", c)
}

// ClusterIP installs the kube-proxy (iptables mode) rules of a ClusterIP
// Service with internalTrafficPolicy: Local whose only local endpoint is
// pod: DNAT of vip:port to pod:targetPort, masquerade only for sources
// outside the cluster network (so pod sources keep their address).
func (n *Node) ClusterIP(vip netip.Addr, port int, pod netip.Addr, targetPort int) string {
	n.tb.Helper()
	v6 := vip.Is6()
	cluster := ClusterNet.String()
	if v6 {
		cluster = PodCIDR6.String()
	}
	if n.chain(v6, "KUBE-SERVICES") {
		n.chain(v6, "KUBE-MARK-MASQ")
		n.chain(v6, "KUBE-POSTROUTING")
		n.iptables(v6, "-t", "nat", "-A", "KUBE-MARK-MASQ", "-j", "MARK", "--or-mark", "0x4000")
		n.iptables(v6, "-t", "nat", "-A", "KUBE-POSTROUTING", "-m", "mark", "!", "--mark", "0x4000/0x4000", "-j", "RETURN")
		n.iptables(v6, "-t", "nat", "-A", "KUBE-POSTROUTING", "-j", "MARK", "--xor-mark", "0x4000")
		n.iptables(v6, "-t", "nat", "-A", "KUBE-POSTROUTING", "-j", "MASQUERADE")
		n.iptables(v6, "-t", "nat", "-I", "PREROUTING", "1", "-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES")
		n.iptables(v6, "-t", "nat", "-I", "OUTPUT", "1", "-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES")
		n.iptables(v6, "-t", "nat", "-A", "POSTROUTING", "-m", "comment", "--comment", "kubernetes postrouting rules", "-j", "KUBE-POSTROUTING")
	}
	id := fmt.Sprintf("%X", []byte(vip.String()+strconv.Itoa(port)))
	if len(id) > 16 {
		id = id[len(id)-16:]
	}
	svl, sep := "KUBE-SVL-"+id, "KUBE-SEP-"+id
	n.chain(v6, svl)
	n.chain(v6, sep)
	ps, tps := strconv.Itoa(port), strconv.Itoa(targetPort)
	comment := "e2e/podstamp:otlp cluster IP"
	dst := pod.String() + ":" + tps
	if v6 {
		dst = "[" + pod.String() + "]:" + tps
	}
	n.iptables(v6, "-t", "nat", "-A", "KUBE-SERVICES", "-d", vip.String(), "-p", "tcp", "--dport", ps, "-m", "comment", "--comment", comment, "-j", svl)
	n.iptables(v6, "-t", "nat", "-A", svl, "!", "-s", cluster, "-d", vip.String(), "-p", "tcp", "--dport", ps, "-j", "KUBE-MARK-MASQ")
	n.iptables(v6, "-t", "nat", "-A", svl, "-j", sep)
	n.iptables(v6, "-t", "nat", "-A", sep, "-s", pod.String(), "-j", "KUBE-MARK-MASQ")
	n.iptables(v6, "-t", "nat", "-A", sep, "-p", "tcp", "-j", "DNAT", "--to-destination", dst)
	return n.NATRules(v6)
}

// NATRules returns the node's nat table as iptables -S prints it.
func (n *Node) NATRules(v6 bool) string {
	n.tb.Helper()
	bin := "iptables"
	if v6 {
		bin = "ip6tables"
	}
	return n.must("ip", "netns", "exec", n.NS, bin, "-w", "5", "-t", "nat", "-S")
}

// Conntrack lists the node's connection tracking entries for TCP port port
// (original and reply tuples), as conntrack -L prints them.
func (n *Node) Conntrack(port int) string {
	n.tb.Helper()
	out, err := run("ip", "netns", "exec", n.NS, "conntrack", "-L", "-p", "tcp", "--orig-port-dst", strconv.Itoa(port))
	if err != nil {
		return err.Error()
	}
	return out
}
