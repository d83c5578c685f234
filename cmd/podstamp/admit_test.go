package main

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/podstamp/podstamp/enrich"
	"github.com/podstamp/podstamp/proxy"
)

// TestAdmissionFlags: closed by default (only authorization forwarded, the
// debug listener on loopback), --allow-cidr and
// --upstream-header-from-identity from flags and PODSTAMP_* variables, and
// every bad value fails with one line naming its flag.
func TestAdmissionFlags(t *testing.T) {
	def := DefaultConfig()
	if !slices.Equal(def.ForwardHeaders, []string{"authorization"}) {
		t.Errorf("default --forward-headers %q, want authorization only", def.ForwardHeaders)
	}
	if def.DebugListen != "127.0.0.1:10292" || def.AdminListen != ":10291" || len(def.AllowCIDRs) != 0 {
		t.Errorf("defaults: debug %q admin %q allow %q", def.DebugListen, def.AdminListen, def.AllowCIDRs)
	}

	cfg, err := ParseConfig([]string{"--allow-cidr", "192.168.0.0/16", "--allow-cidr", "fd00::/8"}, env(map[string]string{
		"PODSTAMP_ALLOW_CIDR":                    "10.0.0.0/8, 172.16.0.0/12",
		"PODSTAMP_UPSTREAM_HEADER_FROM_IDENTITY": "x-scope-orgid=k8s.namespace.name,X-Pod=k8s.pod.name",
		"PODSTAMP_DEBUG_LISTEN":                  "127.0.0.1:7777",
	}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.AllowCIDRs, ",") != "192.168.0.0/16,fd00::/8" {
		t.Errorf("repeated flag should replace the env list: %q", cfg.AllowCIDRs)
	}
	if strings.Join(cfg.UpstreamHeaderFromIdentity, ",") != "x-scope-orgid=k8s.namespace.name,X-Pod=k8s.pod.name" || cfg.DebugListen != "127.0.0.1:7777" {
		t.Errorf("env not applied: %q %q", cfg.UpstreamHeaderFromIdentity, cfg.DebugListen)
	}
	cfg.Upstream = "http://127.0.0.1:4317"
	if err := cfg.Validate(); err != nil {
		t.Errorf("valid settings: %v", err)
	}
	ids, errs := parseIdentityHeaders(cfg.UpstreamHeaderFromIdentity)
	if len(errs) != 0 || !slices.Equal(identityNames(ids), []string{"x-scope-orgid", "x-pod"}) {
		t.Errorf("identity headers %v (%v), want lower-case names", identityNames(ids), errs)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--debug-listen", "10292"}, "--debug-listen: "},
		{[]string{"--allow-cidr", "10.0.0.0/33"}, "--allow-cidr: "},
		{[]string{"--allow-cidr", "10.0.0.1"}, "--allow-cidr: "},
		{[]string{"--upstream-header-from-identity", "x-scope-orgid"}, "--upstream-header-from-identity: "},
		{[]string{"--upstream-header-from-identity", "x-scope-orgid=k8s.pod.ip"}, "--upstream-header-from-identity: "},
		{[]string{"--upstream-header-from-identity", "content-type=k8s.pod.name"}, "--upstream-header-from-identity: "},
		{[]string{"--upstream-header-from-identity", "bad header=k8s.pod.name"}, "--upstream-header-from-identity: "},
		{[]string{"--upstream-header-from-identity", "x-a=k8s.pod.name,X-A=k8s.pod.uid"}, "--upstream-header-from-identity: "},
		{[]string{"--enable-pprof", "--debug-listen", ""}, "--enable-pprof: "},
	} {
		cfg, err := ParseConfig(append([]string{"--upstream", "http://127.0.0.1:4317"}, c.args...), env(nil), nil)
		if err != nil {
			t.Fatalf("%v: parse: %v", c.args, err)
		}
		err = cfg.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: %v, want one line starting with %q", c.args, err, c.want)
		}
	}
}

// fakeLocal is a pod cache whose addresses are on the node, and who knows
// no pod by its address.
type fakeLocal map[netip.Addr]bool

func (f fakeLocal) IsLocal(a netip.Addr) bool   { return f[a] }
func (f fakeLocal) ByIP(netip.Addr) *enrich.Pod { return nil }

