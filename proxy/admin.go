package proxy

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type adminOptions struct {
	gatherer prometheus.Gatherer
	checks   []Check
	handlers map[string]http.Handler
	pprof    bool
}

// adminHandler serves /livez, /readyz, /metrics, optionally /debug/pprof, and
// extra handlers.
func (p *Proxy) adminHandler(o adminOptions) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
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
	if o.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	paths := make([]string, 0, len(o.handlers))
	for path := range o.handlers {
		paths = append(paths, path)
	}
	sort.Strings(paths)
	for _, path := range paths {
		mux.Handle(path, o.handlers[path])
	}
	return mux
}
