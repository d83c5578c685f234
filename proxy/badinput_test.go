package proxy

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/podstamp/podstamp/enrich"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Malformed protobuf requests, at the levels podstamp walks.
var malformedRequests = []struct {
	name string
	body []byte
	msg  string // part of the error message
}{
	{"truncated-length", []byte{0x0a, 0xff}, "resource entry 0"},
	{"length-past-end", []byte{0x0a, 0x05, 0x01}, "resource entry 0"},
	{"resource-entries-not-bytes", []byte{0x08, 0x01}, "wire type 0"},
	{"bad-tag", []byte{0x00}, "bad field tag"},
	{"resource-truncated", []byte{0x0a, 0x03, 0x0a, 0x05, 0x01}, "resource entry 0"},
	{"resource-not-bytes", []byte{0x0a, 0x02, 0x08, 0x01}, "field 1 (resource)"},
	{"resource-attributes-broken", []byte{0x0a, 0x04, 0x0a, 0x02, 0x0a, 0x05}, "resource"},
}

// deepDefect is a request whose envelope and resource are fine but whose
// scope level is garbage: podstamp forwards it and the upstream judges.
func deepDefect() []byte {
	var rs []byte
	rs = protowire.AppendTag(rs, 2, protowire.BytesType)
	rs = protowire.AppendBytes(rs, []byte{0xff, 0xff, 0xff})
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	return protowire.AppendBytes(b, rs)
}

// TestBadInputHTTP: each bad request gets the right status and a reason, and
// nothing is forwarded.
func TestBadInputHTTP(t *testing.T) {
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets(), func(c *Config, _ *Options) { c.MaxRequestBytes = 64 << 10 })
	big := bytes.Repeat([]byte{0}, 65<<10) // zeros: a valid sequence? no, tag 0 is invalid, but the size check comes first
	type req struct {
		name, method, path, ctype, encoding string
		body                                []byte
		gzip                                bool
		want                                int
		msg                                 string
	}
	cases := []req{
		{name: "unknown-path", method: "POST", path: "/v1/spans", ctype: contentTypeProtobuf, want: 404},
		{name: "root", method: "POST", path: "/", ctype: contentTypeProtobuf, want: 404},
		{name: "get", method: "GET", path: "/v1/traces", want: 405},
		{name: "put", method: "PUT", path: "/v1/logs", ctype: contentTypeProtobuf, want: 405},
		{name: "text-plain", method: "POST", path: "/v1/traces", ctype: "text/plain", body: []byte("hi"), want: 415},
		{name: "no-content-type", method: "POST", path: "/v1/metrics", body: []byte{}, want: 415},
		{name: "brotli", method: "POST", path: "/v1/traces", ctype: contentTypeProtobuf, encoding: "br", body: []byte{1}, want: 415},
		{name: "bad-json", method: "POST", path: "/v1/traces", ctype: contentTypeJSON, body: []byte(`{"resourceSpans": [`), want: 400, msg: "malformed traces JSON"},
		{name: "json-wrong-type", method: "POST", path: "/v1/logs", ctype: contentTypeJSON, body: []byte(`{"resourceLogs": 5}`), want: 400, msg: "malformed logs JSON"},
		{name: "not-gzip", method: "POST", path: "/v1/traces", ctype: contentTypeProtobuf, encoding: "gzip", body: []byte("plain"), want: 400, msg: "gzip"},
		{name: "too-large", method: "POST", path: "/v1/traces", ctype: contentTypeProtobuf, body: big, want: 413, msg: "limit"},
		{name: "too-large-after-gzip", method: "POST", path: "/v1/traces", ctype: contentTypeProtobuf, body: big, gzip: true, want: 413, msg: "after decompression"},
		{name: "too-large-json", method: "POST", path: "/v1/traces", ctype: contentTypeJSON, body: big, want: 413},
	}
	for _, m := range malformedRequests {
		for _, sig := range enrich.Signals {
			cases = append(cases, req{name: "malformed-" + m.name + "-" + sig.String(), method: "POST", path: HTTPPath(sig),
				ctype: contentTypeProtobuf, body: m.body, want: 400, msg: m.msg})
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := c.body
			if c.gzip {
				body = gzipBytes(t, body)
				if len(body) >= 64<<10 {
					t.Fatal("compressed body not small")
				}
			}
			r, err := http.NewRequest(c.method, tp.httpURL+c.path, bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if c.ctype != "" {
				r.Header.Set("Content-Type", c.ctype)
			}
			enc := c.encoding
			if c.gzip {
				enc = "gzip"
			}
			if enc != "" {
				r.Header.Set("Content-Encoding", enc)
			}
			resp, err := tp.hc.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			var rb bytes.Buffer
			rb.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Fatalf("status %d, want %d (body %q)", resp.StatusCode, c.want, rb.String())
			}
			if c.want == 405 && resp.Header.Get("Allow") != "POST" {
				t.Errorf("405 without Allow: POST")
			}
			if c.msg != "" {
				msg := rb.String()
				if c.ctype == contentTypeProtobuf {
					var sp spb.Status
					if err := proto.Unmarshal(rb.Bytes(), &sp); err != nil {
						t.Fatalf("error body is not a google.rpc.Status: %v", err)
					}
					msg = sp.GetMessage()
				}
				if !strings.Contains(msg, c.msg) {
					t.Errorf("error message %q does not contain %q", msg, c.msg)
				}
			}
			up.none(t)
		})
	}

	// Defects below the resource level are the upstream's to judge.
	r := tp.exportHTTP(t, context.Background(), enrich.Traces, contentTypeProtobuf, false, deepDefect(), nil)
	if r.status != 200 {
		t.Errorf("deep defect: HTTP %d, want it forwarded", r.status)
	}
	if got := up.next(t); !bytes.Equal(got.body, deepDefect()) {
		t.Error("deep defect not forwarded byte for byte")
	}
}

