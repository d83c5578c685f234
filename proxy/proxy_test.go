package proxy

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/podstamp/podstamp/enrich"
	"google.golang.org/grpc"
)

// ingress is one way a client can send: gRPC or HTTP, protobuf or JSON,
// compressed or not.
type ingress struct {
	name string
	grpc bool
	json bool
	gzip bool
}

var protobufIngresses = []ingress{
	{name: "grpc"},
	{name: "grpc-gzip", grpc: true, gzip: true},
	{name: "http-protobuf"},
	{name: "http-protobuf-gzip", gzip: true},
}

func init() { protobufIngresses[0].grpc = true }

// send exports body through the proxy and returns the response bytes
// (protobuf) or the HTTP result.
func (tp *testProxy) send(t *testing.T, in ingress, sig enrich.Signal, body []byte) ([]byte, error) {
	t.Helper()
	ctx := context.Background()
	if in.grpc {
		var opts []grpc.CallOption
		if in.gzip {
			opts = append(opts, grpc.UseCompressor("gzip"))
		}
		return tp.exportGRPC(ctx, sig, body, opts...)
	}
	ct := contentTypeProtobuf
	if in.json {
		ct = contentTypeJSON
	}
	r := tp.exportHTTP(t, ctx, sig, ct, in.gzip, body, nil)
	if r.status != 200 {
		return r.body, fmt.Errorf("HTTP %d: %q", r.status, r.body)
	}
	if got := r.header.Get("Content-Type"); got != ct {
		t.Errorf("response Content-Type %q, want %q", got, ct)
	}
	return r.body, nil
}

func upstreamKinds(t *testing.T) map[string]func(testing.TB) *upstream {
	return map[string]func(testing.TB) *upstream{
		"grpc-upstream": newGRPCUpstream,
		"lean-upstream": newLeanUpstream,
		"http-upstream": newHTTPUpstream,
	}
}

// TestPassThroughByteExact: for every signal, ingress and upstream protocol,
// the upstream receives exactly the client's bytes on the signal's method or
// path, and the client receives exactly the upstream's answer (here a
// partial success).
func TestPassThroughByteExact(t *testing.T) {
	for uname, mk := range upstreamKinds(t) {
		t.Run(uname, func(t *testing.T) {
			up := mk(t)
			tp := newTestProxy(t, up.targets())
			for _, in := range protobufIngresses {
				for _, sig := range enrich.Signals {
					t.Run(in.name+"/"+sig.String(), func(t *testing.T) {
						body, _ := payload(t, sig, 5)
						want := partialSuccess(t, sig, 2, "2 items too old")
						up.setAnswer(func(context.Context, received) upstreamAnswer { return upstreamAnswer{body: want} })
						resp, err := tp.send(t, in, sig, body)
						if err != nil {
							t.Fatal(err)
						}
						got := up.next(t)
						if !bytes.Equal(got.body, body) {
							t.Errorf("upstream got %d bytes differing from the %d sent", len(got.body), len(body))
						}
						wantPath := signals[sig].method
						if uname == "http-upstream" {
							wantPath = HTTPPath(sig)
						}
						if got.compressed {
							t.Error("upstream request compressed without compression configured")
						}
						if got.path != wantPath {
							t.Errorf("upstream path %q, want %q", got.path, wantPath)
						}
						if !bytes.Equal(resp, want) {
							t.Errorf("client got response %x, want the upstream's %x", resp, want)
						}
					})
				}
			}
		})
	}
}

// TestJSONConvertedFaithfully: OTLP/JSON requests reach the upstream as the
// protobuf encoding of the same data, and the JSON client gets the upstream's
// partial success back as JSON.
func TestJSONConvertedFaithfully(t *testing.T) {
	for uname, mk := range upstreamKinds(t) {
		t.Run(uname, func(t *testing.T) {
			up := mk(t)
			tp := newTestProxy(t, up.targets())
			for _, gz := range []bool{false, true} {
				for _, sig := range enrich.Signals {
					t.Run(fmt.Sprintf("%s/gzip=%v", sig, gz), func(t *testing.T) {
						pb, js := payload(t, sig, 4)
						up.setAnswer(func(context.Context, received) upstreamAnswer {
							return upstreamAnswer{body: partialSuccess(t, sig, 3, "three rejected")}
						})
						resp, err := tp.send(t, ingress{name: "http-json", json: true, gzip: gz}, sig, js)
						if err != nil {
							t.Fatal(err)
						}
						got := up.next(t)
						if !sameRequest(t, sig, got.body, pb) {
							t.Errorf("upstream got %d bytes, want the %d-byte protobuf encoding of the same data", len(got.body), len(pb))
						}
						// The response is the partial success, in JSON.
						wantJSON, err := signals[sig].responseProtoToJSON(partialSuccess(t, sig, 3, "three rejected"))
						if err != nil {
							t.Fatal(err)
						}
						if !bytes.Equal(resp, wantJSON) {
							t.Errorf("client got %s, want %s", resp, wantJSON)
						}
						if !bytes.Contains(resp, []byte(`"errorMessage":"three rejected"`)) {
							t.Errorf("JSON response %s lacks the partial success message", resp)
						}
					})
				}
			}
		})
	}
}
