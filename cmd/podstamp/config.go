package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
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

// Config is everything podstamp is configured with: flags, each also settable
// through its PODSTAMP_* environment variable.
type Config struct {
	GRPCListen  string
	HTTPListen  string
	AdminListen string
	DebugListen string

	// AllowCIDRs admits senders from these networks besides loopback,
	// --node-ip and this node's pods.
	AllowCIDRs []string
	// UpstreamHeaderFromIdentity is name=attribute: upstream headers set
	// from the sending pod.
	UpstreamHeaderFromIdentity []string

	Upstream            string
	UpstreamProtocol    string
	UpstreamHeaders     []string // k=v
	UpstreamCompression string
	UpstreamTimeout     time.Duration
	UpstreamInsecure    bool
	UpstreamCAFile      string
	UpstreamCertFile    string
	UpstreamKeyFile     string

	ForwardHeaders  []string
	MaxRequestBytes int64
	ShutdownTimeout time.Duration
	DrainDelay      time.Duration

	// Resource limits: see proxy.Config.
	MaxGRPCRequestBytes     int64
	MaxJSONRequestBytes     int64
	MaxInflightBytes        int64
	MaxInflightBytesPerPeer int64 // 0: proxy's default (half the budget, at least one largest request)
	MaxConnections          int
	MaxConnectionsPerPeer   int
	MaxRequestsPerPeer      int
	MaxStreamsPerConnection int

	LogFormat   string
	LogLevel    string
	EnablePprof bool
	MaxProcs    int
	GCPercent   int
	TimerSlack  time.Duration

	ConfigFile      string
	Kubeconfig      string
	NodeName        string
	NodeIPs         []string
	HoldTimeout     time.Duration
	HoldMaxBytes    int64
	HoldNegativeTTL time.Duration
	PodDeleteGrace  time.Duration
	MetadataTTL     time.Duration

	// HoldMaxPeerRequests and HoldMaxPeerBytes bound what one peer address
	// may have held at once; HoldMaxPeerBytes 0 is HoldMaxBytes/8.
	HoldMaxPeerRequests int
	HoldMaxPeerBytes    int64

	Version bool
	Help    bool

	// set records which settings were given explicitly (flag or env), by flag
	// name; unset upstream settings fall back to OTEL_EXPORTER_OTLP_*.
	set map[string]bool
}

// DefaultConfig returns every default in one place.
func DefaultConfig() Config {
	return Config{
		GRPCListen:          ":4317",
		HTTPListen:          ":4318",
		AdminListen:         ":10291",
		DebugListen:         "127.0.0.1:10292",
		UpstreamProtocol:    proxy.ProtocolGRPC,
		UpstreamCompression: "none",
		UpstreamTimeout:     10 * time.Second,
		ForwardHeaders:      []string{"authorization"},
		MaxRequestBytes:     proxyDefaults.MaxRequestBytes,
		ShutdownTimeout:     20 * time.Second,
		LogFormat:           "text",
		LogLevel:            "info",
		MaxProcs:            1,
		GCPercent:           40,
		TimerSlack:          5 * time.Millisecond,
		HoldTimeout:         3 * time.Second,
		HoldMaxBytes:        64 << 20,
		HoldNegativeTTL:     60 * time.Second,
		HoldMaxPeerRequests: 16,
		PodDeleteGrace:      2 * time.Minute,
		MetadataTTL:         5 * time.Minute,
		set:                 map[string]bool{},

		MaxGRPCRequestBytes:     proxyDefaults.MaxGRPCRequestBytes,
		MaxJSONRequestBytes:     proxyDefaults.MaxJSONRequestBytes,
		MaxInflightBytes:        proxyDefaults.MaxInflightBytes,
		MaxConnections:          proxyDefaults.MaxConnections,
		MaxConnectionsPerPeer:   proxyDefaults.MaxConnectionsPerPeer,
		MaxRequestsPerPeer:      proxyDefaults.MaxRequestsPerPeer,
		MaxStreamsPerConnection: proxyDefaults.MaxStreamsPerConnection,
	}
}

