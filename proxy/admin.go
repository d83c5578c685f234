package proxy

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type adminOptions struct {
	gatherer   prometheus.Gatherer
	checks     []Check
	liveChecks []Check
	handlers   map[string]http.Handler
}

// adminHandler serves /livez, /readyz, /metrics and extra handlers. Nothing
// on it says anything about the node's pods: it is reachable from wherever
// the node's kubelet and Prometheus are.
func (p *Proxy) adminHandler(o adminOptions) http.Handler {
	mux := http.NewServeMux()
	live := []*liveProbe{{check: Check{Name: "listeners", Check: p.listenersLive}}}
	for _, c := range o.liveChecks {
		live = append(live, &liveProbe{check: c})
	}
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		// Concurrently: a wedged check costs one timeout, not one each.
		errs := make([]error, len(live))
		var wg sync.WaitGroup
		for i, lp := range live {
			wg.Go(func() { errs[i] = lp.run(p.cfg.LiveTimeout) })
		}
		wg.Wait()
		writeChecks(w, live, errs, "not live")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		var b strings.Builder
		ready := true
		if p.Draining() {
			ready = false
			b.WriteString("[-] draining\n")
		}
		for _, c := range o.checks {
			if err := c.Check(); err != nil {
				ready = false
				fmt.Fprintf(&b, "[-] %s: %v\n", c.Name, err)
			} else {
				fmt.Fprintf(&b, "[+] %s\n", c.Name)
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
			b.WriteString("not ready\n")
		} else {
			b.WriteString("ok\n")
		}
		fmt.Fprint(w, b.String())
	})
	if o.gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(o.gatherer, promhttp.HandlerOpts{}))
	}
	registerSorted(mux, o.handlers)
	return mux
}

// writeChecks writes one line per check and the verdict: 200 "ok" when every
// check passed, else 503 and bad.
func writeChecks(w http.ResponseWriter, probes []*liveProbe, errs []error, bad string) {
	var b strings.Builder
	ok := true
	for i, lp := range probes {
		if errs[i] != nil {
			ok = false
			fmt.Fprintf(&b, "[-] %s: %v\n", lp.check.Name, errs[i])
		} else {
			fmt.Fprintf(&b, "[+] %s\n", lp.check.Name)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		b.WriteString(bad + "\n")
	} else {
		b.WriteString("ok\n")
	}
	fmt.Fprint(w, b.String())
}

// liveProbe runs one liveness check with a deadline. A check that does not
// answer in time fails /livez; while it is still running, later probes wait
// for that same call instead of starting another, so a wedged check holds
// one goroutine, not one per probe.
type liveProbe struct {
	check Check
	mu    sync.Mutex
	cur   *liveCall
}

type liveCall struct {
	done chan struct{}
	err  error // set before done is closed
}

func (lp *liveProbe) run(timeout time.Duration) error {
	lp.mu.Lock()
	c := lp.cur
	if c == nil {
		c = &liveCall{done: make(chan struct{})}
		lp.cur = c
		go func() {
			c.err = lp.check.Check()
			lp.mu.Lock()
			lp.cur = nil
			lp.mu.Unlock()
			close(c.done)
		}()
	}
	lp.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.done:
		return c.err
	case <-t.C:
		return fmt.Errorf("no answer within %v", timeout)
	}
}

// debugHandler serves /debug/pprof (when enabled) and the debug handlers:
// what they show (every pod's identity and addresses, the heap) is for the
// node's operators, so the debug listener defaults to loopback.
func debugHandler(handlers map[string]http.Handler, enablePprof bool) http.Handler {
	mux := http.NewServeMux()
	if enablePprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	registerSorted(mux, handlers)
	return mux
}

func registerSorted(mux *http.ServeMux, handlers map[string]http.Handler) {
	paths := make([]string, 0, len(handlers))
	for path := range handlers {
		paths = append(paths, path)
	}
	sort.Strings(paths)
	for _, path := range paths {
		mux.Handle(path, handlers[path])
	}
}
