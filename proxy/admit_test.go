package proxy

import (
	"bytes"
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

	"github.com/podstamp/podstamp/enrich"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

var stranger = netip.MustParseAddr("127.0.0.2")

// refuseStranger admits everyone but 127.0.0.2.
func refuseStranger(peer netip.Addr) error {
	if peer == stranger {
		return errors.New("not a pod of this node (open access with --allow-cidr)")
	}
	return nil
}

// dialFrom returns a dialer whose connections leave from src.
func dialFrom(src netip.Addr) *net.Dialer {
	return &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
}

// grpcFrom is a client of tp's gRPC listener whose connections leave from src.
func grpcFrom(t *testing.T, tp *testProxy, src netip.Addr) *grpc.ClientConn {
	t.Helper()
	d := dialFrom(src)
	cc, err := grpc.NewClient("passthrough:///"+tp.GRPCAddr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		}),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(bytesCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// httpFrom is an HTTP client whose connections leave from src.
func httpFrom(t *testing.T, src netip.Addr) *http.Client {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: dialFrom(src).DialContext}}
	t.Cleanup(hc.CloseIdleConnections)
	return hc
}

// TestAdmitGRPC: a sender the Admit hook refuses gets PERMISSION_DENIED with
// the hook's reason and nothing reaches the upstream; the refusal is counted;
// an admitted sender on the same listener is forwarded.
func TestAdmitGRPC(t *testing.T) {
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets(), func(_ *Config, o *Options) { o.Admit = refuseStranger })
	body, _ := payload(t, enrich.Traces, 3)

	var resp []byte
	err := grpcFrom(t, tp, stranger).Invoke(context.Background(), signals[enrich.Traces].method, &body, &resp)
	if st := status.Convert(err); st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), "--allow-cidr") ||
		!strings.Contains(st.Message(), "127.0.0.2") {
		t.Fatalf("refused sender: %v, want PERMISSION_DENIED naming the peer and the hook's reason", err)
	}
	up.none(t)
	if got := counterValue(t, tp, "podstamp_requests_total", map[string]string{"signal": "traces", "protocol": "grpc", "outcome": "forbidden"}); got != 1 {
		t.Errorf("forbidden requests counted %v, want 1", got)
	}

	if _, err := tp.exportGRPC(context.Background(), enrich.Traces, body); err != nil {
		t.Fatalf("admitted sender: %v", err)
	}
	if got := up.next(t); !bytes.Equal(got.body, body) {
		t.Error("admitted sender's request not forwarded as sent")
	}
	up.none(t)
}

// TestAdmitHTTP: a refused OTLP/HTTP sender gets 403 with a google.rpc.Status
// in its request's encoding, before its body is read (the client's body
// never ends here), and nothing reaches the upstream.
func TestAdmitHTTP(t *testing.T) {
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets(), func(_ *Config, o *Options) { o.Admit = refuseStranger })
	hc := httpFrom(t, stranger)

	for _, ct := range []string{contentTypeProtobuf, contentTypeJSON} {
		// A body that never ends: only an answer that does not wait for it
		// returns.
		pr, pw := io.Pipe()
		go pw.Write([]byte{0x0a, 0x00}) // a start, then nothing
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, tp.httpURL+"/v1/logs", pr)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", ct)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", ct, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		pw.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s: HTTP %d, want 403", ct, resp.StatusCode)
		}
		if got := resp.Header.Get("Content-Type"); got != ct {
			t.Errorf("%s: answered in %q", ct, got)
		}
		var st spb.Status
		if ct == contentTypeJSON {
			err = protojson.Unmarshal(b, &st)
		} else {
			err = proto.Unmarshal(b, &st)
		}
		if err != nil || codes.Code(st.GetCode()) != codes.PermissionDenied || !strings.Contains(st.GetMessage(), "--allow-cidr") {
			t.Errorf("%s: body %q (%v), want a PERMISSION_DENIED google.rpc.Status naming --allow-cidr", ct, b, err)
		}
	}
	up.none(t)
	if got := counterValue(t, tp, "podstamp_requests_total", map[string]string{"signal": "logs", "protocol": "http", "outcome": "forbidden"}); got != 2 {
		t.Errorf("forbidden requests counted %v, want 2", got)
	}

	body, _ := payload(t, enrich.Logs, 1)
	if r := tp.exportHTTP(t, context.Background(), enrich.Logs, contentTypeProtobuf, false, body, nil); r.status != 200 {
		t.Fatalf("admitted sender: HTTP %d", r.status)
	}
	up.next(t)
}