// proxyDefaults are the proxy's own defaults, which the flags keep.
var proxyDefaults = proxy.DefaultConfig()

// envName is the PODSTAMP_* variable of a flag.
func envName(flagName string) string {
	return "PODSTAMP_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// flagDef is one flag: its help text, extra environment variables read after
// PODSTAMP_*, and whether it may be repeated.
type flagDef struct {
	name     string
	usage    string
	value    flag.Value
	extraEnv []string
}

// listValue is a repeatable or comma-separated flag. Values from the
// environment are replaced, not extended, by the first command-line value.
type listValue struct {
	p       *[]string
	fromEnv bool
	touched bool
}

func (v *listValue) String() string {
	if v.p == nil {
		return ""
	}
	return strings.Join(*v.p, ",")
}

func (v *listValue) Set(s string) error {
	if !v.touched {
		*v.p = nil
		v.touched = true
	}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*v.p = append(*v.p, part)
		}
	}
	return nil
}

// kvListValue is like listValue but splits only on commas that start a new
// k=v pair, so header values may contain commas.
type kvListValue struct{ listValue }

func (v *kvListValue) Set(s string) error {
	if !v.touched {
		*v.p = nil
		v.touched = true
	}
	*v.p = append(*v.p, splitKVList(s)...)
	return nil
}

// splitKVList splits "a=1,b=2,3" into ["a=1", "b=2,3"]: a comma followed by
// something without "=" belongs to the previous value.
func splitKVList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if strings.Contains(part, "=") || len(out) == 0 {
			if p := strings.TrimSpace(part); p != "" {
				out = append(out, p)
			}
			continue
		}
		out[len(out)-1] += "," + part
	}
	return out
}

// sizeValue parses byte sizes: 1048576, 64MiB, 64Mi, 10MB, 512KiB.
type sizeValue struct{ p *int64 }

func (v sizeValue) String() string {
	if v.p == nil {
		return ""
	}
	return formatSize(*v.p)
}

func (v sizeValue) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*v.p = n
	return nil
}

func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return !unicode.IsDigit(r) })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.TrimSpace(s[i:])
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || num == "" {
		return 0, fmt.Errorf("invalid size %q (want e.g. 64MiB or 1048576)", s)
	}
	mult := map[string]int64{
		"": 1, "B": 1,
		"K": 1 << 10, "Ki": 1 << 10, "KiB": 1 << 10, "KB": 1000, "kB": 1000,
		"M": 1 << 20, "Mi": 1 << 20, "MiB": 1 << 20, "MB": 1000 * 1000,
		"G": 1 << 30, "Gi": 1 << 30, "GiB": 1 << 30, "GB": 1000 * 1000 * 1000,
	}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (want B, KiB, MiB, GiB, KB, MB, GB)", s, unit)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return n * mult, nil
}

func formatSize(n int64) string {
	switch {
	case n != 0 && n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "GiB"
	case n != 0 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n != 0 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10)
}

