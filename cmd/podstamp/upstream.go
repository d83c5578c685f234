package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/podstamp/podstamp/enrich"
	"github.com/podstamp/podstamp/proxy"
)

// Upstreams resolves the upstream of every signal: explicit settings first,
// then OTEL_EXPORTER_OTLP_<SIGNAL>_*, then OTEL_EXPORTER_OTLP_*, then defaults.
// The error names every problem, each by its flag or variable.
func (c Config) Upstreams(getenv func(string) string) ([4]proxy.Target, error) {
	out, errs := c.upstreams(getenv)
	return out, oneLine(dedupe(errs))
}

func (c Config) upstreams(getenv func(string) string) ([4]proxy.Target, problems) {
	var out [4]proxy.Target
	var errs problems
	var missing []string
	for _, sig := range enrich.Signals {
		out[sig] = c.upstream(otelEnv{getenv, sig}, &errs)
		if out[sig].Endpoint == "" {
			missing = append(missing, sig.String())
		}
	}
	switch {
	case len(missing) == len(enrich.Signals):
		errs = append(problems{errors.New("--upstream: required (or OTEL_EXPORTER_OTLP_ENDPOINT)")}, errs...)
	case len(missing) > 0:
		errs = append(problems{fmt.Errorf("--upstream: required for %s (or OTEL_EXPORTER_OTLP_ENDPOINT)", strings.Join(missing, ", "))}, errs...)
	}
	return out, errs
}

// upstream resolves one signal's upstream; its Endpoint is empty when none
// is configured.
func (c Config) upstream(env otelEnv, errs *problems) proxy.Target {
	t := proxy.Target{Protocol: c.upstreamProtocol(env, errs)}
	t.Endpoint = c.upstreamEndpoint(env, t.Protocol)
	t.Insecure = c.upstreamInsecure(env, errs)
	if t.Endpoint != "" && (t.Protocol == proxy.ProtocolGRPC || t.Protocol == proxy.ProtocolHTTPProtobuf) {
		name := "--upstream"
		if c.Upstream == "" {
			name = env.name("ENDPOINT")
		}
		if _, err := proxy.ParseEndpoint(t.Protocol, t.Endpoint, t.Insecure); err != nil {
			errs.add("%s: %v", name, err)
		}
	}
	t.Headers = c.upstreamHeaders(env, errs)
	t.Compression = c.upstreamCompression(env, errs)
	if t.Protocol == proxy.ProtocolGRPC {
		t.Transport = c.UpstreamTransport
	}
	t.Timeout = c.upstreamTimeout(env, errs)
	c.upstreamTLSFiles(env, &t, errs)
	return t
}

func (c Config) upstreamProtocol(env otelEnv, errs *problems) string {
	v, _, ok := env.get("PROTOCOL")
	if c.set["upstream-protocol"] || !ok {
		return c.UpstreamProtocol
	}
	if v != proxy.ProtocolGRPC && v != proxy.ProtocolHTTPProtobuf {
		errs.add("%s: %q is not supported upstream (want grpc or http/protobuf)", env.name("PROTOCOL"), v)
	}
	return v
}

// upstreamEndpoint is --upstream or the OTEL endpoint variable. For
// http/protobuf, the signal's path is appended to --upstream and to
// OTEL_EXPORTER_OTLP_ENDPOINT, not to a per-signal endpoint, which the OTLP
// exporter specification takes as the full URL.
func (c Config) upstreamEndpoint(env otelEnv, protocol string) string {
	ep, perSignal := c.Upstream, false
	if ep == "" {
		var ok bool
		if ep, perSignal, ok = env.get("ENDPOINT"); !ok {
			return ""
		}
	}
	if protocol == proxy.ProtocolHTTPProtobuf && !perSignal {
		return proxy.JoinURLPath(ep, proxy.HTTPPath(env.sig))
	}
	return ep
}

