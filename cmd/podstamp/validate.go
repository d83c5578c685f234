package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/podstamp/podstamp/enrich"
	"github.com/podstamp/podstamp/proxy"
)

// settings are what run wires podstamp from: the configuration's values
// parsed, each once.
type settings struct {
	upstreams [4]proxy.Target
	rules     *enrich.Rules
	allow     []netip.Prefix   // --allow-cidr
	identity  []identityHeader // --upstream-header-from-identity
	nodeIPs   []netip.Addr     // --node-ip
}

// resolve checks everything podstamp is configured with (the flags, the
// OTEL_EXPORTER_OTLP_* environment and the --config rule file) and parses
// each value once. The error names every problem, in one line.
func (c Config) resolve(getenv func(string) string) (settings, error) {
	s, errs := c.check()
	var upErrs problems
	s.upstreams, upErrs = c.upstreams(getenv)
	errs = append(errs, upErrs...)
	if _, err := os.Stat(c.ConfigFile); c.ConfigFile == "" || err == nil { // else check named it
		rules, err := enrich.Load(c.ConfigFile)
		if err != nil {
			errs.add("--config: %w", err)
		}
		// --kubeconfig, when given, is how podstamp reaches the API server
		// (a kubeconfig may carry the service account's token); without
		// it podstamp uses the in-cluster service account, which
		// auth_type: kubeConfig did not ask for.
		if rules.AuthType() == "kubeConfig" && c.Kubeconfig == "" {
			errs.add("--config: auth_type: kubeConfig: set --kubeconfig (podstamp reads neither KUBECONFIG nor ~/.kube/config)")
		}
		if n := rules.FilterNode(); n != "" && n != c.NodeName {
			// podstamp watches one node: the filter may only name it.
			errs.add("--config: filter names node %q, but podstamp watches the pods of --node-name %q", n, c.NodeName)
		}
		if !c.ReadNode && rules.Needs().NodeMetadata {
			errs.add("--read-node: false, but the rules stamp node labels, annotations or UID, which are read from the node")
		}
		s.rules = rules
	}
	return s, oneLine(dedupe(errs))
}

// Validate reports every invalid setting, each naming its flag and the
// reason, in one line. resolve checks the environment and rule file too.
func (c Config) Validate() error {
	_, errs := c.check()
	return oneLine(errs)
}

// problems collects every problem found, to report them all at once.
type problems []error

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Errorf(format, args...)) }

