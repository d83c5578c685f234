package proxy

import (
	"math"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// This file is the single place where gRPC codes and HTTP statuses are mapped
// onto each other, following the OTLP specification's retry rules:
//
//   - gRPC retryable: CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE,
//     UNAVAILABLE, DATA_LOSS, and RESOURCE_EXHAUSTED only with RetryInfo.
//   - HTTP retryable: 429, 502, 503, 504. Every other 4xx/5xx is permanent.
//
// Every mapping keeps retryable retryable and permanent permanent.

// httpStatusFromGRPC returns the HTTP status an OTLP/HTTP client gets for a
// gRPC status (from a gRPC upstream or from podstamp itself).
func httpStatusFromGRPC(st *status.Status) int {
	switch st.Code() {
	case codes.OK:
		return http.StatusOK
	case codes.Canceled, codes.Aborted, codes.OutOfRange, codes.Unavailable, codes.DataLoss:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.ResourceExhausted:
		if retryDelay(st) >= 0 {
			return http.StatusTooManyRequests
		}
		return http.StatusRequestEntityTooLarge
	case codes.InvalidArgument, codes.FailedPrecondition:
		return http.StatusBadRequest
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.NotFound, codes.Unimplemented:
		return http.StatusNotFound
	case codes.AlreadyExists:
		return http.StatusConflict
	default: // Unknown, Internal
		return http.StatusInternalServerError
	}
}

// grpcCodeFromHTTP returns the gRPC code an OTLP/gRPC client gets for an HTTP
// status from an HTTP upstream. hasRetryInfo says whether the answer carries a
// retry delay (a RetryInfo detail or a Retry-After header).
func grpcCodeFromHTTP(httpStatus int, hasRetryInfo bool) codes.Code {
	switch {
	case httpStatus >= 200 && httpStatus < 300:
		return codes.OK
	case httpStatus == http.StatusTooManyRequests:
		if hasRetryInfo {
			return codes.ResourceExhausted
		}
		return codes.Unavailable
	case httpStatus == http.StatusBadGateway, httpStatus == http.StatusServiceUnavailable:
		return codes.Unavailable
	case httpStatus == http.StatusGatewayTimeout:
		return codes.DeadlineExceeded
	case httpStatus == http.StatusBadRequest:
		return codes.InvalidArgument
	case httpStatus == http.StatusUnauthorized:
		return codes.Unauthenticated
	case httpStatus == http.StatusForbidden:
		return codes.PermissionDenied
	case httpStatus == http.StatusNotFound, httpStatus == http.StatusMethodNotAllowed:
		return codes.Unimplemented
	case httpStatus == http.StatusRequestEntityTooLarge:
		return codes.ResourceExhausted // no RetryInfo: permanent
	case httpStatus == http.StatusConflict:
		return codes.AlreadyExists
	case httpStatus >= 400 && httpStatus < 500:
		return codes.FailedPrecondition
	case httpStatus == http.StatusNotImplemented:
		return codes.Unimplemented
	case httpStatus == http.StatusInternalServerError:
		return codes.Internal
	default:
		return codes.Unknown
	}
}

// retryableHTTP reports whether an OTLP/HTTP client may retry after code.
func retryableHTTP(code int) bool {
	switch code {
	case http.StatusTooManyRequests, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// retryDelay returns the delay of the status's RetryInfo detail, or -1.
func retryDelay(st *status.Status) time.Duration {
	for _, d := range st.Proto().GetDetails() {
		if d.MessageIs((*errdetails.RetryInfo)(nil)) {
			var ri errdetails.RetryInfo
			if d.UnmarshalTo(&ri) == nil {
				return ri.GetRetryDelay().AsDuration()
			}
		}
	}
	return -1
}

// retryAfterHeader formats d as a Retry-After value (whole seconds, rounded up).
func retryAfterHeader(d time.Duration) string {
	return strconv.FormatInt(int64(math.Ceil(d.Seconds())), 10)
}

// parseRetryAfter parses a Retry-After header: seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		if d < 0 {
			d = 0
		}
		return d, true
	}
	return 0, false
}

// statusFromHTTP turns an HTTP upstream's error answer into a gRPC status: the
// code follows the HTTP status, the message and details come from the body's
// google.rpc.Status when it has one. A Retry-After header becomes a RetryInfo
// detail when the body has none.
func statusFromHTTP(httpStatus int, body *spb.Status, retryAfter string) *status.Status {
	p := &spb.Status{}
	if body != nil {
		p.Message = body.GetMessage()
		p.Details = body.GetDetails()
	}
	if p.Message == "" {
		p.Message = "upstream answered HTTP " + strconv.Itoa(httpStatus) + " " + http.StatusText(httpStatus)
	}
	has := retryDelay(status.FromProto(p)) >= 0
	if !has && retryableHTTP(httpStatus) {
		if d, ok := parseRetryAfter(retryAfter, time.Now()); ok {
			if a, err := anypb.New(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)}); err == nil {
				p.Details = append(p.Details, a)
				has = true
			}
		}
	}
	p.Code = int32(grpcCodeFromHTTP(httpStatus, has))
	return status.FromProto(p)
}

// withRetryInfo returns st with a RetryInfo detail of delay d.
func withRetryInfo(st *status.Status, d time.Duration) (*status.Status, error) {
	return st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
}