// TestAdmissionPolicy: loopback, --node-ip, --allow-cidr and what the pod
// cache says is local are admitted; everyone else is refused with a reason
// that names --allow-cidr; 0.0.0.0/0,::/0 opens it completely.
func TestAdmissionPolicy(t *testing.T) {
	allow, errs := parseCIDRs([]string{"192.168.10.0/24", "fd00:1::/64"})
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	pod := netip.MustParseAddr("10.244.1.7")
	withCache := admission{
		nodeIPs: []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")},
		allow:   allow,
		local:   fakeLocal{pod: true},
	}
	passThrough := withCache
	passThrough.local = nil

	for _, c := range []struct {
		peer               string
		withCache, noCache bool
	}{
		{"127.0.0.1", true, true},
		{"127.0.0.2", true, true},
		{"::1", true, true},
		{"10.0.0.1", true, true},        // --node-ip
		{"::ffff:10.0.0.1", true, true}, // the same, v4-mapped
		{"fd00::1", true, true},         // --node-ip, IPv6
		{"192.168.10.77", true, true},   // --allow-cidr
		{"fd00:1::5", true, true},       // --allow-cidr, IPv6
		{"10.244.1.7", true, false},     // a pod of this node: IsLocal
		{"10.244.2.9", false, false},    // a pod elsewhere: IsLocal false
		{"192.168.11.1", false, false},  // outside --allow-cidr
		{"203.0.113.5", false, false},   // the internet
		{"fd00:2::5", false, false},     // outside the IPv6 --allow-cidr
	} {
		peer := netip.MustParseAddr(c.peer)
		for _, x := range []struct {
			name string
			a    admission
			want bool
		}{{"with pod cache", withCache, c.withCache}, {"pass-through", passThrough, c.noCache}} {
			err := x.a.admit(peer)
			if (err == nil) != x.want {
				t.Errorf("%s, %s: admit = %v, want admitted %v", x.name, c.peer, err, x.want)
			}
			if err != nil && !strings.Contains(err.Error(), "--allow-cidr") {
				t.Errorf("%s, %s: refusal %q does not name --allow-cidr", x.name, c.peer, err)
			}
		}
	}
	if err := withCache.admit(netip.Addr{}); err == nil {
		t.Error("an unknown sender address was admitted")
	}

	open, _ := parseCIDRs([]string{"0.0.0.0/0", "::/0"})
	everyone := admission{allow: open}
	for _, s := range []string{"203.0.113.5", "2001:db8::1", "::ffff:198.51.100.1"} {
		if err := everyone.admit(netip.MustParseAddr(s)); err != nil {
			t.Errorf("--allow-cidr 0.0.0.0/0,::/0 refused %s: %v", s, err)
		}
	}
}

// TestIdentityHook: headers come from the pod the cache has at the peer's
// address; an unknown pod, or an empty value, sets nothing.
func TestIdentityHook(t *testing.T) {
	ids, errs := parseIdentityHeaders([]string{"x-scope-orgid=k8s.namespace.name", "x-pod=k8s.pod.name", "x-uid=k8s.pod.uid", "x-node=k8s.node.name"})
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	known := netip.MustParseAddr("10.244.1.7")
	hook := identityHook(ids, func(a netip.Addr) *enrich.Pod {
		if a == known {
			return &enrich.Pod{Namespace: "team-a", Name: "checkout-1", UID: "u-1"} // no node name
		}
		return nil
	})
	got := hook(known)
	want := []string{"x-scope-orgid", "team-a", "x-pod", "checkout-1", "x-uid", "u-1"}
	if !slices.Equal(got, want) {
		t.Errorf("known pod: %q, want %q", got, want)
	}
	if got := hook(netip.MustParseAddr("10.244.1.8")); len(got) != 0 {
		t.Errorf("unknown pod: %q, want nothing", got)
	}
}

// TestWireAdmission: identity headers need the pod cache, and may not also
// be static upstream headers (which would override them).
func TestWireAdmission(t *testing.T) {
	cfg := DefaultConfig()
	cfg.UpstreamHeaderFromIdentity = []string{"x-scope-orgid=k8s.namespace.name"}
	set, errs := cfg.check()
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	var opts proxy.Options
	if err := wireAdmission(set, nil, &opts); err == nil || !strings.HasPrefix(err.Error(), "--upstream-header-from-identity: ") {
		t.Errorf("without a pod cache: %v", err)
	}
	if opts.Admit == nil || opts.Admit(netip.MustParseAddr("10.1.2.3")) == nil || opts.Admit(netip.MustParseAddr("127.0.0.1")) != nil {
		t.Error("pass-through mode: admission not wired to loopback, --node-ip and --allow-cidr")
	}

	k := fakeLocal{}
	set.upstreams[enrich.Logs].Headers = map[string]string{"x-scope-orgid": "static"}
	if err := wireAdmission(set, k, &proxy.Options{}); err == nil || !strings.Contains(err.Error(), "static upstream header") {
		t.Errorf("identity header that is also static: %v", err)
	}
	set.upstreams[enrich.Logs].Headers = nil
	opts = proxy.Options{}
	if err := wireAdmission(set, k, &opts); err != nil {
		t.Fatal(err)
	}
	if opts.IdentityHeaders == nil || !slices.Equal(opts.IdentityHeaderNames, []string{"x-scope-orgid"}) {
		t.Errorf("identity hook not wired: names %q", opts.IdentityHeaderNames)
	}
}
