package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podstamp/podstamp/enrich/enrichtest"

	"github.com/podstamp/podstamp/enrich"
)

// TestMetrics: requests, items, bytes, upstream latency, build info and the
// in-flight gauge are exported with the podstamp_ prefix.
func TestMetrics(t *testing.T) {
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets())
	body, _ := payload(t, enrich.Traces, 5)
	if _, err := tp.exportGRPC(context.Background(), enrich.Traces, body); err != nil {
		t.Fatal(err)
	}
	up.next(t)
	mbody, _ := payload(t, enrich.Metrics, 7)
	if r := tp.exportHTTP(t, context.Background(), enrich.Metrics, contentTypeProtobuf, true, mbody, nil); r.status != 200 {
		t.Fatal(r.status)
	}
	up.next(t)
	tp.exportHTTP(t, context.Background(), enrich.Logs, contentTypeProtobuf, false, []byte{0x0a, 0xff}, nil)

	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"podstamp_requests_total", map[string]string{"signal": "traces", "protocol": "grpc", "outcome": "ok"}, 1},
		{"podstamp_items_total", map[string]string{"signal": "traces", "protocol": "grpc", "outcome": "ok"}, 5},
		{"podstamp_requests_total", map[string]string{"signal": "metrics", "protocol": "http", "outcome": "ok"}, 1},
		{"podstamp_items_total", map[string]string{"signal": "metrics", "protocol": "http", "outcome": "ok"}, 7},
		{"podstamp_requests_total", map[string]string{"signal": "logs", "protocol": "http", "outcome": "bad_request"}, 1},
		{"podstamp_received_bytes_total", map[string]string{"signal": "traces", "protocol": "grpc"}, float64(len(body))},
		{"podstamp_received_bytes_total", map[string]string{"signal": "metrics", "protocol": "http"}, float64(len(mbody))},
		{"podstamp_sent_bytes_total", map[string]string{"signal": "traces"}, float64(len(body))},
		{"podstamp_upstream_duration_seconds", map[string]string{"signal": "traces", "code": "ok"}, 1},
		{"podstamp_build_info", map[string]string{"version": "test"}, 1},
		{"podstamp_inflight_requests", nil, 0},
	}
	for _, c := range checks {
		if got := counterValue(t, tp, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	// The same series are served at /metrics.
	text := httpGet(t, tp.hc, tp.admin+"/metrics", 200)
	for _, s := range []string{
		`podstamp_requests_total{outcome="ok",protocol="grpc",signal="traces"} 1`,
		`podstamp_items_total{outcome="ok",protocol="http",signal="metrics"} 7`,
		`podstamp_upstream_duration_seconds_bucket{code="ok",signal="traces"`,
		`podstamp_inflight_requests 0`,
		`podstamp_build_info{goversion=`,
	} {
		if !strings.Contains(text, s) {
			t.Errorf("/metrics lacks %s", s)
		}
	}
}

// TestItemCount: the wire walk counts spans, data points, log records and
// profiles across resources and scopes, with (Stamp) and without
// (Scan) stamping.
func TestItemCount(t *testing.T) {
	stamper := enrich.NewStamper(enrichtest.Rules(enrich.DefaultConfig()), enrichtest.New(&enrich.Pod{
		Namespace: "shop", Name: "cart-0", UID: "uid-cart", IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}))
	for _, sig := range enrich.Signals {
		for _, n := range []int{0, 1, 17} {
			body, _ := payload(t, sig, n)
			double := append(append([]byte{}, body...), body...) // two resources
			got, err := enrich.Scan(sig, double)
			if err != nil || got != 2*n {
				t.Errorf("%s with 2x%d items: Scan counted %d (%v)", sig, n, got, err)
			}
			st, err := stamper.Stamp(t.Context(), sig, enrich.Peer{Addr: netip.MustParseAddr("127.0.0.1")}, double, nil, nil)
			if err != nil || st.Items != 2*n || st.Result != enrich.ResultHit {
				t.Errorf("%s with 2x%d items: Stamp counted %d, %s (%v)", sig, n, st.Items, st.Result, err)
			}
		}
	}
}

// TestAdmin: /livez, /readyz with injected checks; the debug handlers and
// pprof (only when enabled) are served on the debug listener and not on the
// admin listener, which anyone who reaches the node can reach.
func TestAdmin(t *testing.T) {
	up := newGRPCUpstream(t)
	var cacheErr error = errors.New("pod cache not synced")
	tp := newTestProxy(t, up.targets(), func(_ *Config, o *Options) {
		o.Checks = []Check{{Name: "pod-cache", Check: func() error { return cacheErr }}}
		o.DebugHandlers = map[string]http.Handler{"/debug/pods": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, "pods here")
		})}
	})
	httpGet(t, tp.hc, tp.admin+"/livez", 200)
	if body := httpGet(t, tp.hc, tp.admin+"/readyz", 503); !strings.Contains(body, "pod cache not synced") {
		t.Errorf("readyz body %q does not say why", body)
	}
	httpGet(t, tp.hc, tp.debug+"/debug/pprof/", 404)
	httpGet(t, tp.hc, tp.admin+"/debug/pods", 404)
	if body := httpGet(t, tp.hc, tp.debug+"/debug/pods", 200); body != "pods here" {
		t.Errorf("/debug/pods: %q", body)
	}
	tp.stop(t) // the check is read by the admin server's goroutines
	cacheErr = nil

	tp2 := newTestProxy(t, up.targets(), func(c *Config, o *Options) {
		c.EnablePprof = true
		o.Checks = []Check{{Name: "pod-cache", Check: func() error { return nil }}}
	})
	httpGet(t, tp2.hc, tp2.admin+"/readyz", 200)
	httpGet(t, tp2.hc, tp2.admin+"/debug/pprof/", 404)
	httpGet(t, tp2.hc, tp2.debug+"/debug/pprof/", 200)

	// Without a debug listener nothing of it is served anywhere.
	tp3 := newTestProxy(t, up.targets(), func(c *Config, o *Options) {
		c.EnablePprof, c.DebugListen = true, ""
		o.DebugHandlers = map[string]http.Handler{"/debug/pods": http.NotFoundHandler()}
	})
	if tp3.DebugAddr() != nil {
		t.Errorf("debug listener bound at %v with --debug-listen empty", tp3.DebugAddr())
	}
	httpGet(t, tp3.hc, tp3.admin+"/debug/pprof/", 404)
}