func (c *Config) flags() []flagDef {
	durVar := func(p *time.Duration) flag.Value { return (*durationValue)(p) }
	strVar := func(p *string) flag.Value { return (*stringValue)(p) }
	boolVar := func(p *bool) flag.Value { return (*boolValue)(p) }
	return []flagDef{
		{name: "grpc-listen", usage: "OTLP/gRPC listen address; empty disables", value: strVar(&c.GRPCListen)},
		{name: "http-listen", usage: "OTLP/HTTP listen address; empty disables", value: strVar(&c.HTTPListen)},
		{name: "admin-listen", usage: "admin listen address (/livez, /readyz, /metrics); empty disables", value: strVar(&c.AdminListen)},
		{name: "debug-listen", usage: "debug listen address (/debug/pods lists every pod of the node; /debug/pprof with --enable-pprof): keep it on loopback; empty disables", value: strVar(&c.DebugListen)},
		{name: "allow-cidr", usage: "networks whose senders are admitted besides loopback, --node-ip and this node's pods; repeatable or comma-separated; 0.0.0.0/0,::/0 admits everyone (the explicit opt-in to an open proxy)", value: &listValue{p: &c.AllowCIDRs}},
		{name: "upstream", usage: "upstream endpoint: http://host:4317 (plaintext), https://host:4317 (TLS); for gRPC also dns:///host:4317 or host:4317 (TLS unless --upstream-insecure), round-robin over every resolved address; for http/protobuf the base URL (/v1/<signal> is appended). Falls back to OTEL_EXPORTER_OTLP_[<SIGNAL>_]ENDPOINT", value: strVar(&c.Upstream)},
		{name: "upstream-protocol", usage: "upstream protocol: grpc or http/protobuf (falls back to OTEL_EXPORTER_OTLP_[<SIGNAL>_]PROTOCOL)", value: strVar(&c.UpstreamProtocol)},
		{name: "upstream-header", usage: "static header k=v added to upstream requests; repeatable or comma-separated (merged over OTEL_EXPORTER_OTLP_[<SIGNAL>_]HEADERS)", value: &kvListValue{listValue{p: &c.UpstreamHeaders}}},
		{name: "upstream-compression", usage: "upstream compression: gzip or none (falls back to OTEL_EXPORTER_OTLP_[<SIGNAL>_]COMPRESSION)", value: strVar(&c.UpstreamCompression)},
		{name: "upstream-timeout", usage: "upstream request timeout (falls back to OTEL_EXPORTER_OTLP_[<SIGNAL>_]TIMEOUT in ms); the client's own deadline applies too", value: durVar(&c.UpstreamTimeout)},
		{name: "upstream-insecure", usage: "plaintext gRPC for endpoints without http/https scheme (falls back to OTEL_EXPORTER_OTLP_[<SIGNAL>_]INSECURE)", value: boolVar(&c.UpstreamInsecure)},
		{name: "upstream-ca-file", usage: "PEM CA bundle to verify the upstream (falls back to OTEL_EXPORTER_OTLP_[<SIGNAL>_]CERTIFICATE)", value: strVar(&c.UpstreamCAFile)},
		{name: "upstream-cert-file", usage: "PEM client certificate for mTLS (falls back to OTEL_EXPORTER_OTLP_[<SIGNAL>_]CLIENT_CERTIFICATE)", value: strVar(&c.UpstreamCertFile)},
		{name: "upstream-key-file", usage: "PEM client key for mTLS (falls back to OTEL_EXPORTER_OTLP_[<SIGNAL>_]CLIENT_KEY)", value: strVar(&c.UpstreamKeyFile)},
		{name: "forward-headers", usage: "allow-list of incoming gRPC metadata / HTTP headers copied upstream, comma-separated; empty forwards none. A tenant header (x-scope-orgid) here lets each client pick its tenant: prefer --upstream-header-from-identity", value: &listValue{p: &c.ForwardHeaders}},
		{name: "upstream-header-from-identity", usage: "name=attribute: set upstream header name from the sending pod's attribute (k8s.namespace.name, k8s.pod.name, k8s.pod.uid or k8s.node.name), e.g. x-scope-orgid=k8s.namespace.name; repeatable or comma-separated. Unset when the pod is unknown; a client's header of that name is never forwarded", value: &listValue{p: &c.UpstreamHeaderFromIdentity}},
		{name: "max-request-bytes", usage: "largest OTLP/HTTP request body after decompression (413 above); the default is the Collector's OTLP/HTTP receiver's", value: sizeValue{&c.MaxRequestBytes}},
		{name: "max-grpc-request-bytes", usage: "largest OTLP/gRPC message after decompression (RESOURCE_EXHAUSTED above); the default is the Collector's OTLP/gRPC receiver's (gRPC's own)", value: sizeValue{&c.MaxGRPCRequestBytes}},
		{name: "max-json-request-bytes", usage: "largest OTLP/HTTP JSON body after decompression, at most max-request-bytes (413 above): decoding JSON takes several times its size", value: sizeValue{&c.MaxJSONRequestBytes}},
		{name: "max-inflight-bytes", usage: "bytes of requests, and the copies they need, held at once; charged before they are read. Beyond, requests are refused with RESOURCE_EXHAUSTED and RetryInfo / 429 and Retry-After, which exporters retry. A gRPC stream takes 2 × max-grpc-request-bytes until its message is in, so this must hold at least that and 2 × max-request-bytes", value: sizeValue{&c.MaxInflightBytes}},
		{name: "max-inflight-bytes-per-peer", usage: "of max-inflight-bytes, what one peer address may hold at once, so one sender cannot spend the whole budget; beyond, its requests are refused with RESOURCE_EXHAUSTED and RetryInfo / 429 and Retry-After. Default (0): half of max-inflight-bytes, and at least what one largest request takes", value: sizeValue{&c.MaxInflightBytesPerPeer}},
		{name: "max-connections", usage: "connections on each OTLP listener; more are closed at accept", value: (*intValue)(&c.MaxConnections)},
		{name: "max-connections-per-peer", usage: "connections of one peer address, both OTLP listeners together; more are closed at accept", value: (*intValue)(&c.MaxConnectionsPerPeer)},
		{name: "max-requests-per-peer", usage: "requests of one peer address in flight at once; more are refused with RESOURCE_EXHAUSTED and RetryInfo / 429 and Retry-After", value: (*intValue)(&c.MaxRequestsPerPeer)},
		{name: "max-streams-per-connection", usage: "concurrent streams on one gRPC or HTTP/2 connection", value: (*intValue)(&c.MaxStreamsPerConnection)},
		{name: "shutdown-timeout", usage: "on SIGTERM, how long in-flight requests may take to finish", value: durVar(&c.ShutdownTimeout)},
		{name: "drain-delay", usage: "on SIGTERM, how long /readyz fails before the listeners close", value: durVar(&c.DrainDelay)},
		{name: "log-format", usage: "log format: text or json", value: strVar(&c.LogFormat)},
		{name: "log-level", usage: "log level: debug, info, warn or error", value: strVar(&c.LogLevel)},
		{name: "max-procs", usage: "processors podstamp runs Go code on at once (GOMAXPROCS); 0 uses Go's default (the CPUs or the cgroup CPU limit, at least 2). The default of 1 costs the least CPU per request: no wake-ups across threads. A GOMAXPROCS environment variable wins", value: (*intValue)(&c.MaxProcs)},
		{name: "gc-percent", usage: "garbage collection target (GOGC): the heap may grow this many percent over live data before a collection. podstamp's heap is mostly request buffers in flight; 40 keeps peak memory about 3.5 MiB lower than Go's 100 (0.6 MiB lower than 50) at no measured CPU cost. A GOGC environment variable wins", value: (*intValue)(&c.GCPercent)},
		{name: "timer-slack", usage: "how late the kernel may fire podstamp's timers to save wake-ups (Linux timer slack, as systemd's TimerSlackNSec= sets for services); 0 keeps the kernel's 50µs. Go's scheduler monitor polls every 20µs after each burst of work; 5ms lets it wake about 20 times less often, about 12% less CPU at 100 requests/s. Set at start-up by running the podstamp binary file again in place once (exec by its own path: same PID, arguments and process name), as the Go runtime starts threads before main; when that file was deleted or replaced since start, the kernel's slack stays", value: durVar(&c.TimerSlack)},
		{name: "enable-pprof", usage: "serve /debug/pprof on the debug listener", value: boolVar(&c.EnablePprof)},
		{name: "config", usage: "YAML file with the stamping rules; empty uses the defaults", value: strVar(&c.ConfigFile)},
		{name: "kubeconfig", usage: "kubeconfig file; empty uses the in-cluster configuration", value: strVar(&c.Kubeconfig)},
		{name: "node-name", usage: "this node's name: only its pods are watched. Without it and without in-cluster configuration podstamp passes data through unstamped", value: strVar(&c.NodeName), extraEnv: []string{"K8S_NODE_NAME"}},
		{name: "node-ip", usage: "an address of this node (never a pod's); repeatable or comma-separated", value: &listValue{p: &c.NodeIPs}, extraEnv: []string{"K8S_NODE_IP"}},
		{name: "hold-timeout", usage: "how long a request from a not-yet-known pod is held before it is forwarded unstamped", value: durVar(&c.HoldTimeout)},
		{name: "hold-max-bytes", usage: "bytes of requests held at once; beyond, requests are forwarded unstamped at once", value: sizeValue{&c.HoldMaxBytes}},
		{name: "hold-negative-ttl", usage: "how long an address whose hold timed out or was given up by its client is not held again", value: durVar(&c.HoldNegativeTTL)},
		{name: "hold-max-peer-requests", usage: "requests of one peer address held at once; beyond, that peer's requests are forwarded unstamped at once", value: (*intValue)(&c.HoldMaxPeerRequests)},
		{name: "hold-max-peer-bytes", usage: "bytes of one peer address's requests held at once, so one sender cannot spend the whole hold budget; 0 is hold-max-bytes/8", value: sizeValue{&c.HoldMaxPeerBytes}},
		{name: "pod-delete-grace", usage: "how long a deleted pod stays resolvable for late data on connections opened before its deletion", value: durVar(&c.PodDeleteGrace)},
		{name: "metadata-ttl", usage: "how long namespace, node and workload lookups are cached", value: durVar(&c.MetadataTTL)},
		{name: "version", usage: "print the version and exit", value: boolVar(&c.Version)},
		{name: "help", usage: "print this help and exit", value: boolVar(&c.Help)},
	}
}

