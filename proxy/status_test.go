package proxy

import (
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestGRPCToHTTP: every gRPC code maps to an HTTP status of the same OTLP
// retry class.
func TestGRPCToHTTP(t *testing.T) {
	retry := func(c codes.Code) *status.Status {
		s, err := withRetryInfo(status.New(c, "x"), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	cases := []struct {
		st   *status.Status
		want int
	}{
		{status.New(codes.OK, ""), 200},
		{status.New(codes.Canceled, ""), 503},
		{status.New(codes.Unknown, ""), 500},
		{status.New(codes.InvalidArgument, ""), 400},
		{status.New(codes.DeadlineExceeded, ""), 504},
		{status.New(codes.NotFound, ""), 404},
		{status.New(codes.AlreadyExists, ""), 409},
		{status.New(codes.PermissionDenied, ""), 403},
		{status.New(codes.ResourceExhausted, ""), 413},
		{retry(codes.ResourceExhausted), 429},
		{status.New(codes.FailedPrecondition, ""), 400},
		{status.New(codes.Aborted, ""), 503},
		{status.New(codes.OutOfRange, ""), 503},
		{status.New(codes.Unimplemented, ""), 404},
		{status.New(codes.Internal, ""), 500},
		{status.New(codes.Unavailable, ""), 503},
		{retry(codes.Unavailable), 503},
		{status.New(codes.DataLoss, ""), 503},
		{status.New(codes.Unauthenticated, ""), 401},
	}
	for _, c := range cases {
		got := httpStatusFromGRPC(c.st)
		if got != c.want {
			t.Errorf("%v (retry info %v) -> %d, want %d", c.st.Code(), retryDelay(c.st) >= 0, got, c.want)
		}
		if c.st.Code() != codes.OK && retryableGRPC(c.st) != retryableHTTP(got) {
			t.Errorf("%v -> %d changes the retry class", c.st.Code(), got)
		}
	}
}

// TestHTTPToGRPC: every HTTP status maps to a gRPC code of the same OTLP
// retry class; 429 with a retry delay keeps it as RESOURCE_EXHAUSTED.
func TestHTTPToGRPC(t *testing.T) {
	cases := []struct {
		http  int
		retry bool
		want  codes.Code
	}{
		{200, false, codes.OK},
		{204, false, codes.OK},
		{400, false, codes.InvalidArgument},
		{401, false, codes.Unauthenticated},
		{403, false, codes.PermissionDenied},
		{404, false, codes.Unimplemented},
		{405, false, codes.Unimplemented},
		{409, false, codes.AlreadyExists},
		{413, false, codes.ResourceExhausted},
		{415, false, codes.FailedPrecondition},
		{429, false, codes.Unavailable},
		{429, true, codes.ResourceExhausted},
		{500, false, codes.Internal},
		{501, false, codes.Unimplemented},
		{502, false, codes.Unavailable},
		{503, false, codes.Unavailable},
		{503, true, codes.Unavailable},
		{504, false, codes.DeadlineExceeded},
		{505, false, codes.Unknown},
	}
	for _, c := range cases {
		got := grpcCodeFromHTTP(c.http, c.retry)
		if got != c.want {
			t.Errorf("HTTP %d (retry %v) -> %v, want %v", c.http, c.retry, got, c.want)
		}
		if c.http >= 400 {
			st := status.New(got, "x")
			if c.retry {
				st, _ = withRetryInfo(st, time.Second)
			}
			if retryableGRPC(st) != retryableHTTP(c.http) {
				t.Errorf("HTTP %d -> %v changes the retry class", c.http, got)
			}
		}
	}
}

// TestRetryAfter: Retry-After parsing (seconds, HTTP date) and formatting.
func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"7", 7 * time.Second, true},
		{"0", 0, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second, true},
		{now.Add(-30 * time.Second).Format(http.TimeFormat), 0, true},
	} {
		got, ok := parseRetryAfter(c.in, now)
		if got != c.want || ok != c.ok {
			t.Errorf("parseRetryAfter(%q) = %v %v, want %v %v", c.in, got, ok, c.want, c.ok)
		}
	}
	if got := retryAfterHeader(1500 * time.Millisecond); got != "2" {
		t.Errorf("retryAfterHeader(1.5s) = %q, want 2", got)
	}
}

// retryableGRPC reports whether an OTLP client may retry after st.
func retryableGRPC(st *status.Status) bool {
	switch st.Code() {
	case codes.Canceled, codes.DeadlineExceeded, codes.Aborted, codes.OutOfRange,
		codes.Unavailable, codes.DataLoss:
		return true
	case codes.ResourceExhausted:
		return retryDelay(st) >= 0
	}
	return false
}
