package proxy

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/podstamp/podstamp/enrich"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

func withRetry(t *testing.T, st *status.Status, d time.Duration) *status.Status {
	t.Helper()
	st, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestGRPCUpstreamErrorsPassThrough: a gRPC upstream's status (code, message,
// details such as RetryInfo) reaches gRPC clients unchanged and HTTP clients
// as the mapped HTTP status, Retry-After and a google.rpc.Status body.
func TestGRPCUpstreamErrorsPassThrough(t *testing.T) {
	for name, mk := range map[string]func(testing.TB) *upstream{"grpc-upstream": newGRPCUpstream, "lean-upstream": newLeanUpstream} {
		t.Run(name, func(t *testing.T) { grpcUpstreamErrorsPassThrough(t, mk(t)) })
	}
}

func grpcUpstreamErrorsPassThrough(t *testing.T, up *upstream) {
	tp := newTestProxy(t, up.targets())
	cases := []struct {
		name       string
		st         *status.Status
		httpStatus int
		retryAfter string
	}{
		{"unavailable-retryinfo", withRetry(t, status.New(codes.Unavailable, "collector overloaded"), 2*time.Second), 503, "2"},
		{"resource-exhausted-retryinfo", withRetry(t, status.New(codes.ResourceExhausted, "memory limiter"), 5*time.Second), 429, "5"},
		{"resource-exhausted-permanent", status.New(codes.ResourceExhausted, "too big"), 413, ""},
		{"invalid-argument", status.New(codes.InvalidArgument, "bad span"), 400, ""},
		{"permission-denied", status.New(codes.PermissionDenied, "tenant unknown"), 403, ""},
		{"unauthenticated", status.New(codes.Unauthenticated, "no token"), 401, ""},
		{"deadline", status.New(codes.DeadlineExceeded, "slow exporter"), 504, ""},
	}
	for _, c := range cases {
		for _, sig := range enrich.Signals {
			t.Run(c.name+"/"+sig.String(), func(t *testing.T) {
				up.setAnswer(func(context.Context, received) upstreamAnswer { return upstreamAnswer{err: c.st.Err()} })
				body, js := payload(t, sig, 2)

				_, err := tp.exportGRPC(context.Background(), sig, body)
				up.next(t)
				got := status.Convert(err)
				if !proto.Equal(got.Proto(), c.st.Proto()) {
					t.Errorf("gRPC client got %v, want %v", got.Proto(), c.st.Proto())
				}

				r := tp.exportHTTP(t, context.Background(), sig, contentTypeProtobuf, false, body, nil)
				up.next(t)
				if r.status != c.httpStatus {
					t.Errorf("HTTP status %d, want %d", r.status, c.httpStatus)
				}
				if ra := r.header.Get("Retry-After"); ra != c.retryAfter {
					t.Errorf("Retry-After %q, want %q", ra, c.retryAfter)
				}
				var sp spb.Status
				if err := proto.Unmarshal(r.body, &sp); err != nil {
					t.Fatalf("HTTP error body is not a google.rpc.Status: %v", err)
				}
				if !proto.Equal(&sp, c.st.Proto()) {
					t.Errorf("HTTP body %v, want %v", &sp, c.st.Proto())
				}

				r = tp.exportHTTP(t, context.Background(), sig, contentTypeJSON, false, js, nil)
				up.next(t)
				if r.status != c.httpStatus {
					t.Errorf("HTTP/JSON status %d, want %d", r.status, c.httpStatus)
				}
				var sj spb.Status
				if err := protojson.Unmarshal(r.body, &sj); err != nil {
					t.Fatalf("HTTP/JSON error body %q is not a JSON google.rpc.Status: %v", r.body, err)
				}
				if !proto.Equal(&sj, c.st.Proto()) {
					t.Errorf("HTTP/JSON body %v, want %v", &sj, c.st.Proto())
				}
				if ct := r.header.Get("Content-Type"); ct != contentTypeJSON {
					t.Errorf("HTTP/JSON error Content-Type %q", ct)
				}
			})
		}
	}
}

// TestHTTPUpstreamErrorsPassThrough: an HTTP upstream's status, Retry-After
// and body reach HTTP clients unchanged, and gRPC clients as the mapped code
// with the message and a RetryInfo from Retry-After.
func TestHTTPUpstreamErrorsPassThrough(t *testing.T) {
	up := newHTTPUpstream(t)
	tp := newTestProxy(t, up.targets())
	pbStatus := func(c codes.Code, msg string) []byte {
		b, _ := proto.Marshal(&spb.Status{Code: int32(c), Message: msg})
		return b
	}
	cases := []struct {
		name       string
		httpStatus int
		retryAfter string
		ctype      string
		body       []byte
		wantCode   codes.Code
		wantMsg    string
		wantRetry  time.Duration // -1: none
	}{
		{"503-retry-after", 503, "7", "", pbStatus(codes.Unavailable, "busy"), codes.Unavailable, "busy", 7 * time.Second},
		{"429-retry-after", 429, "3", "", pbStatus(codes.ResourceExhausted, "slow down"), codes.ResourceExhausted, "slow down", 3 * time.Second},
		{"429-no-retry-after", 429, "", "", pbStatus(codes.ResourceExhausted, "slow down"), codes.Unavailable, "slow down", -1},
		{"502", 502, "", "", nil, codes.Unavailable, "upstream answered HTTP 502 Bad Gateway", -1},
		{"400", 400, "", "", pbStatus(codes.InvalidArgument, "bad data"), codes.InvalidArgument, "bad data", -1},
		{"401", 401, "", "", pbStatus(codes.Unauthenticated, "who"), codes.Unauthenticated, "who", -1},
		{"500-text", 500, "", "text/plain", []byte("boom\n"), codes.Internal, "boom", -1},
	}
	for _, c := range cases {
		for _, sig := range enrich.Signals {
			t.Run(c.name+"/"+sig.String(), func(t *testing.T) {
				up.setAnswer(func(context.Context, received) upstreamAnswer {
					h := map[string]string{}
					if c.retryAfter != "" {
						h["Retry-After"] = c.retryAfter
					}
					if c.ctype != "" {
						h["Content-Type"] = c.ctype
					}
					return upstreamAnswer{httpStatus: c.httpStatus, header: h, body: c.body}
				})
				body, _ := payload(t, sig, 2)

				r := tp.exportHTTP(t, context.Background(), sig, contentTypeProtobuf, false, body, nil)
				up.next(t)
				if r.status != c.httpStatus {
					t.Errorf("HTTP status %d, want the upstream's %d", r.status, c.httpStatus)
				}
				if ra := r.header.Get("Retry-After"); ra != c.retryAfter {
					t.Errorf("Retry-After %q, want the upstream's %q", ra, c.retryAfter)
				}
				var sp spb.Status
				if err := proto.Unmarshal(r.body, &sp); err != nil {
					t.Fatalf("HTTP error body: %v", err)
				}
				if sp.GetMessage() != c.wantMsg {
					t.Errorf("HTTP body message %q, want %q", sp.GetMessage(), c.wantMsg)
				}

				_, err := tp.exportGRPC(context.Background(), sig, body)
				up.next(t)
				st := status.Convert(err)
				if st.Code() != c.wantCode || st.Message() != c.wantMsg {
					t.Errorf("gRPC client got %v %q, want %v %q", st.Code(), st.Message(), c.wantCode, c.wantMsg)
				}
				if d := retryDelay(st); d != c.wantRetry {
					t.Errorf("gRPC RetryInfo delay %v, want %v", d, c.wantRetry)
				}
				if retryableHTTP(c.httpStatus) != retryableGRPC(st) {
					t.Errorf("retryability changed: HTTP %d retryable=%v, gRPC %v retryable=%v",
						c.httpStatus, retryableHTTP(c.httpStatus), st.Code(), retryableGRPC(st))
				}
			})
		}
	}
}

// TestUpstreamUnreachable: a dead upstream is UNAVAILABLE / 503, retryable.
func TestUpstreamUnreachable(t *testing.T) {
	for _, proto := range []string{ProtocolGRPC, TransportLean, ProtocolHTTPProtobuf} {
		t.Run(proto, func(t *testing.T) {
			target := Target{Protocol: proto, Endpoint: "http://127.0.0.1:1", Timeout: 5 * time.Second}
			if proto == TransportLean {
				target.Protocol, target.Transport = ProtocolGRPC, TransportLean
			}
			targets := SameTarget(target)
			tp := newTestProxy(t, targets)
			body, _ := payload(t, enrich.Logs, 1)
			_, err := tp.exportGRPC(context.Background(), enrich.Logs, body)
			if status.Code(err) != codes.Unavailable {
				t.Errorf("gRPC: %v, want UNAVAILABLE", err)
			}
			r := tp.exportHTTP(t, context.Background(), enrich.Logs, contentTypeProtobuf, false, body, nil)
			if r.status != http.StatusServiceUnavailable {
				t.Errorf("HTTP: %d, want 503", r.status)
			}
		})
	}
}
