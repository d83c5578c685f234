package main

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

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

func (c *Config) flags() []flagDef {
	durVar := func(p *time.Duration) flag.Value { return (*durationValue)(p) }
	strVar := func(p *string) flag.Value { return (*stringValue)(p) }
	boolVar := func(p *bool) flag.Value { return (*boolValue)(p) }
	return []flagDef{
		{name: "grpc-listen", usage: "OTLP/gRPC listen address; empty disables", value: strVar(&c.GRPCListen)},
		{name: "grpc-transport", usage: "gRPC ingress server: lean (HTTP/2 of podstamp's own: each call's answer is written by the goroutine that handled it, with the same limits as grpc-go's server; with the lean upstream transport about a quarter less CPU per request in the benchmark) or grpc (grpc-go's server)", value: strVar(&c.GRPCTransport)},
		{name: "http-listen", usage: "OTLP/HTTP listen address; empty disables", value: strVar(&c.HTTPListen)},
		{name: "admin-listen", usage: "admin listen address (/livez, /readyz, /metrics); empty disables", value: strVar(&c.AdminListen)},
		{name: "debug-listen", usage: "debug listen address (/debug/pods lists every pod of the node; /debug/pprof with --enable-pprof): keep it on loopback; empty disables", value: strVar(&c.DebugListen)},
		{name: "allow-cidr", usage: "networks whose senders are admitted besides loopback, --node-ip and this node's pods; repeatable or comma-separated; 0.0.0.0/0,::/0 admits everyone (the explicit opt-in to an open proxy)", value: &listValue{p: &c.AllowCIDRs}},
		{name: "upstream", usage: "upstream endpoint: http://host:4317 (plaintext), https://host:4317 (TLS); for gRPC also host:4317 or a gRPC target (dns:///host:4317, passthrough:///host:4317, unix:path) (TLS unless --upstream-insecure), round-robin over every resolved address; for http/protobuf the base URL (/v1/<signal> is appended). Falls back to OTEL_EXPORTER_OTLP_[<SIGNAL>_]ENDPOINT", value: strVar(&c.Upstream)},
		{name: "upstream-protocol", usage: "upstream protocol: grpc or http/protobuf (falls back to OTEL_EXPORTER_OTLP_[<SIGNAL>_]PROTOCOL)", value: strVar(&c.UpstreamProtocol)},
		{name: "upstream-header", usage: "static header k=v added to upstream requests; repeatable or comma-separated (merged over OTEL_EXPORTER_OTLP_[<SIGNAL>_]HEADERS)", value: &kvListValue{listValue{p: &c.UpstreamHeaders}}},
		{name: "upstream-compression", usage: "upstream compression: gzip or none (falls back to OTEL_EXPORTER_OTLP_[<SIGNAL>_]COMPRESSION)", value: strVar(&c.UpstreamCompression)},
		{name: "upstream-transport", usage: "gRPC upstream client: auto (lean for host:port endpoints, which http(s)://host[:port] and dns:///host:port are; grpc for unix: and other gRPC targets), lean (HTTP/2 connections of podstamp's own, one call at a time each, written and read by the goroutine that forwards the request; round-robin per call over the resolved addresses, resolved again every 30 s; HTTPS_PROXY through http:// proxies) or grpc (grpc-go's client)", value: strVar(&c.UpstreamTransport)},
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
		{name: "gc-percent", usage: "garbage collection target (GOGC): the heap may grow this many percent over live data before a collection. podstamp's heap is mostly request buffers in flight, so a target below Go's 100 keeps peak memory lower. A GOGC environment variable wins", value: (*intValue)(&c.GCPercent)},
		{name: "timer-slack", usage: "how late the kernel may fire podstamp's timers to save wake-ups (Linux timer slack, as systemd's TimerSlackNSec= sets for services); 0 keeps the kernel's 50µs. A larger slack lets Go's scheduler monitor, which polls after each burst of work, wake less often. Set at start-up by running the podstamp binary file again in place once (exec by its own path: same PID, arguments and process name), as the Go runtime starts threads before main; when that file was deleted or replaced since start, the kernel's slack stays", value: durVar(&c.TimerSlack)},
		{name: "enable-pprof", usage: "serve /debug/pprof on the debug listener", value: boolVar(&c.EnablePprof)},
		{name: "config", usage: "YAML file with the stamping rules; empty uses the defaults", value: strVar(&c.ConfigFile)},
		{name: "kubeconfig", usage: "kubeconfig file; empty uses the in-cluster configuration", value: strVar(&c.Kubeconfig)},
		{name: "node-name", usage: "this node's name: only its pods are watched. Without it and without in-cluster configuration podstamp passes data through unstamped", value: strVar(&c.NodeName), extraEnv: []string{"K8S_NODE_NAME"}},
		{name: "node-ip", usage: "an address of this node (never a pod's); repeatable or comma-separated", value: &listValue{p: &c.NodeIPs}, extraEnv: []string{"K8S_NODE_IP"}},
		{name: "pod-source", usage: "where this node's pods are read: apiserver (one list and watch of the node's pods) or kubelet (the kubelet's /pods, read every kubelet-poll-interval and at once for a sender not yet known: no pod requests to the API server at all; needs get on nodes/pods, which kubelets authorize from Kubernetes 1.33 on, nodes/proxy before). The node and any metadata the rules ask for are still read from the API server", value: strVar(&c.PodSource)},
		{name: "read-node", usage: "read this node from the API server at start and hourly: its addresses, and its pod CIDRs, whose gateways tell SNAT (nat_suspected) apart. false when podstamp may not get nodes, as the chart's ClusterRole grants only when a rule needs the node: the read would only be refused. Refused as false when a rule stamps node labels, annotations or UID", value: boolVar(&c.ReadNode)},
		{name: "kubelet-url", usage: "the kubelet's HTTPS address for pod-source kubelet; empty: https://<first node-ip>:10250", value: strVar(&c.KubeletURL)},
		{name: "kubelet-ca", usage: "PEM file of the CA that signs the kubelet's serving certificate; empty: the API server's CA (kubelets with serving certificates from the cluster, serverTLSBootstrap)", value: strVar(&c.KubeletCA)},
		{name: "kubelet-insecure-skip-tls-verify", usage: "do not verify the kubelet's serving certificate (self-signed kubelet certificates); podstamp's credentials then go to whoever answers on kubelet-url. An explicit opt-in, refused with kubelet-ca", value: boolVar(&c.KubeletInsecure)},
		{name: "kubelet-poll-interval", usage: "for pod-source kubelet: how often the kubelet's pods are read when no sender waits for its pod", value: durVar(&c.KubeletPollInterval)},
		{name: "hold-timeout", usage: "how long a request from a not-yet-known pod is held before it is forwarded unstamped", value: durVar(&c.HoldTimeout)},
		{name: "hold-max-bytes", usage: "bytes of requests held at once; beyond, requests are forwarded unstamped at once", value: sizeValue{&c.HoldMaxBytes}},
		{name: "hold-negative-ttl", usage: "how long an address whose hold timed out or was given up by its client is not held again", value: durVar(&c.HoldNegativeTTL)},
		{name: "hold-max-peer-requests", usage: "requests of one peer address held at once; beyond, that peer's requests are forwarded unstamped at once", value: (*intValue)(&c.HoldMaxPeerRequests)},
		{name: "hold-max-peer-bytes", usage: "bytes of one peer address's requests held at once, so one sender cannot spend the whole hold budget; 0 is hold-max-bytes/8", value: sizeValue{&c.HoldMaxPeerBytes}},
		{name: "pod-delete-grace", usage: "how long a deleted pod stays resolvable for late data on connections opened before its deletion", value: durVar(&c.PodDeleteGrace)},
		{name: "metadata-ttl", usage: "how long namespace, node and workload lookups are cached (the node itself is read again once an hour when no rule stamps its labels, annotations or UID)", value: durVar(&c.MetadataTTL)},
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