type stringValue string

func (v *stringValue) String() string     { return string(*v) }
func (v *stringValue) Set(s string) error { *v = stringValue(s); return nil }

type durationValue time.Duration

func (v *durationValue) String() string { return time.Duration(*v).String() }
func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q (want e.g. 10s, 2m)", s)
	}
	*v = durationValue(d)
	return nil
}

type intValue int

func (v *intValue) String() string { return strconv.Itoa(int(*v)) }
func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("invalid integer %q", s)
	}
	*v = intValue(n)
	return nil
}

type boolValue bool

func (v *boolValue) String() string { return strconv.FormatBool(bool(*v)) }
func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("invalid boolean %q", s)
	}
	*v = boolValue(b)
	return nil
}
func (v *boolValue) IsBoolFlag() bool { return true }

// ParseConfig builds the configuration from defaults, then the environment,
// then the command line. It does not validate.
func ParseConfig(args []string, getenv func(string) string, usageOut io.Writer) (Config, error) {
	c := DefaultConfig()
	defs := c.flags()
	fs := flag.NewFlagSet("podstamp", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for _, d := range defs {
		fs.Var(d.value, d.name, d.usage)
	}
	for _, d := range defs {
		if d.name == "help" || d.name == "version" {
			continue
		}
		for _, env := range append([]string{envName(d.name)}, d.extraEnv...) {
			v, ok := lookup(getenv, env)
			if !ok {
				continue
			}
			if err := d.value.Set(v); err != nil {
				return c, fmt.Errorf("%s: %v", env, err)
			}
			if lv, ok := d.value.(*listValue); ok {
				lv.touched = false
			}
			if kv, ok := d.value.(*kvListValue); ok {
				kv.touched = false
			}
			c.set[d.name] = true
			break
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.Help = true
			return c, nil
		}
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (every setting is a --flag)", fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) { c.set[f.Name] = true })
	return c, nil
}

// lookup reads an environment variable; empty counts as unset.
func lookup(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}

// Usage writes --help: every flag, its default and its environment variables.
func Usage(w io.Writer) {
	c := DefaultConfig()
	fmt.Fprintf(w, "podstamp: a node-local OTLP proxy that stamps Kubernetes pod identity on OpenTelemetry data.\n\n")
	fmt.Fprintf(w, "Usage: podstamp [flags]\n\nEvery flag can also be set through the environment variable shown; flags win.\n\n")
	for _, d := range c.flags() {
		def := d.value.String()
		name := "--" + d.name
		switch d.value.(type) {
		case *boolValue:
		case *durationValue:
			name += " duration"
		case sizeValue:
			name += " bytes"
		case *listValue:
			name += " list"
		case *kvListValue:
			name += " k=v"
		default:
			name += " string"
		}
		fmt.Fprintf(w, "  %s\n    \t%s", name, d.usage)
		if def != "" && def != "false" && def != "0s" {
			fmt.Fprintf(w, " (default %s)", def)
		}
		if d.name != "help" && d.name != "version" {
			envs := append([]string{envName(d.name)}, d.extraEnv...)
			fmt.Fprintf(w, "\n    \tenv: %s", strings.Join(envs, ", "))
		}
		fmt.Fprintln(w)
	}
}

// Validate reports every invalid setting, each naming its flag and the reason.
func (c Config) Validate() error {
	var errs []error
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
	_, cidrErrs := parseCIDRs(c.AllowCIDRs)
	for _, e := range cidrErrs {
		bad("allow-cidr", "%v", e)
	}
	_, idErrs := parseIdentityHeaders(c.UpstreamHeaderFromIdentity)
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
		if _, err := netip.ParseAddr(ip); err != nil {
			bad("node-ip", "%q is not an IP address", ip)
		}
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
	return oneLine(errs)
}

// oneLine joins errors into a single line.
func oneLine(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
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

// otelEnv reads OTEL_EXPORTER_OTLP_<SIGNAL>_<KEY>, then OTEL_EXPORTER_OTLP_<KEY>.
// perSignal says which one was found.
func otelEnv(getenv func(string) string, sig enrich.Signal, key string) (v string, perSignal, ok bool) {
	if v, ok := lookup(getenv, "OTEL_EXPORTER_OTLP_"+strings.ToUpper(sig.String())+"_"+key); ok {
		return v, true, true
	}
	if v, ok := lookup(getenv, "OTEL_EXPORTER_OTLP_"+key); ok {
		return v, false, true
	}
	return "", false, false
}

// Upstreams resolves the upstream of every signal: explicit settings first,
// then OTEL_EXPORTER_OTLP_<SIGNAL>_*, then OTEL_EXPORTER_OTLP_*, then defaults.
func (c Config) Upstreams(getenv func(string) string) ([4]proxy.Target, error) {
	var out [4]proxy.Target
	var errs []error
	var missing []string
	for _, sig := range enrich.Signals {
		t := proxy.Target{}
		envKey := func(key string) string {
			if _, per, _ := otelEnv(getenv, sig, key); per {
				return "OTEL_EXPORTER_OTLP_" + strings.ToUpper(sig.String()) + "_" + key
			}
			return "OTEL_EXPORTER_OTLP_" + key
		}

		// Protocol.
		t.Protocol = c.UpstreamProtocol
		if !c.set["upstream-protocol"] {
			if v, _, ok := otelEnv(getenv, sig, "PROTOCOL"); ok {
				t.Protocol = v
				if v != proxy.ProtocolGRPC && v != proxy.ProtocolHTTPProtobuf {
					errs = append(errs, fmt.Errorf("%s: %q is not supported upstream (want grpc or http/protobuf)", envKey("PROTOCOL"), v))
				}
			}
		}

		// Endpoint.
		switch {
		case c.Upstream != "":
			t.Endpoint = c.Upstream
			if t.Protocol == proxy.ProtocolHTTPProtobuf {
				t.Endpoint = proxy.JoinURLPath(c.Upstream, proxy.HTTPPath(sig))
			}
		default:
			v, per, ok := otelEnv(getenv, sig, "ENDPOINT")
			if !ok {
				missing = append(missing, sig.String())
				break
			}
			t.Endpoint = v
			if t.Protocol == proxy.ProtocolHTTPProtobuf && !per {
				t.Endpoint = proxy.JoinURLPath(v, proxy.HTTPPath(sig))
			}
		}
		if t.Endpoint != "" {
			name := "--upstream"
			if c.Upstream == "" {
				name = envKey("ENDPOINT")
			}
			if err := checkEndpoint(t.Protocol, t.Endpoint); err != nil {
				errs = append(errs, fmt.Errorf("%s: %v", name, err))
			}
		}

		// Headers: OTEL generic, then per-signal, then --upstream-header.
		t.Headers = map[string]string{}
		for _, name := range []string{"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_" + strings.ToUpper(sig.String()) + "_HEADERS"} {
			v, ok := lookup(getenv, name)
			if !ok {
				continue
			}
			for _, kv := range splitKVList(v) {
				k, val, found := strings.Cut(kv, "=")
				if !found || strings.TrimSpace(k) == "" {
					errs = append(errs, fmt.Errorf("%s: %q is not k=v", name, kv))
					continue
				}
				if dec, err := url.PathUnescape(strings.TrimSpace(val)); err == nil {
					val = dec
				}
				t.Headers[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(val)
			}
		}
		for _, kv := range c.UpstreamHeaders {
			if k, v, ok := strings.Cut(kv, "="); ok {
				t.Headers[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}

		// Compression, timeout, TLS.
		t.Compression = c.UpstreamCompression
		if v, _, ok := otelEnv(getenv, sig, "COMPRESSION"); ok && !c.set["upstream-compression"] {
			t.Compression = v
			if v != "gzip" && v != "none" {
				errs = append(errs, fmt.Errorf("%s: %q is not gzip or none", envKey("COMPRESSION"), v))
			}
		}
		t.Timeout = c.UpstreamTimeout
		if v, _, ok := otelEnv(getenv, sig, "TIMEOUT"); ok && !c.set["upstream-timeout"] {
			ms, err := strconv.ParseInt(v, 10, 64)
			if err != nil || ms <= 0 {
				errs = append(errs, fmt.Errorf("%s: %q is not a positive number of milliseconds", envKey("TIMEOUT"), v))
			} else {
				t.Timeout = time.Duration(ms) * time.Millisecond
			}
		}
		t.Insecure = c.UpstreamInsecure
		if v, _, ok := otelEnv(getenv, sig, "INSECURE"); ok && !c.set["upstream-insecure"] {
			b, err := strconv.ParseBool(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not true or false", envKey("INSECURE"), v))
			}
			t.Insecure = b
		}
		for _, f := range []struct {
			flag, key string
			p         *string
			v         string
		}{
			{"upstream-ca-file", "CERTIFICATE", &t.CAFile, c.UpstreamCAFile},
			{"upstream-cert-file", "CLIENT_CERTIFICATE", &t.CertFile, c.UpstreamCertFile},
			{"upstream-key-file", "CLIENT_KEY", &t.KeyFile, c.UpstreamKeyFile},
		} {
			*f.p = f.v
			if f.v == "" {
				if v, _, ok := otelEnv(getenv, sig, f.key); ok {
					*f.p = v
					if _, err := os.Stat(v); err != nil {
						errs = append(errs, fmt.Errorf("%s: %v", envKey(f.key), err))
					}
				}
			}
		}
		out[sig] = t
	}
	if len(missing) == len(enrich.Signals) {
		errs = append([]error{errors.New("--upstream: required (or OTEL_EXPORTER_OTLP_ENDPOINT)")}, errs...)
	} else if len(missing) > 0 {
		errs = append([]error{fmt.Errorf("--upstream: required for %s (or OTEL_EXPORTER_OTLP_ENDPOINT)", strings.Join(missing, ", "))}, errs...)
	}
	return out, oneLine(dedupe(errs))
}

// checkEndpoint checks that an endpoint has a shape the protocol accepts.
func checkEndpoint(protocol, ep string) error {
	if protocol == proxy.ProtocolHTTPProtobuf {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%q is not an http:// or https:// URL", ep)
		}
		return nil
	}
	switch {
	case strings.HasPrefix(ep, "http://"), strings.HasPrefix(ep, "https://"):
		u, err := url.Parse(ep)
		if err != nil || u.Host == "" {
			return fmt.Errorf("%q is not a valid URL", ep)
		}
	case strings.HasPrefix(ep, "dns:"), strings.HasPrefix(ep, "unix:"):
	case strings.Contains(ep, "://"):
		return fmt.Errorf("%q: unsupported scheme (want http, https or dns)", ep)
	default:
		if _, _, err := net.SplitHostPort(ep); err != nil {
			return fmt.Errorf("%q is not a URL or host:port", ep)
		}
	}
	return nil
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