// TestLivez: /livez runs the liveness checks, each with a deadline: a check
// that does not answer in time fails /livez with 503 naming it; while it is
// stuck, later probes do not start another call; once it answers, /livez
// passes again. The proxy's own listener check passes while serving.
func TestLivez(t *testing.T) {
	up := newGRPCUpstream(t)
	release := make(chan struct{})
	var calls atomic.Int32
	tp := newTestProxy(t, up.targets(), func(c *Config, o *Options) {
		c.LiveTimeout = 100 * time.Millisecond
		o.LiveChecks = []Check{{Name: "pod-cache", Check: func() error {
			calls.Add(1)
			<-release
			return nil
		}}}
	})
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	for range 3 {
		body := httpGet(t, tp.hc, tp.admin+"/livez", 503)
		if !strings.Contains(body, "[-] pod-cache: no answer within 100ms") || !strings.Contains(body, "[+] listeners") {
			t.Errorf("/livez body %q, want the stuck check named and the listeners live", body)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("a stuck check was called %d times, want 1", n)
	}
	close(release)
	released = true
	if body := httpGet(t, tp.hc, tp.admin+"/livez", 200); !strings.Contains(body, "[+] pod-cache") {
		t.Errorf("/livez body %q after the check answered", body)
	}

	// A failing check fails /livez with its reason.
	tp2 := newTestProxy(t, up.targets(), func(_ *Config, o *Options) {
		o.LiveChecks = []Check{{Name: "pod-cache", Check: func() error { return errors.New("lock wedged") }}}
	})
	if body := httpGet(t, tp2.hc, tp2.admin+"/livez", 503); !strings.Contains(body, "lock wedged") {
		t.Errorf("/livez body %q does not say why", body)
	}
}

// TestListenerLiveness: an accept loop away from Accept for longer than the
// limit fails the proxy's own liveness check; one waiting in Accept passes.
func TestListenerLiveness(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := newTrackedListener(ln, "gRPC")
	defer tl.Close()
	now := time.Now()
	if err := tl.accepting(now, time.Second); err != nil {
		t.Errorf("just bound: %v", err)
	}
	if err := tl.accepting(now.Add(2*time.Second), time.Second); err == nil || !strings.Contains(err.Error(), "gRPC listener") {
		t.Errorf("never accepted for 2s: %v, want an error naming the listener", err)
	}
	accepted := make(chan error, 1)
	go func() {
		c, err := tl.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	// Connect and wait for Accept to return, then check from a time far later.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}
	if err := tl.accepting(time.Now().Add(5*time.Second), time.Second); err == nil {
		t.Error("accept loop gone for 5s passed")
	}
}
func httpGet(t *testing.T, hc *http.Client, url string, want int) string {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Errorf("GET %s: %d, want %d (%s)", url, resp.StatusCode, want, b)
	}
	return string(b)
}
