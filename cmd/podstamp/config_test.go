package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podstamp/podstamp/enrich"
	"github.com/podstamp/podstamp/proxy"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// TestValidate: every invalid setting fails with one line naming its flag.
func TestValidate(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string // the error starts with this flag
	}{
		{"grpc-listen", []string{"--grpc-listen", "4317"}, nil, "--grpc-listen: "},
		{"http-listen-port", []string{"--http-listen", ":99999"}, nil, "--http-listen: "},
		{"no-listeners", []string{"--grpc-listen", "", "--http-listen", ""}, nil, "--grpc-listen: "},
		{"protocol", []string{"--upstream-protocol", "http/json"}, nil, "--upstream-protocol: "},
		{"compression", []string{"--upstream-compression", "zstd"}, nil, "--upstream-compression: "},
		{"transport", []string{"--upstream-transport", "quic"}, nil, "--upstream-transport: "},
		{"ingress transport", []string{"--grpc-transport", "quic"}, nil, "--grpc-transport: \"quic\" is not grpc or lean"},
		{"lean over http", []string{"--upstream-transport", "lean", "--upstream-protocol", "http/protobuf"}, nil, "--upstream-transport: lean is a gRPC client"},
		{"header", []string{"--upstream-header", "novalue"}, nil, "--upstream-header: "},
		{"timeout", []string{"--upstream-timeout", "0s"}, nil, "--upstream-timeout: "},
		{"ca-file", []string{"--upstream-ca-file", missing}, nil, "--upstream-ca-file: "},
		{"cert-without-key", []string{"--upstream-cert-file", os.Args[0]}, nil, "--upstream-cert-file: "},
		{"forward-headers", []string{"--forward-headers", "bad header"}, nil, "--forward-headers: "},
		{"max-request-bytes", []string{"--max-request-bytes", "0"}, nil, "--max-request-bytes: "},
		{"max-request-bytes-huge", []string{"--max-request-bytes", "4GiB"}, nil, "--max-request-bytes: "},
		{"max-grpc-request-bytes", []string{"--max-grpc-request-bytes", "0"}, nil, "--max-grpc-request-bytes: "},
		{"max-json-request-bytes-huge", []string{"--max-json-request-bytes", "4GiB"}, nil, "--max-json-request-bytes: "},
		{"max-inflight-bytes", []string{"--max-inflight-bytes", "0"}, nil, "--max-inflight-bytes: "},
		{"max-connections", []string{"--max-connections", "0"}, nil, "--max-connections: "},
		{"max-connections-per-peer", []string{"--max-connections-per-peer", "-1"}, nil, "--max-connections-per-peer: "},
		{"max-requests-per-peer", []string{"--max-requests-per-peer", "0"}, nil, "--max-requests-per-peer: "},
		{"max-streams-per-connection", []string{"--max-streams-per-connection", "0"}, nil, "--max-streams-per-connection: "},
		{"shutdown-timeout", []string{"--shutdown-timeout", "-1s"}, nil, "--shutdown-timeout: "},
		{"log-format", []string{"--log-format", "xml"}, nil, "--log-format: "},
		{"log-level", []string{"--log-level", "loud"}, nil, "--log-level: "},
		{"node-ip", []string{"--node-ip", "10.0.0.300"}, nil, "--node-ip: "},
		{"node-ip-env", nil, map[string]string{"K8S_NODE_IP": "nope"}, "--node-ip: "},
		{"hold-timeout", []string{"--hold-timeout", "0s"}, nil, "--hold-timeout: "},
		{"hold-max-bytes", []string{"--hold-max-bytes", "0"}, nil, "--hold-max-bytes: "},
		{"hold-max-peer-requests", []string{"--hold-max-peer-requests", "0"}, nil, "--hold-max-peer-requests: "},
		{"config", []string{"--config", missing}, nil, "--config: "},
		{"kubeconfig", []string{"--kubeconfig", missing}, nil, "--kubeconfig: "},
		{"pod-source", []string{"--pod-source", "etcd"}, nil, "--pod-source: "},
		{"kubelet-url-needed", []string{"--pod-source", "kubelet"}, nil, "--kubelet-url: "},
		{"kubelet-url-scheme", []string{"--pod-source", "kubelet", "--kubelet-url", "http://10.0.0.1:10255"}, nil, "--kubelet-url: "},
		{"kubelet-ca", []string{"--pod-source", "kubelet", "--node-ip", "10.0.0.1", "--kubelet-ca", missing}, nil, "--kubelet-ca: "},
		{"kubelet-insecure-with-ca", []string{"--pod-source", "kubelet", "--node-ip", "10.0.0.1", "--kubelet-ca", os.Args[0], "--kubelet-insecure-skip-tls-verify"}, nil, "--kubelet-insecure-skip-tls-verify: "},
		{"kubelet-poll-interval", []string{"--pod-source", "kubelet", "--node-ip", "10.0.0.1", "--kubelet-poll-interval", "0s"}, nil, "--kubelet-poll-interval: "},
		{"kubelet-flag-without-source", []string{"--kubelet-url", "https://10.0.0.1:10250"}, nil, "--kubelet-url: "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := ParseConfig(append([]string{"--upstream", "http://127.0.0.1:4317"}, c.args...), env(c.env), nil)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			err = cfg.Validate()
			if err == nil {
				t.Fatal("no error")
			}
			if msg := err.Error(); !strings.HasPrefix(msg, c.want) || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line starting with %q", msg, c.want)
			}
		})
	}

	cfg, err := ParseConfig([]string{"--upstream", "http://127.0.0.1:4317"}, env(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

// TestParseErrors: bad values fail parsing with the flag or variable named.
func TestParseErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--upstream-timeout", "soon"}, nil, "upstream-timeout"},
		{[]string{"--max-request-bytes", "64 parsecs"}, nil, "max-request-bytes"},
		{[]string{"--no-such-flag"}, nil, "no-such-flag"},
		{[]string{"stray"}, nil, "stray"},
		{nil, map[string]string{"PODSTAMP_SHUTDOWN_TIMEOUT": "forever"}, "PODSTAMP_SHUTDOWN_TIMEOUT"},
		{nil, map[string]string{"PODSTAMP_ENABLE_PPROF": "maybe"}, "PODSTAMP_ENABLE_PPROF"},
	} {
		_, err := ParseConfig(c.args, env(c.env), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v %v: error %v, want it to name %s", c.args, c.env, err, c.want)
		}
	}
}

