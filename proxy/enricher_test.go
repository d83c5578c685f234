package proxy

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/podstamp/podstamp/enrich"
	"github.com/podstamp/podstamp/enrich/enrichtest"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// funcEnricher is an Enricher made of a function that appends its output to
// dst[:0] (the offered side buffer) or returns body itself; items are
// counted by enrich.Scan, as the real stamper counts them.
type funcEnricher func(ctx context.Context, sig enrich.Signal, peer enrich.Peer, body, dst []byte) ([]byte, enrich.Result, error)

func (f funcEnricher) Stamp(ctx context.Context, sig enrich.Signal, peer enrich.Peer, body []byte, segs [][]byte, side []byte) (enrich.Stamped, error) {
	items, _ := enrich.Scan(sig, body)
	out, res, err := f(ctx, sig, peer, body, side[:0])
	if err != nil {
		return enrich.Stamped{Segs: segs[:0], Side: side[:0], Items: items}, err
	}
	st := enrich.Stamped{Segs: append(segs[:0], out), Side: side[:0], Result: res, Items: items}
	if !sameBytes(out, body) {
		st.Side = out
	}
	return st, nil
}

// emptyResource is an extra, empty Resource<Signal> entry.
var emptyResource = []byte{0x0a, 0x00}

// TestEnricherOutputForwarded: what the Enricher returns is what the upstream
// gets; the Enricher sees the signal and the client's loopback address; the
// Result is counted.
func TestEnricherOutputForwarded(t *testing.T) {
	for uname, mk := range upstreamKinds(t) {
		t.Run(uname, func(t *testing.T) {
			up := mk(t)
			peers := make(chan netip.Addr, 16)
			e := funcEnricher(func(_ context.Context, sig enrich.Signal, peer enrich.Peer, body, dst []byte) ([]byte, enrich.Result, error) {
				peers <- peer.Addr
				out := append(dst[:0], body...)
				return append(out, emptyResource...), enrich.ResultHit, nil
			})
			tp := newTestProxy(t, up.targets(), func(_ *Config, o *Options) { o.Enricher = e })
			for _, in := range protobufIngresses {
				for _, sig := range enrich.Signals {
					body, _ := payload(t, sig, 2)
					if _, err := tp.send(t, in, sig, body); err != nil {
						t.Fatal(err)
					}
					got := up.next(t)
					want := append(append([]byte{}, body...), emptyResource...)
					if !bytes.Equal(got.body, want) {
						t.Errorf("%s/%s: upstream did not get the stamped bytes", in.name, sig)
					}
					if p := <-peers; p != netip.MustParseAddr("127.0.0.1") {
						t.Errorf("%s/%s: enricher saw peer %v, want 127.0.0.1", in.name, sig, p)
					}
				}
			}
			n := len(protobufIngresses) * len(enrich.Signals)
			if v := counterValue(t, tp, "podstamp_enrich_total", map[string]string{"result": "hit"}); v != float64(n) {
				t.Errorf("podstamp_enrich_total{result=hit} = %v, want %d", v, n)
			}
		})
	}
}

// TestEnricherGrowsOutput: output larger than the buffer the proxy offers is
// still forwarded whole.
func TestEnricherGrowsOutput(t *testing.T) {
	up := newGRPCUpstream(t)
	extra := bytes.Repeat(emptyResource, 8<<10)
	e := funcEnricher(func(_ context.Context, _ enrich.Signal, _ enrich.Peer, body, dst []byte) ([]byte, enrich.Result, error) {
		return append(append(dst[:0], body...), extra...), enrich.ResultHit, nil
	})
	tp := newTestProxy(t, up.targets(), func(_ *Config, o *Options) { o.Enricher = e })
	body, _ := payload(t, enrich.Logs, 3)
	if _, err := tp.exportGRPC(context.Background(), enrich.Logs, body); err != nil {
		t.Fatal(err)
	}
	if got := up.next(t); !bytes.Equal(got.body, append(append([]byte{}, body...), extra...)) {
		t.Error("grown output not forwarded whole")
	}
}