// check validates the settings of the flags and parses those run needs
// parsed.
func (c Config) check() (settings, problems) {
	var s settings
	var errs problems
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("--%s: %s", name, fmt.Sprintf(format, args...)))
	}
	for _, l := range []struct{ name, v string }{
		{"grpc-listen", c.GRPCListen}, {"http-listen", c.HTTPListen}, {"admin-listen", c.AdminListen},
		{"debug-listen", c.DebugListen},
	} {
		if l.v == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(l.v); err != nil {
			bad(l.name, "%q is not host:port", l.v)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			bad(l.name, "%q has an invalid port", l.v)
		}
	}
	if c.GRPCListen == "" && c.HTTPListen == "" {
		bad("grpc-listen", "both --grpc-listen and --http-listen are empty: nothing would be received")
	}
	switch c.UpstreamProtocol {
	case proxy.ProtocolGRPC, proxy.ProtocolHTTPProtobuf:
	default:
		bad("upstream-protocol", "%q is not grpc or http/protobuf", c.UpstreamProtocol)
	}
	switch c.UpstreamCompression {
	case "gzip", "none", "":
	default:
		bad("upstream-compression", "%q is not gzip or none", c.UpstreamCompression)
	}
	switch c.GRPCTransport {
	case proxy.TransportGRPC, proxy.TransportLean, "":
	default:
		bad("grpc-transport", "%q is not grpc or lean", c.GRPCTransport)
	}
	switch c.UpstreamTransport {
	case proxy.TransportGRPC, proxy.TransportAuto, "":
	case proxy.TransportLean:
		if c.UpstreamProtocol != proxy.ProtocolGRPC {
			bad("upstream-transport", "lean is a gRPC client; --upstream-protocol is %s", c.UpstreamProtocol)
		}
	default:
		bad("upstream-transport", "%q is not auto, grpc or lean", c.UpstreamTransport)
	}
	for _, h := range c.UpstreamHeaders {
		if k, _, ok := strings.Cut(h, "="); !ok || strings.TrimSpace(k) == "" {
			bad("upstream-header", "%q is not k=v", h)
		}
	}
	if c.UpstreamTimeout <= 0 {
		bad("upstream-timeout", "must be positive, got %s", c.UpstreamTimeout)
	}
	for _, f := range []struct{ name, v string }{
		{"upstream-ca-file", c.UpstreamCAFile}, {"upstream-cert-file", c.UpstreamCertFile},
		{"upstream-key-file", c.UpstreamKeyFile}, {"config", c.ConfigFile}, {"kubeconfig", c.Kubeconfig},
		{"kubelet-ca", c.KubeletCA},
	} {
		if f.v == "" {
			continue
		}
		if _, err := os.Stat(f.v); err != nil {
			bad(f.name, "%v", err)
		}
	}
	if (c.UpstreamCertFile == "") != (c.UpstreamKeyFile == "") {
		bad("upstream-cert-file", "--upstream-cert-file and --upstream-key-file must be given together")
	}
	for _, h := range c.ForwardHeaders {
		if !validHeaderName(h) {
			bad("forward-headers", "%q is not a valid header name", h)
		}
	}
	if c.EnablePprof && c.DebugListen == "" {
		bad("enable-pprof", "needs --debug-listen: pprof is served only there")
	}
	var cidrErrs, idErrs []error
	s.allow, cidrErrs = parseCIDRs(c.AllowCIDRs)
	for _, e := range cidrErrs {
		bad("allow-cidr", "%v", e)
	}
	s.identity, idErrs = parseIdentityHeaders(c.UpstreamHeaderFromIdentity)
	for _, e := range idErrs {
		bad("upstream-header-from-identity", "%v", e)
	}
	for _, f := range []struct {
		name string
		v    int64
	}{{"max-request-bytes", c.MaxRequestBytes}, {"max-grpc-request-bytes", c.MaxGRPCRequestBytes}, {"max-json-request-bytes", c.MaxJSONRequestBytes}} {
		if f.v <= 0 || f.v > 1<<31-1-(1<<20) {
			bad(f.name, "must be between 1 and 2047MiB, got %d", f.v)
		}
	}
	for _, f := range []struct {
		name string
		v    int64
	}{{"max-inflight-bytes", c.MaxInflightBytes}, {"max-connections", int64(c.MaxConnections)}, {"max-connections-per-peer", int64(c.MaxConnectionsPerPeer)},
		{"max-requests-per-peer", int64(c.MaxRequestsPerPeer)}, {"max-streams-per-connection", int64(c.MaxStreamsPerConnection)}} {
		if f.v <= 0 {
			bad(f.name, "must be positive, got %d", f.v)
		}
	}
	if c.MaxInflightBytesPerPeer < 0 {
		bad("max-inflight-bytes-per-peer", "must not be negative, got %d", c.MaxInflightBytesPerPeer)
	}
	if c.ShutdownTimeout <= 0 {
		bad("shutdown-timeout", "must be positive, got %s", c.ShutdownTimeout)
	}
	if c.DrainDelay < 0 {
		bad("drain-delay", "must not be negative, got %s", c.DrainDelay)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("log-format", "%q is not text or json", c.LogFormat)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		bad("log-level", "%v", err)
	}
	for _, ip := range c.NodeIPs {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			bad("node-ip", "%q is not an IP address", ip)
			continue
		}
		s.nodeIPs = append(s.nodeIPs, a.Unmap())
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"hold-timeout", c.HoldTimeout}, {"hold-negative-ttl", c.HoldNegativeTTL},
		{"pod-delete-grace", c.PodDeleteGrace}, {"metadata-ttl", c.MetadataTTL},
	} {
		if d.v <= 0 {
			bad(d.name, "must be positive, got %s", d.v)
		}
	}
	switch c.PodSource {
	case podSourceAPIServer:
		for _, f := range []string{"kubelet-url", "kubelet-ca", "kubelet-insecure-skip-tls-verify", "kubelet-poll-interval"} {
			if c.set[f] {
				bad(f, "only used with --pod-source kubelet")
			}
		}
	case podSourceKubelet:
		if c.KubeletURL == "" && len(c.NodeIPs) == 0 {
			bad("kubelet-url", "required for pod-source kubelet when no node-ip is set")
		}
		if c.KubeletURL != "" {
			if u, err := url.Parse(c.KubeletURL); err != nil || u.Scheme != "https" || u.Host == "" {
				bad("kubelet-url", "%q: want https://host:port", c.KubeletURL)
			}
		}
		if c.KubeletInsecure && c.KubeletCA != "" {
			bad("kubelet-insecure-skip-tls-verify", "refused with kubelet-ca: verify against the CA or not at all")
		}
		if c.KubeletPollInterval <= 0 {
			bad("kubelet-poll-interval", "must be positive, got %s", c.KubeletPollInterval)
		}
	default:
		bad("pod-source", "%q is not apiserver or kubelet", c.PodSource)
	}
	if c.HoldMaxBytes <= 0 {
		bad("hold-max-bytes", "must be positive, got %d", c.HoldMaxBytes)
	}
	if c.HoldMaxPeerRequests <= 0 {
		bad("hold-max-peer-requests", "must be positive, got %d", c.HoldMaxPeerRequests)
	}
	if c.HoldMaxPeerBytes < 0 {
		bad("hold-max-peer-bytes", "must be 0 (hold-max-bytes/8) or more, got %d", c.HoldMaxPeerBytes)
	}
	if c.GCPercent < 1 {
		bad("gc-percent", "must be 1 or more, got %d", c.GCPercent)
	}
	if c.TimerSlack < 0 || c.TimerSlack > time.Second {
		bad("timer-slack", "must be between 0 and 1s, got %v", c.TimerSlack)
	}
	if c.MaxProcs < 0 {
		bad("max-procs", "must be 0 (Go's default) or more, got %d", c.MaxProcs)
	}
	return s, errs
}

// oneLine joins errors into a single line, each error's own lines too.
func oneLine(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = strings.ReplaceAll(e.Error(), "\n", "; ")
	}
	return errors.New(strings.Join(msgs, "; "))
}

func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for _, r := range h {
		if r > unicode.MaxASCII || !(unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("!#$%&'*+-.^_`|~", r)) {
			return false
		}
	}
	return true
}

func dedupe(errs []error) []error {
	seen := map[string]bool{}
	var out []error
	for _, e := range errs {
		if !seen[e.Error()] {
			seen[e.Error()] = true
			out = append(out, e)
		}
	}
	return out
}
