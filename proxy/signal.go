package proxy

import (
	"github.com/podstamp/podstamp/enrich"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/pprofile/pprofileotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// signalInfo is what differs between the four OTLP signals at the transport
// level: names, paths, and the pdata types used only on the JSON path.
type signalInfo struct {
	sig     enrich.Signal
	service string // fully qualified gRPC service name
	method  string // "/<service>/Export"
	path    string // OTLP/HTTP path

	// JSON path only: request JSON -> protobuf, response protobuf -> JSON.
	// requestJSONToProto appends to dst (profiles: returns pdata's own
	// buffer; jsonRoot nil).
	requestJSONToProto  func(dst, js []byte) ([]byte, error)
	responseProtoToJSON func([]byte) ([]byte, error)
	jsonRoot            *jmsg // the transcoder's schema of the request
}

// transcodeJSON is requestJSONToProto of the signals the transcoder
// (otlpjson.go) handles.
func transcodeJSON(root *jmsg) func(dst, js []byte) ([]byte, error) {
	return func(dst, js []byte) ([]byte, error) { return appendOTLPJSON(dst, root, js) }
}

var signals = [len(enrich.Signals)]signalInfo{
	enrich.Traces: {
		sig:                enrich.Traces,
		service:            "opentelemetry.proto.collector.trace.v1.TraceService",
		path:               "/v1/traces",
		requestJSONToProto: transcodeJSON(&jTracesRequest),
		jsonRoot:           &jTracesRequest,
		responseProtoToJSON: func(b []byte) ([]byte, error) {
			r := ptraceotlp.NewExportResponse()
			if err := r.UnmarshalProto(b); err != nil {
				return nil, err
			}
			return r.MarshalJSON()
		},
	},
	enrich.Metrics: {
		sig:                enrich.Metrics,
		service:            "opentelemetry.proto.collector.metrics.v1.MetricsService",
		path:               "/v1/metrics",
		requestJSONToProto: transcodeJSON(&jMetricsRequest),
		jsonRoot:           &jMetricsRequest,
		responseProtoToJSON: func(b []byte) ([]byte, error) {
			r := pmetricotlp.NewExportResponse()
			if err := r.UnmarshalProto(b); err != nil {
				return nil, err
			}
			return r.MarshalJSON()
		},
	},
	enrich.Logs: {
		sig:                enrich.Logs,
		service:            "opentelemetry.proto.collector.logs.v1.LogsService",
		path:               "/v1/logs",
		requestJSONToProto: transcodeJSON(&jLogsRequest),
		jsonRoot:           &jLogsRequest,
		responseProtoToJSON: func(b []byte) ([]byte, error) {
			r := plogotlp.NewExportResponse()
			if err := r.UnmarshalProto(b); err != nil {
				return nil, err
			}
			return r.MarshalJSON()
		},
	},
	enrich.Profiles: {
		sig:     enrich.Profiles,
		service: "opentelemetry.proto.collector.profiles.v1development.ProfilesService",
		path:    "/v1development/profiles",
		requestJSONToProto: func(_, b []byte) ([]byte, error) {
			r := pprofileotlp.NewExportRequest()
			if err := r.UnmarshalJSON(b); err != nil {
				return nil, err
			}
			return r.MarshalProto()
		},
		responseProtoToJSON: func(b []byte) ([]byte, error) {
			r := pprofileotlp.NewExportResponse()
			if err := r.UnmarshalProto(b); err != nil {
				return nil, err
			}
			return r.MarshalJSON()
		},
	},
}

func init() {
	for i := range signals {
		signals[i].method = "/" + signals[i].service + "/Export"
	}
}

// signalByPath returns the signal served at an OTLP/HTTP path.
func signalByPath(path string) (enrich.Signal, bool) {
	for i := range signals {
		if signals[i].path == path {
			return signals[i].sig, true
		}
	}
	return 0, false
}