// TestIdentityHeaders: the identity hook sets its header from the sender's
// pod; a client's header of that name is never forwarded, whether the pod is
// known (the hook's value wins) or not (no header at all), even when the
// name is on the forwarding allow-list. Other allow-listed headers still go.
func TestIdentityHeaders(t *testing.T) {
	for uname, mk := range upstreamKinds(t) {
		t.Run(uname, func(t *testing.T) {
			up := mk(t)
			var stamped atomic.Bool // set by the enricher, read by the identity hook
			tp := newTestProxy(t, up.targets(), func(c *Config, o *Options) {
				c.ForwardHeaders = []string{"authorization", "x-scope-orgid"}
				o.Enricher = funcEnricher(func(_ context.Context, _ enrich.Signal, _ enrich.Peer, body, _ []byte) ([]byte, enrich.Result, error) {
					stamped.Store(true)
					return body, enrich.ResultHit, nil
				})
				o.IdentityHeaderNames = []string{"X-Scope-OrgID"}
				o.IdentityHeaders = func(peer netip.Addr) []string {
					if !stamped.Swap(false) {
						t.Error("identity hook called before stamping")
					}
					if peer == stranger {
						return nil // pod unknown
					}
					return []string{"X-Scope-OrgID", "team-a", "x-other", "not-declared"}
				}
			})
			in := map[string]string{"authorization": "Bearer t0k", "x-scope-orgid": "tenant-picked-by-client"}
			body, _ := payload(t, enrich.Traces, 1)
			check := func(how string, got received, want string) {
				t.Helper()
				if v := got.header["x-scope-orgid"]; strings.Join(v, ",") != want {
					t.Errorf("%s: upstream x-scope-orgid %q, want %q", how, v, want)
				}
				if got.header["x-other"] != nil {
					t.Errorf("%s: an undeclared identity header was set", how)
				}
				if v := got.header["authorization"]; strings.Join(v, ",") != "Bearer t0k" {
					t.Errorf("%s: authorization %q not forwarded", how, v)
				}
			}
			ctx := metadata.NewOutgoingContext(context.Background(), metadata.New(in))

			if _, err := tp.exportGRPC(ctx, enrich.Traces, body); err != nil {
				t.Fatal(err)
			}
			check("grpc, known pod", up.next(t), "team-a")
			if r := tp.exportHTTP(t, context.Background(), enrich.Traces, contentTypeProtobuf, false, body, in); r.status != 200 {
				t.Fatalf("HTTP %d", r.status)
			}
			check("http, known pod", up.next(t), "team-a")

			var resp []byte
			if err := grpcFrom(t, tp, stranger).Invoke(ctx, signals[enrich.Traces].method, &body, &resp); err != nil {
				t.Fatal(err)
			}
			check("grpc, unknown pod", up.next(t), "")
			req, _ := http.NewRequest(http.MethodPost, tp.httpURL+"/v1/traces", bytes.NewReader(body))
			req.Header.Set("Content-Type", contentTypeProtobuf)
			for k, v := range in {
				req.Header.Set(k, v)
			}
			r, err := httpFrom(t, stranger).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			r.Body.Close()
			if r.StatusCode != 200 {
				t.Fatalf("HTTP %d", r.StatusCode)
			}
			check("http, unknown pod", up.next(t), "")
		})
	}
}