// TestEnvAndFlags: PODSTAMP_* variables set every flag, flags win, and the
// downward-API variables fill node name and IPs.
func TestEnvAndFlags(t *testing.T) {
	e := map[string]string{
		"PODSTAMP_GRPC_LISTEN":       "127.0.0.1:5317",
		"PODSTAMP_UPSTREAM":          "http://collector:4317",
		"PODSTAMP_UPSTREAM_HEADER":   "x-a=1,x-b=2,3",
		"PODSTAMP_MAX_REQUEST_BYTES": "8MiB",
		"PODSTAMP_ENABLE_PPROF":      "true",
		"PODSTAMP_HOLD_TIMEOUT":      "5s",
		"PODSTAMP_FORWARD_HEADERS":   "authorization",
		"K8S_NODE_NAME":              "node-a",
		"K8S_NODE_IP":                "10.0.0.1,10.0.0.2",
	}
	cfg, err := ParseConfig([]string{"--grpc-listen", "127.0.0.1:6317", "--forward-headers", "x-tenant", "--forward-headers", "x-org"}, env(e), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.GRPCListen != "127.0.0.1:6317" {
		t.Errorf("flag did not win over env: %q", cfg.GRPCListen)
	}
	if cfg.Upstream != "http://collector:4317" || cfg.MaxRequestBytes != 8<<20 || !cfg.EnablePprof || cfg.HoldTimeout != 5*time.Second {
		t.Errorf("env not applied: %+v", cfg)
	}
	if strings.Join(cfg.UpstreamHeaders, "|") != "x-a=1|x-b=2,3" {
		t.Errorf("headers %q", cfg.UpstreamHeaders)
	}
	if strings.Join(cfg.ForwardHeaders, ",") != "x-tenant,x-org" {
		t.Errorf("repeated flag should replace the env list: %q", cfg.ForwardHeaders)
	}
	if cfg.NodeName != "node-a" || strings.Join(cfg.NodeIPs, ",") != "10.0.0.1,10.0.0.2" {
		t.Errorf("downward API env: %q %q", cfg.NodeName, cfg.NodeIPs)
	}
	e["PODSTAMP_NODE_NAME"] = "node-b"
	cfg, _ = ParseConfig(nil, env(e), nil)
	if cfg.NodeName != "node-b" {
		t.Errorf("PODSTAMP_NODE_NAME should win over K8S_NODE_NAME: %q", cfg.NodeName)
	}
}

// TestUpstreams: the OTEL_EXPORTER_OTLP_* fallback, per signal.
func TestUpstreams(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, []byte("x"), 0o600)

	t.Run("flags", func(t *testing.T) {
		cfg, _ := ParseConfig([]string{"--upstream", "http://c:4318/", "--upstream-protocol", "http/protobuf",
			"--upstream-header", "x-k=v", "--upstream-compression", "gzip", "--upstream-timeout", "3s"},
			env(map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://other:1/x", "OTEL_EXPORTER_OTLP_TIMEOUT": "100"}), nil)
		ts, err := cfg.Upstreams(env(map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://other:1/x", "OTEL_EXPORTER_OTLP_TIMEOUT": "100"}))
		if err != nil {
			t.Fatal(err)
		}
		for _, sig := range enrich.Signals {
			want := "http://c:4318" + proxy.HTTPPath(sig)
			if ts[sig].Endpoint != want || ts[sig].Protocol != proxy.ProtocolHTTPProtobuf || ts[sig].Headers["x-k"] != "v" ||
				ts[sig].Compression != "gzip" || ts[sig].Timeout != 3*time.Second {
				t.Errorf("%s: %+v, want endpoint %s", sig, ts[sig], want)
			}
		}
	})

	t.Run("otel-env", func(t *testing.T) {
		e := env(map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT":          "http://gw:4318",
			"OTEL_EXPORTER_OTLP_PROTOCOL":          "http/protobuf",
			"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT":     "http://logs:9000/custom/logs",
			"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL":  "grpc",
			"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT":  "metrics:4317",
			"OTEL_EXPORTER_OTLP_METRICS_INSECURE":  "true",
			"OTEL_EXPORTER_OTLP_HEADERS":           "api-key=s%20ecret,x-tenant=a",
			"OTEL_EXPORTER_OTLP_TRACES_HEADERS":    "x-tenant=b",
			"OTEL_EXPORTER_OTLP_COMPRESSION":       "gzip",
			"OTEL_EXPORTER_OTLP_TIMEOUT":           "2500",
			"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT":    "1000",
			"OTEL_EXPORTER_OTLP_CERTIFICATE":       ca,
			"OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT": "https://prof:4318/v1development/profiles",
		})
		cfg, _ := ParseConfig(nil, e, nil)
		ts, err := cfg.Upstreams(e)
		if err != nil {
			t.Fatal(err)
		}
		check := func(sig enrich.Signal, endpoint, protocol string, timeout time.Duration, tenant string) {
			t.Helper()
			got := ts[sig]
			if got.Endpoint != endpoint || got.Protocol != protocol || got.Timeout != timeout || got.Headers["x-tenant"] != tenant ||
				got.Headers["api-key"] != "s ecret" || got.Compression != "gzip" || got.CAFile != ca {
				t.Errorf("%s: %+v", sig, got)
			}
		}
		check(enrich.Traces, "http://gw:4318/v1/traces", proxy.ProtocolHTTPProtobuf, time.Second, "b")
		check(enrich.Logs, "http://logs:9000/custom/logs", proxy.ProtocolHTTPProtobuf, 2500*time.Millisecond, "a")
		check(enrich.Metrics, "metrics:4317", proxy.ProtocolGRPC, 2500*time.Millisecond, "a")
		check(enrich.Profiles, "https://prof:4318/v1development/profiles", proxy.ProtocolHTTPProtobuf, 2500*time.Millisecond, "a")
		if !ts[enrich.Metrics].Insecure || ts[enrich.Traces].Insecure {
			t.Error("per-signal INSECURE not applied to metrics only")
		}
		// By default the gRPC upstream takes the lean transport where it can
		// (proxy.TransportAuto); an HTTP upstream has no gRPC transport.
		if ts[enrich.Metrics].Transport != proxy.TransportAuto || ts[enrich.Traces].Transport != "" {
			t.Errorf("transports: metrics %q, traces %q", ts[enrich.Metrics].Transport, ts[enrich.Traces].Transport)
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("the default transports with an http/protobuf upstream: %v", err)
		}
		if cfg.GRPCTransport != proxy.TransportLean {
			t.Errorf("default --grpc-transport %q, want lean", cfg.GRPCTransport)
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, c := range []struct {
			env  map[string]string
			want string
		}{
			{nil, "--upstream: required"},
			{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:4317"}, "--upstream: required for metrics, logs, profiles"},
			{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://x"}, "OTEL_EXPORTER_OTLP_ENDPOINT: "},
			{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL: "},
			{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:1", "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT": "10s"}, "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT: "},
			{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:1", "OTEL_EXPORTER_OTLP_CLIENT_KEY": "/nonexistent"}, "OTEL_EXPORTER_OTLP_CLIENT_KEY: "},
		} {
			cfg, _ := ParseConfig(nil, env(c.env), nil)
			_, err := cfg.Upstreams(env(c.env))
			if err == nil || !strings.HasPrefix(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%v: error %v, want one line starting with %q", c.env, err, c.want)
			}
		}
	})
}

// TestHelp: --help lists every flag with its environment variable.
func TestHelp(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"--help"}, env(nil), &out); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	for _, d := range c.flags() {
		if !strings.Contains(out.String(), "--"+d.name) {
			t.Errorf("--help lacks --%s", d.name)
		}
		if d.name != "help" && d.name != "version" && !strings.Contains(out.String(), envName(d.name)) {
			t.Errorf("--help lacks %s", envName(d.name))
		}
	}
	for _, s := range []string{"K8S_NODE_NAME", "K8S_NODE_IP", "OTEL_EXPORTER_OTLP_", "(default :4317)", "(default 64MiB)"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("--help lacks %q", s)
		}
	}
	out.Reset()
	if err := run(t.Context(), []string{"--version"}, env(nil), &out); err != nil || !strings.HasPrefix(out.String(), "podstamp "+version) {
		t.Errorf("--version: %q %v", out.String(), err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1048576": 1 << 20, "64MiB": 64 << 20, "64Mi": 64 << 20, "10MB": 10e6, "512KiB": 512 << 10, "1GiB": 1 << 30} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d %v, want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1.5MiB", "1 parsec"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) accepted", in)
		}
	}
}

func TestMaxProcs(t *testing.T) {
	c, err := ParseConfig([]string{"--max-procs", "3"}, func(string) string { return "" }, io.Discard)
	if err != nil || c.MaxProcs != 3 {
		t.Fatalf("--max-procs 3: %d, %v", c.MaxProcs, err)
	}
	if c := DefaultConfig(); c.MaxProcs != 1 {
		t.Fatalf("default max-procs %d, want 1", c.MaxProcs)
	}
	c.MaxProcs = -1
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "max-procs") {
		t.Fatalf("negative max-procs: %v", err)
	}
	c.MaxProcs, c.GCPercent = 1, 0
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "gc-percent") {
		t.Fatalf("gc-percent 0: %v", err)
	}
	if _, err := ParseConfig([]string{"--max-procs", "two"}, func(string) string { return "" }, io.Discard); err == nil {
		t.Fatal("--max-procs two accepted")
	}
}

func TestTimerSlackFlag(t *testing.T) {
	if c := DefaultConfig(); c.TimerSlack != 25*time.Millisecond {
		t.Errorf("default timer slack %v", c.TimerSlack)
	}
	for _, v := range []string{"-1ms", "2s"} {
		c, err := ParseConfig([]string{"--timer-slack", v}, func(string) string { return "" }, io.Discard)
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), "timer-slack") {
			t.Errorf("--timer-slack %s: %v", v, err)
		}
	}
}

// TestResolveReportsEveryProblem: a bad flag, a bad OTEL variable and a bad
// rule file are reported together, in one line.
func TestResolveReportsEveryProblem(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte("metadata: [nope]\nassociation: [nope]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://x"})
	cfg, err := ParseConfig([]string{"--log-format", "xml", "--config", rules}, e, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = cfg.resolve(e)
	if err == nil || strings.Contains(err.Error(), "\n") {
		t.Fatalf("error %v, want one line", err)
	}
	for _, want := range []string{"--log-format: ", "OTEL_EXPORTER_OTLP_ENDPOINT: ", "--config: ", "metadata[0]", "association[0]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	cfg, _ = ParseConfig([]string{"--upstream", "passthrough:///127.0.0.1:4317"}, env(nil), nil)
	if set, err := cfg.resolve(env(nil)); err != nil || set.rules == nil || set.upstreams[enrich.Traces].Endpoint != "passthrough:///127.0.0.1:4317" {
		t.Errorf("passthrough upstream: %+v, %v", set.upstreams[enrich.Traces], err)
	}
}

// TestResolveProcessorBlock: a k8sattributes processor block is a rule file;
// its filter may name only the node podstamp watches.
func TestResolveProcessorBlock(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte("auth_type: serviceAccount\nfilter: {node: node-a}\nextract: {metadata: [k8s.pod.name]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kc := filepath.Join(t.TempDir(), "rules-kubeconfig.yaml")
	if err := os.WriteFile(kc, []byte("auth_type: kubeConfig\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		node, want string
		args       []string
	}{
		{"node-a", "", []string{"--config", rules}},
		{"node-b", `filter names node "node-a", but podstamp watches the pods of --node-name "node-b"`, []string{"--config", rules}},
		{"node-a", "", []string{"--config", rules, "--kubeconfig", kc}},
		{"node-a", "auth_type: kubeConfig: set --kubeconfig", []string{"--config", kc}},
	} {
		cfg, err := ParseConfig(append([]string{"--upstream", "http://127.0.0.1:4317", "--node-name", tc.node}, tc.args...), env(nil), nil)
		if err != nil {
			t.Fatal(err)
		}
		set, err := cfg.resolve(env(nil))
		switch {
		case tc.want == "" && (err != nil || set.rules == nil):
			t.Errorf("%v: %v", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestReadNode: --read-node=false is refused when a rule needs the node,
// and accepted otherwise.
func TestReadNode(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte("metadata: [k8s.pod.name, k8s.node.uid]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig([]string{"--upstream", "http://127.0.0.1:4317", "--read-node=false", "--config", rules}, env(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.resolve(env(nil)); err == nil || !strings.Contains(err.Error(), "--read-node: ") {
		t.Errorf("--read-node=false with k8s.node.uid: %v, want an error naming --read-node", err)
	}
	cfg, err = ParseConfig([]string{"--upstream", "http://127.0.0.1:4317"}, env(map[string]string{"PODSTAMP_READ_NODE": "false"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.resolve(env(nil)); err != nil || cfg.ReadNode {
		t.Errorf("PODSTAMP_READ_NODE=false with the default rules: read %v, %v; want false and no error", cfg.ReadNode, err)
	}
}
