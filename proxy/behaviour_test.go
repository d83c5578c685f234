package proxy

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podstamp/podstamp/enrich"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestDeadlinePropagation: a gRPC client's deadline reaches a gRPC upstream;
// without one, the upstream timeout applies.
func TestDeadlinePropagation(t *testing.T) {
	up := newGRPCUpstream(t)
	targets := up.targets()
	for i := range targets {
		targets[i].Timeout = time.Hour
	}
	tp := newTestProxy(t, targets)
	body, _ := payload(t, enrich.Traces, 1)

	for _, sig := range enrich.Signals {
		ctx, cancel := context.WithTimeout(context.Background(), 7*time.Second)
		clientDeadline, _ := ctx.Deadline()
		sbody, _ := payload(t, sig, 1)
		if _, err := tp.exportGRPC(ctx, sig, sbody); err != nil {
			t.Fatal(err)
		}
		cancel()
		got := up.next(t)
		if !got.hasDeadline {
			t.Fatalf("%s: upstream saw no deadline", sig)
		}
		// The deadline travels as a relative grpc-timeout: allow the transit time.
		if got.deadline.After(clientDeadline.Add(200*time.Millisecond)) || clientDeadline.Sub(got.deadline) > 2*time.Second {
			t.Errorf("%s: upstream deadline %v, want about the client's %v", sig, got.deadline, clientDeadline)
		}
	}

	// HTTP clients carry no deadline: the upstream timeout bounds the call.
	targets = up.targets()
	for i := range targets {
		targets[i].Timeout = 3 * time.Second
	}
	tp2 := newTestProxy(t, targets)
	before := time.Now()
	r := tp2.exportHTTP(t, context.Background(), enrich.Traces, contentTypeProtobuf, false, body, nil)
	if r.status != 200 {
		t.Fatalf("HTTP %d", r.status)
	}
	got := up.next(t)
	if !got.hasDeadline || got.deadline.Before(before.Add(2*time.Second)) || got.deadline.After(time.Now().Add(3*time.Second)) {
		t.Errorf("upstream deadline %v (set %v), want about now+3s", got.deadline, got.hasDeadline)
	}
}

// TestCancellationPropagation: when a client gives up, the upstream call is
// cancelled, for every ingress and upstream protocol.
func TestCancellationPropagation(t *testing.T) {
	for uname, mk := range upstreamKinds(t) {
		t.Run(uname, func(t *testing.T) {
			up := mk(t)
			tp := newTestProxy(t, up.targets())
			upstreamCancelled := make(chan struct{}, 1)
			up.setAnswer(func(ctx context.Context, _ received) upstreamAnswer {
				select {
				case <-ctx.Done():
					upstreamCancelled <- struct{}{}
				case <-time.After(20 * time.Second):
				}
				return upstreamAnswer{err: status.Error(codes.Unavailable, "late"), httpStatus: 503}
			})
			body, _ := payload(t, enrich.Metrics, 1)
			for _, viaGRPC := range []bool{true, false} {
				ctx, cancel := context.WithCancel(context.Background())
				errc := make(chan error, 1)
				go func() {
					if viaGRPC {
						_, err := tp.exportGRPC(ctx, enrich.Metrics, body)
						errc <- err
						return
					}
					req, _ := http.NewRequestWithContext(ctx, http.MethodPost, tp.httpURL+"/v1/metrics", bytes.NewReader(body))
					req.Header.Set("Content-Type", contentTypeProtobuf)
					resp, err := tp.hc.Do(req)
					if err == nil {
						resp.Body.Close()
					}
					errc <- err
				}()
				up.next(t) // the upstream has the request
				cancel()
				if err := <-errc; err == nil {
					t.Errorf("grpc=%v: client call succeeded after cancel", viaGRPC)
				}
				select {
				case <-upstreamCancelled:
				case <-time.After(10 * time.Second):
					t.Fatalf("grpc=%v: upstream call was not cancelled", viaGRPC)
				}
			}
		})
	}
}

// TestHeaderAllowList: only allow-listed metadata/headers are forwarded;
// static upstream headers are added; for every ingress and upstream.
func TestHeaderAllowList(t *testing.T) {
	for uname, mk := range upstreamKinds(t) {
		t.Run(uname, func(t *testing.T) {
			up := mk(t)
			targets := up.targets()
			for i := range targets {
				targets[i].Headers = map[string]string{"X-Static": "from-config"}
			}
			tp := newTestProxy(t, targets, func(c *Config, _ *Options) {
				c.ForwardHeaders = []string{"Authorization", "x-scope-orgid", "grpc-timeout", "content-type"}
			})
			in := map[string]string{"authorization": "Bearer t0k", "x-scope-orgid": "tenant-a", "x-secret": "do-not-forward"}

			check := func(how string, got received) {
				t.Helper()
				h := func(k string) string {
					if v := got.header[k]; len(v) > 0 {
						return strings.Join(v, ",")
					}
					return ""
				}
				if h("authorization") != "Bearer t0k" || h("x-scope-orgid") != "tenant-a" {
					t.Errorf("%s: allow-listed headers not forwarded: authorization=%q x-scope-orgid=%q", how, h("authorization"), h("x-scope-orgid"))
				}
				if h("x-secret") != "" {
					t.Errorf("%s: x-secret forwarded", how)
				}
				if h("x-static") != "from-config" {
					t.Errorf("%s: static header x-static=%q", how, h("x-static"))
				}
			}
			ctx := metadata.NewOutgoingContext(context.Background(), metadata.New(in))
			for _, sig := range enrich.Signals {
				body, _ := payload(t, sig, 1)
				if _, err := tp.exportGRPC(ctx, sig, body); err != nil {
					t.Fatal(err)
				}
				check("grpc ingress/"+sig.String(), up.next(t))
				if r := tp.exportHTTP(t, context.Background(), sig, contentTypeProtobuf, false, body, in); r.status != 200 {
					t.Fatalf("HTTP %d", r.status)
				}
				check("http ingress/"+sig.String(), up.next(t))
			}
		})
	}
}