// TestBadInputGRPC: malformed and oversized gRPC requests are answered by
// podstamp (INVALID_ARGUMENT / RESOURCE_EXHAUSTED) and not forwarded.
func TestBadInputGRPC(t *testing.T) {
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets(), func(c *Config, _ *Options) { c.MaxGRPCRequestBytes = 64 << 10 })
	for _, m := range malformedRequests {
		for _, sig := range enrich.Signals {
			t.Run(m.name+"/"+sig.String(), func(t *testing.T) {
				_, err := tp.exportGRPC(context.Background(), sig, m.body)
				st := status.Convert(err)
				if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), m.msg) {
					t.Errorf("got %v %q, want INVALID_ARGUMENT mentioning %q", st.Code(), st.Message(), m.msg)
				}
				up.none(t)
			})
		}
	}
	big := make([]byte, 65<<10)
	for _, gz := range []bool{false, true} {
		var opts []grpc.CallOption
		if gz {
			opts = append(opts, grpc.UseCompressor("gzip"))
		}
		_, err := tp.exportGRPC(context.Background(), enrich.Traces, big, opts...)
		if status.Code(err) != codes.ResourceExhausted {
			t.Errorf("too large (gzip=%v): %v, want RESOURCE_EXHAUSTED", gz, err)
		}
		up.none(t)
	}
	// gRPC writes the status of a message it could not receive before the
	// handler returns and counts it: the count may trail the answer.
	tooLarge := map[string]string{"signal": "traces", "protocol": "grpc", "outcome": "too_large"}
	for deadline := time.Now().Add(5 * time.Second); counterValue(t, tp, "podstamp_requests_total", tooLarge) < 2 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if v := counterValue(t, tp, "podstamp_requests_total", tooLarge); v != 2 {
		t.Errorf("podstamp_requests_total{outcome=too_large} = %v, want 2", v)
	}
	var resp []byte
	err := tp.grpc.Invoke(context.Background(), "/opentelemetry.proto.collector.trace.v1.TraceService/Nope", &big, &resp)
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("unknown method: %v, want UNIMPLEMENTED", err)
	}
	if _, err := tp.exportGRPC(context.Background(), enrich.Traces, deepDefect()); err != nil {
		t.Errorf("deep defect: %v, want it forwarded", err)
	}
	up.next(t)
}