// upstreamHeaders are OTEL_EXPORTER_OTLP_HEADERS, then the per-signal
// variable, then --upstream-header, each overriding the one before.
func (c Config) upstreamHeaders(env otelEnv, errs *problems) map[string]string {
	h := map[string]string{}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_" + strings.ToUpper(env.sig.String()) + "_HEADERS"} {
		v, ok := lookup(env.getenv, name)
		if !ok {
			continue
		}
		for _, kv := range splitKVList(v) {
			k, val, found := strings.Cut(kv, "=")
			if !found || strings.TrimSpace(k) == "" {
				errs.add("%s: %q is not k=v", name, kv)
				continue
			}
			if dec, err := url.PathUnescape(strings.TrimSpace(val)); err == nil {
				val = dec
			}
			h[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(val)
		}
	}
	for _, kv := range c.UpstreamHeaders {
		if k, v, ok := strings.Cut(kv, "="); ok {
			h[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		}
	}
	return h
}

func (c Config) upstreamCompression(env otelEnv, errs *problems) string {
	v, _, ok := env.get("COMPRESSION")
	if !ok || c.set["upstream-compression"] {
		return c.UpstreamCompression
	}
	if v != "gzip" && v != "none" {
		errs.add("%s: %q is not gzip or none", env.name("COMPRESSION"), v)
	}
	return v
}

func (c Config) upstreamTimeout(env otelEnv, errs *problems) time.Duration {
	v, _, ok := env.get("TIMEOUT")
	if !ok || c.set["upstream-timeout"] {
		return c.UpstreamTimeout
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms <= 0 {
		errs.add("%s: %q is not a positive number of milliseconds", env.name("TIMEOUT"), v)
		return c.UpstreamTimeout
	}
	return time.Duration(ms) * time.Millisecond
}

func (c Config) upstreamInsecure(env otelEnv, errs *problems) bool {
	v, _, ok := env.get("INSECURE")
	if !ok || c.set["upstream-insecure"] {
		return c.UpstreamInsecure
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		errs.add("%s: %q is not true or false", env.name("INSECURE"), v)
	}
	return b
}

// upstreamTLSFiles sets the CA, client certificate and key files: each flag,
// else its OTEL variable (whose file must exist; the flags' files are
// checked by Validate).
func (c Config) upstreamTLSFiles(env otelEnv, t *proxy.Target, errs *problems) {
	for _, f := range []struct {
		key  string
		p    *string
		flag string
	}{
		{"CERTIFICATE", &t.CAFile, c.UpstreamCAFile},
		{"CLIENT_CERTIFICATE", &t.CertFile, c.UpstreamCertFile},
		{"CLIENT_KEY", &t.KeyFile, c.UpstreamKeyFile},
	} {
		*f.p = f.flag
		if f.flag != "" {
			continue
		}
		if v, _, ok := env.get(f.key); ok {
			*f.p = v
			if _, err := os.Stat(v); err != nil {
				errs.add("%s: %v", env.name(f.key), err)
			}
		}
	}
}

// otelEnv reads one signal's OTEL_EXPORTER_OTLP_* variables.
type otelEnv struct {
	getenv func(string) string
	sig    enrich.Signal
}

// get reads OTEL_EXPORTER_OTLP_<SIGNAL>_<key>, then OTEL_EXPORTER_OTLP_<key>;
// perSignal says which one was found.
func (e otelEnv) get(key string) (v string, perSignal, ok bool) {
	if v, ok := lookup(e.getenv, e.perSignal(key)); ok {
		return v, true, true
	}
	if v, ok := lookup(e.getenv, "OTEL_EXPORTER_OTLP_"+key); ok {
		return v, false, true
	}
	return "", false, false
}

// name is the variable get reads key from, for error messages.
func (e otelEnv) name(key string) string {
	if _, per, _ := e.get(key); per {
		return e.perSignal(key)
	}
	return "OTEL_EXPORTER_OTLP_" + key
}

func (e otelEnv) perSignal(key string) string {
	return "OTEL_EXPORTER_OTLP_" + strings.ToUpper(e.sig.String()) + "_" + key
}