// TestUpstreamCompression: with compression gzip the upstream receives
// compressed requests that decompress to the client's bytes.
func TestUpstreamCompression(t *testing.T) {
	for uname, mk := range upstreamKinds(t) {
		t.Run(uname, func(t *testing.T) {
			up := mk(t)
			targets := up.targets()
			for i := range targets {
				targets[i].Compression = "gzip"
			}
			tp := newTestProxy(t, targets)
			body, _ := payload(t, enrich.Traces, 50)
			if _, err := tp.exportGRPC(context.Background(), enrich.Traces, body); err != nil {
				t.Fatal(err)
			}
			got := up.next(t)
			if !got.compressed || !bytes.Equal(got.body, body) {
				t.Errorf("upstream: compressed=%v, body equal=%v", got.compressed, bytes.Equal(got.body, body))
			}
		})
	}
}

// TestGracefulDrain: requests in flight when the drain starts all complete
// and are acknowledged; readiness is false during the drain; nothing new is
// accepted afterwards.
func TestGracefulDrain(t *testing.T) {
	for uname, mk := range upstreamKinds(t) {
		t.Run(uname, func(t *testing.T) {
			up := mk(t)
			// Eight gRPC streams arrive at once: their reservations (2 ×
			// MaxGRPCRequestBytes each) fill the default budget on their own.
			tp := newTestProxy(t, up.targets(), func(c *Config, _ *Options) { c.MaxInflightBytes = 256 << 20 })
			release := make(chan struct{})
			up.setAnswer(func(context.Context, received) upstreamAnswer {
				<-release
				return upstreamAnswer{}
			})
			body, _ := payload(t, enrich.Traces, 3)
			const n = 8
			var wg sync.WaitGroup
			errs := make(chan error, 2*n)
			for i := range 2 * n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if i%2 == 0 {
						_, err := tp.exportGRPC(context.Background(), enrich.Traces, body)
						errs <- err
						return
					}
					req, _ := http.NewRequest(http.MethodPost, tp.httpURL+"/v1/traces", bytes.NewReader(body))
					req.Header.Set("Content-Type", contentTypeProtobuf)
					resp, err := tp.hc.Do(req)
					if err == nil {
						resp.Body.Close()
						if resp.StatusCode != 200 {
							err = status.Errorf(codes.Unknown, "HTTP %d", resp.StatusCode)
						}
					}
					errs <- err
				}()
			}
			for range 2 * n {
				up.next(t)
			}
			if code := httpGetStatus(t, tp.hc, tp.admin+"/readyz"); code != 200 {
				t.Fatalf("readyz before drain: %d", code)
			}
			stopped := make(chan error, 1)
			go func() { stopped <- tp.stop(t) }()
			// Readiness turns false while requests are in flight.
			deadline := time.Now().Add(5 * time.Second)
			for !tp.Draining() && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if code := httpGetStatus(t, tp.hc, tp.admin+"/readyz"); code != http.StatusServiceUnavailable {
				t.Errorf("readyz during drain: %d, want 503", code)
			}
			select {
			case <-stopped:
				t.Fatal("Serve returned with requests in flight")
			default:
			}
			close(release)
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Errorf("request in flight during drain failed: %v", err)
				}
			}
			if err := <-stopped; err != nil {
				t.Errorf("Serve: %v", err)
			}
			// New requests are refused once drained.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if _, err := tp.exportGRPC(ctx, enrich.Traces, body, grpc.WaitForReady(false)); err == nil {
				t.Error("gRPC request after drain succeeded")
			}
		})
	}
}

// TestDrainTimeout: requests that outlive ShutdownTimeout are cancelled and
// Serve still returns promptly.
func TestDrainTimeout(t *testing.T) {
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets(), func(c *Config, _ *Options) { c.ShutdownTimeout = 300 * time.Millisecond })
	up.setAnswer(func(ctx context.Context, _ received) upstreamAnswer {
		<-ctx.Done()
		return upstreamAnswer{err: ctx.Err()}
	})
	body, _ := payload(t, enrich.Traces, 1)
	errc := make(chan error, 1)
	go func() { _, err := tp.exportGRPC(context.Background(), enrich.Traces, body); errc <- err }()
	up.next(t)
	start := time.Now()
	if err := tp.stop(t); err != nil {
		t.Errorf("Serve: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("drain took %v with a 300ms timeout", d)
	}
	if err := <-errc; err == nil {
		t.Error("request cut by the drain timeout succeeded")
	}
}

func httpGetStatus(t *testing.T, hc *http.Client, url string) int {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
