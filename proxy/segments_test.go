package proxy

import (
	"bytes"
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/podstamp/podstamp/enrich"
	"github.com/podstamp/podstamp/enrich/enrichtest"
)

// loopbackPod is the pod behind every test client (127.0.0.1).
func loopbackPod() *enrich.Pod {
	return &enrich.Pod{
		Namespace: "shop", Name: "cart-7d9f8-abcde", UID: "uid-cart",
		IPs:       []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		StartTime: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), NodeName: "node-a",
		Labels:     map[string]string{"app.kubernetes.io/name": "cart"},
		Workloads:  []enrich.Workload{{Kind: enrich.ReplicaSet, Name: "cart-7d9f8"}, {Kind: enrich.Deployment, Name: "cart"}},
		Containers: []enrich.Container{{Name: "cart", ImageName: "registry.example/cart", ImageTag: "1.2.3", IDs: []string{"abc"}}},
	}
}

// segStamper is the wire stamper, counting its segmented calls and the
// segments that reference the request.
type segStamper struct {
	*enrich.Stamper
	calls, refs, grown atomic.Int64
}

func (s *segStamper) Stamp(ctx context.Context, sig enrich.Signal, peer enrich.Peer, body []byte, segs [][]byte, side []byte) (enrich.Stamped, error) {
	offered := unsafe.SliceData(side)
	st, err := s.Stamper.Stamp(ctx, sig, peer, body, segs, side)
	s.calls.Add(1)
	if unsafe.SliceData(st.Side) != offered {
		s.grown.Add(1)
	}
	for _, seg := range st.Segs {
		if _, ok := offsetIn(body, seg); ok && len(seg) < len(body) {
			s.refs.Add(1)
		}
	}
	return st, err
}

// stampedBytes is what e makes of body from 127.0.0.1, concatenated.
func stampedBytes(e Enricher, sig enrich.Signal, body []byte) ([]byte, enrich.Result, error) {
	st, err := e.Stamp(context.Background(), sig, enrich.Peer{Addr: netip.MustParseAddr("127.0.0.1")}, body, nil, nil)
	if err != nil {
		return nil, "", err
	}
	return bytes.Join(st.Segs, nil), st.Result, nil
}

func newSegStamper(t testing.TB, r enrich.Resolver) *segStamper {
	t.Helper()
	s := enrich.NewStamper(enrichtest.Rules(enrich.DefaultConfig()), r)
	return &segStamper{Stamper: s}
}

// repeatRequest concatenates n copies of an export request: one request
// with n times the resources (repeated fields append).
func repeatRequest(b []byte, n int) []byte { return bytes.Repeat(b, n) }

// TestSegmentedStampingByteExact: a request the wire stamper stamps as
// segments arrives at gRPC and HTTP upstreams, with and without gzip, from
// every ingress, byte-identical to Stamp's segments concatenated: one
// resource with many spans, many resources (more side bytes than the proxy
// offers), one small request.
func TestSegmentedStampingByteExact(t *testing.T) {
	se := newSegStamper(t, enrichtest.New(loopbackPod()))
	for _, c := range upstreamLegs {
		t.Run(c.name, func(t *testing.T) {
			up, targets := c.start(t)
			tp := newTestProxy(t, targets, func(_ *Config, o *Options) { o.Enricher = se })
			for _, in := range protobufIngresses {
				for _, sig := range enrich.Signals {
					one, _ := payload(t, sig, 600)
					small, _ := payload(t, sig, 1)
					for name, body := range map[string][]byte{"one-resource": one, "many-resources": repeatRequest(one, 24), "small": small} {
						want, res, err := stampedBytes(se, sig, body)
						if err != nil || res != enrich.ResultHit || len(want) <= len(body) {
							t.Fatalf("Enrich: %q %v, %d bytes from %d: not stamped", res, err, len(want), len(body))
						}
						calls := se.calls.Load()
						if _, err := tp.send(t, in, sig, body); err != nil {
							t.Fatalf("%s/%s/%s: %v", in.name, sig, name, err)
						}
						got := up.next(t)
						if !bytes.Equal(got.body, want) {
							t.Errorf("%s/%s/%s: upstream got %d bytes, not Enrich's %d", in.name, sig, name, len(got.body), len(want))
						}
						if se.calls.Load() != calls+1 {
							t.Errorf("%s/%s/%s: the proxy did not stamp segments", in.name, sig, name)
						}
					}
				}
			}
			if se.refs.Load() == 0 || se.grown.Load() == 0 {
				t.Errorf("%d segments referenced a request, side grew %d times: want both", se.refs.Load(), se.grown.Load())
			}
		})
	}
}

// TestSegmentedStampingAfterHold: a request held until its pod is known is
// stamped as segments of the request it held and forwarded byte-exact; the
// request's buffers stay valid while it is held and forwarded.
func TestSegmentedStampingAfterHold(t *testing.T) {
	r := enrichtest.New()
	release := r.Hold()
	defer func() { release() }()
	se := newSegStamper(t, r)
	for uname, mk := range upstreamKinds(t) {
		t.Run(uname, func(t *testing.T) {
			up := mk(t)
			tp := newTestProxy(t, up.targets(), func(_ *Config, o *Options) { o.Enricher = se })
			for _, in := range protobufIngresses {
				body, _ := payload(t, enrich.Traces, 800)
				errc := make(chan error, 1)
				go func() { _, err := tp.send(t, in, enrich.Traces, body); errc <- err }()
				<-r.Held()
				up.none(t)
				if r.ByIP(netip.MustParseAddr("127.0.0.1")) == nil {
					r.Add(loopbackPod()) // the pod watch sees the pod
				}
				release()
				if err := <-errc; err != nil {
					t.Fatalf("%s: %v", in.name, err)
				}
				want, _, err := stampedBytes(se, enrich.Traces, body)
				if err != nil || len(want) <= len(body) {
					t.Fatal("not stamped", err)
				}
				if got := up.next(t); !bytes.Equal(got.body, want) {
					t.Errorf("%s: held request arrived as %d bytes, want Enrich's %d", in.name, len(got.body), len(want))
				}
				release = r.Hold()
			}
		})
	}
}