// TestEnricherErrors: ErrMalformed is INVALID_ARGUMENT / 400, a hold ended by
// the client is not forwarded, other failures are INTERNAL / 500.
func TestEnricherErrors(t *testing.T) {
	up := newGRPCUpstream(t)
	held := make(chan struct{}, 4)
	e := funcEnricher(func(ctx context.Context, sig enrich.Signal, _ enrich.Peer, body, dst []byte) ([]byte, enrich.Result, error) {
		switch string(body) {
		case "\x0a\x00":
			return nil, "", fmt.Errorf("%w: resource 0: bad attribute", enrich.ErrMalformed)
		case "\x0a\x00\x0a\x00":
			held <- struct{}{}
			<-ctx.Done()
			return nil, "", ctx.Err()
		}
		return nil, "", fmt.Errorf("out of cheese")
	})
	tp := newTestProxy(t, up.targets(), func(_ *Config, o *Options) { o.Enricher = e })

	_, err := tp.exportGRPC(context.Background(), enrich.Traces, []byte{0x0a, 0x00})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "bad attribute") {
		t.Errorf("malformed: %v", err)
	}
	if r := tp.exportHTTP(t, context.Background(), enrich.Traces, contentTypeProtobuf, false, []byte{0x0a, 0x00}, nil); r.status != 400 {
		t.Errorf("malformed over HTTP: %d, want 400", r.status)
	}
	_, err = tp.exportGRPC(context.Background(), enrich.Traces, []byte{0x0a, 0x00, 0x0a, 0x00, 0x0a, 0x00})
	if status.Code(err) != codes.Internal {
		t.Errorf("enricher failure: %v, want INTERNAL", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = tp.exportGRPC(ctx, enrich.Traces, []byte{0x0a, 0x00, 0x0a, 0x00})
	<-held
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("held past the client's deadline: %v, want DEADLINE_EXCEEDED", err)
	}
	up.none(t)
}

// TestStamperPassThrough: the real wire stamper without a pod cache changes
// nothing: the upstream gets the client's bytes.
func TestStamperPassThrough(t *testing.T) {
	s := enrich.NewStamper(enrichtest.Rules(enrich.DefaultConfig()), nil)
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets(), func(_ *Config, o *Options) { o.Enricher = s })
	for _, sig := range enrich.Signals {
		body, _ := payload(t, sig, 10)
		if _, err := tp.exportGRPC(context.Background(), sig, body); err != nil {
			t.Fatal(err)
		}
		if got := up.next(t); !bytes.Equal(got.body, body) {
			t.Errorf("%s: stamper without pods changed the request", sig)
		}
	}
}

// counterValue reads one sample from the proxy's registry (0 if absent).
func counterValue(t *testing.T, tp *testProxy, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := tp.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metric
				}
			}
			return sampleValue(m)
		}
	}
	return 0
}

func sampleValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return 0
}

// TestConnTimeReachesEnricher: the Enricher's peer carries the time the
// client's connection was accepted (enrich.Peer.Accepted), the same for every
// request on one connection, so the resolver can apply time-aware IP
// ownership.
func TestConnTimeReachesEnricher(t *testing.T) {
	up := newGRPCUpstream(t)
	times := make(chan time.Time, 16)
	e := funcEnricher(func(ctx context.Context, _ enrich.Signal, peer enrich.Peer, body, dst []byte) ([]byte, enrich.Result, error) {
		times <- peer.Accepted
		return append(dst[:0], body...), enrich.ResultHit, nil
	})
	before := time.Now()
	tp := newTestProxy(t, up.targets(), func(_ *Config, o *Options) { o.Enricher = e })
	body, _ := payload(t, enrich.Traces, 1)
	for _, in := range protobufIngresses {
		var first time.Time
		for i := range 2 {
			if _, err := tp.send(t, in, enrich.Traces, body); err != nil {
				t.Fatal(err)
			}
			up.next(t)
			got := <-times
			if got.IsZero() || got.Before(before) || got.After(time.Now()) {
				t.Fatalf("%s: connection time %v, want between %v and now", in.name, got, before)
			}
			if i == 0 {
				first = got
			} else if in.grpc && !got.Equal(first) {
				t.Errorf("%s: second request on one connection saw %v, first %v", in.name, got, first)
			}
		}
	}
}
