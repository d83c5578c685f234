package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/podstamp/podstamp/informer"
	"github.com/podstamp/podstamp/proxy"
)

// Config is everything podstamp is configured with: flags, each also settable
// through its PODSTAMP_* environment variable.
type Config struct {
	GRPCListen string
	// GRPCTransport serves the gRPC listener: lean or grpc.
	GRPCTransport string
	HTTPListen    string
	AdminListen   string
	DebugListen   string

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
	UpstreamTransport   string
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

	// PodSource is where the node's pods are read: apiserver (a list and
	// watch) or kubelet (its /pods, polled; KubeletURL, KubeletCA,
	// KubeletInsecure, KubeletPollInterval).
	PodSource           string
	ReadNode            bool
	KubeletURL          string
	KubeletCA           string
	KubeletInsecure     bool
	KubeletPollInterval time.Duration

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

// DefaultConfig returns podstamp's defaults: the proxy's (proxy.DefaultConfig)
// and the pod cache's (informer.Default*) where they have them, and the
// command's own.
func DefaultConfig() Config {
	p := proxy.DefaultConfig()
	return Config{
		GRPCListen:          ":4317",
		GRPCTransport:       proxy.TransportLean,
		HTTPListen:          ":4318",
		AdminListen:         ":10291",
		DebugListen:         "127.0.0.1:10292",
		UpstreamProtocol:    proxy.ProtocolGRPC,
		UpstreamCompression: "none",
		UpstreamTransport:   proxy.TransportAuto,
		UpstreamTimeout:     10 * time.Second,
		ForwardHeaders:      []string{"authorization"},
		ShutdownTimeout:     p.ShutdownTimeout,
		LogFormat:           "text",
		LogLevel:            "info",
		MaxProcs:            1,
		GCPercent:           40,
		// 25ms rather than 5ms: 0-15% (mostly 5-10%) less CPU per request
		// at 100 requests/s in interleaved bench A/B runs; timers fire at
		// most this late, and a goroutine that runs long is preempted up to
		// this much later.
		TimerSlack: 25 * time.Millisecond,
		set:        map[string]bool{},

		MaxRequestBytes:         p.MaxRequestBytes,
		MaxGRPCRequestBytes:     p.MaxGRPCRequestBytes,
		MaxJSONRequestBytes:     p.MaxJSONRequestBytes,
		MaxInflightBytes:        p.MaxInflightBytes,
		MaxConnections:          p.MaxConnections,
		MaxConnectionsPerPeer:   p.MaxConnectionsPerPeer,
		MaxRequestsPerPeer:      p.MaxRequestsPerPeer,
		MaxStreamsPerConnection: p.MaxStreamsPerConnection,

		HoldTimeout:         informer.DefaultHoldTimeout,
		HoldMaxBytes:        informer.DefaultHoldMaxBytes,
		HoldNegativeTTL:     informer.DefaultHoldNegativeTTL,
		HoldMaxPeerRequests: informer.DefaultHoldMaxPerPeerRequests,
		PodDeleteGrace:      informer.DefaultPodDeleteGrace,
		MetadataTTL:         informer.DefaultMetadataTTL,
		PodSource:           podSourceAPIServer,
		ReadNode:            true,
		KubeletPollInterval: informer.DefaultKubeletPollInterval,
	}
}

// The values of --pod-source.
const (
	podSourceAPIServer = "apiserver"
	podSourceKubelet   = "kubelet"
)

// envName is the PODSTAMP_* variable of a flag.
func envName(flagName string) string {
	return "PODSTAMP_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// ParseConfig builds the configuration from defaults, then the environment,
// then the command line. It does not validate: resolve does.
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
