package otlpwire

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// Signal names used on the command line, in JSON and in paths.
const (
	Traces   = "traces"
	Metrics  = "metrics"
	Logs     = "logs"
	Profiles = "profiles"
)

// Signals lists the signals in a fixed order.
var Signals = []string{Traces, Metrics, Logs, Profiles}

// Method is the full gRPC method of each signal's Export call.
var Method = map[string]string{
	Traces:   "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
	Metrics:  "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
	Logs:     "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
	Profiles: "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export",
}

// HTTPPath is the OTLP/HTTP path of each signal.
var HTTPPath = map[string]string{
	Traces:   "/v1/traces",
	Metrics:  "/v1/metrics",
	Logs:     "/v1/logs",
	Profiles: "/v1development/profiles",
}

// ResourceKind is the name the Collector's debug exporter gives each
// signal's resource container ("ResourceSpans").
var ResourceKind = map[string]string{
	Traces:   "ResourceSpans",
	Metrics:  "ResourceMetrics",
	Logs:     "ResourceLogs",
	Profiles: "ResourceProfiles",
}

// ItemName is the unit the counts are in.
var ItemName = map[string]string{
	Traces:   "spans",
	Metrics:  "data points",
	Logs:     "log records",
	Profiles: "profiles",
}

// ErrMalformed is wrapped by every Scan error.
var ErrMalformed = errors.New("malformed OTLP payload")

// Attr is one resource attribute. Type is the debug exporter's type name
// (Str, Bool, Int, Double, Slice, Map, Bytes, Empty); Value is its text.
type Attr struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value string `json:"value"`
}

// Resource is one Resource<Signal> of an export request.
type Resource struct {
	Attrs []Attr
	Items int
}

// Get returns the text value of attribute key and whether it is present.
func (r *Resource) Get(key string) (string, bool) {
	for i := range r.Attrs {
		if r.Attrs[i].Key == key {
			return r.Attrs[i].Value, true
		}
	}
	return "", false
}

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, a...))
}

// field reads the next field of b. It returns the field number, wire type,
// the value bytes for length-delimited fields, and the rest of b.
func field(b []byte) (num protowire.Number, typ protowire.Type, val []byte, rest []byte, err error) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return 0, 0, nil, nil, malformed("bad tag: %v", protowire.ParseError(n))
	}
	b = b[n:]
	if typ == protowire.BytesType {
		v, m := protowire.ConsumeBytes(b)
		if m < 0 {
			return 0, 0, nil, nil, malformed("field %d: %v", num, protowire.ParseError(m))
		}
		return num, typ, v, b[m:], nil
	}
	m := protowire.ConsumeFieldValue(num, typ, b)
	if m < 0 {
		return 0, 0, nil, nil, malformed("field %d: %v", num, protowire.ParseError(m))
	}
	return num, typ, b[:m], b[m:], nil
}

// Scan walks one encoded Export<Signal>ServiceRequest and calls fn for each
// resource, with its attributes and its item count (spans, metric data
// points, log records, profiles).
func Scan(signal string, body []byte, fn func(Resource)) error {
	for len(body) > 0 {
		num, typ, val, rest, err := field(body)
		if err != nil {
			return err
		}
		body = rest
		if num != 1 || typ != protowire.BytesType {
			continue
		}
		res, err := scanResourceX(signal, val)
		if err != nil {
			return err
		}
		fn(res)
	}
	return nil
}

func scanResourceX(signal string, b []byte) (Resource, error) {
	var r Resource
	for len(b) > 0 {
		num, typ, val, rest, err := field(b)
		if err != nil {
			return r, err
		}
		b = rest
		if typ != protowire.BytesType {
			continue
		}
		switch num {
		case 1:
			if r.Attrs, err = scanResource(val, r.Attrs); err != nil {
				return r, err
			}
		case 2:
			n, err := countScope(signal, val)
			if err != nil {
				return r, err
			}
			r.Items += n
		}
	}
	return r, nil
}

func scanResource(b []byte, attrs []Attr) ([]Attr, error) {
	for len(b) > 0 {
		num, typ, val, rest, err := field(b)
		if err != nil {
			return attrs, err
		}
		b = rest
		if num != 1 || typ != protowire.BytesType {
			continue
		}
		a, err := scanKeyValue(val)
		if err != nil {
			return attrs, err
		}
		attrs = append(attrs, a)
	}
	return attrs, nil
}

func scanKeyValue(b []byte) (Attr, error) {
	var a Attr
	a.Type = "Empty"
	for len(b) > 0 {
		num, typ, val, rest, err := field(b)
		if err != nil {
			return a, err
		}
		b = rest
		switch {
		case num == 1 && typ == protowire.BytesType:
			a.Key = string(val)
		case num == 2 && typ == protowire.BytesType:
			a.Type, a.Value, err = anyValue(val, 0)
			if err != nil {
				return a, err
			}
		}
	}
	return a, nil
}

// anyValue renders an AnyValue as the debug exporter would.
func anyValue(b []byte, depth int) (typ, text string, err error) {
	if depth > 32 {
		return "", "", malformed("AnyValue nested too deep")
	}
	typ = "Empty"
	for len(b) > 0 {
		num, wt, val, rest, err := field(b)
		if err != nil {
			return "", "", err
		}
		b = rest
		switch num {
		case 1:
			typ, text = "Str", string(val)
		case 2:
			v, _ := protowire.ConsumeVarint(val)
			typ, text = "Bool", strconv.FormatBool(v != 0)
		case 3:
			v, _ := protowire.ConsumeVarint(val)
			typ, text = "Int", strconv.FormatInt(int64(v), 10)
		case 4:
			if wt != protowire.Fixed64Type {
				return "", "", malformed("double_value has wire type %d", wt)
			}
			v, _ := protowire.ConsumeFixed64(val)
			typ, text = "Double", strconv.FormatFloat(math.Float64frombits(v), 'g', -1, 64)
		case 5:
			var parts []string
			err := eachField1(val, func(v []byte) error {
				t, s, err := anyValue(v, depth+1)
				parts = append(parts, t+"("+s+")")
				return err
			})
			if err != nil {
				return "", "", err
			}
			typ, text = "Slice", "["+strings.Join(parts, ",")+"]"
		case 6:
			var parts []string
			err := eachField1(val, func(v []byte) error {
				a, err := scanKeyValue(v)
				parts = append(parts, a.Key+":"+a.Type+"("+a.Value+")")
				return err
			})
			if err != nil {
				return "", "", err
			}
			typ, text = "Map", "{"+strings.Join(parts, ",")+"}"
		case 7:
			typ, text = "Bytes", fmt.Sprintf("%x", val)
		}
	}
	return typ, text, nil
}

// eachField1 calls f with the value of every field 1 of msg (the repeated
// values of an ArrayValue or KeyValueList), stopping at the first error.
func eachField1(msg []byte, f func(v []byte) error) error {
	for len(msg) > 0 {
		n, _, v, rest, err := field(msg)
		if err != nil {
			return err
		}
		msg = rest
		if n != 1 {
			continue
		}
		if err := f(v); err != nil {
			return err
		}
	}
	return nil
}

// countScope counts the items of one Scope<Signal>.
func countScope(signal string, b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		num, typ, val, rest, err := field(b)
		if err != nil {
			return 0, err
		}
		b = rest
		if num != 2 || typ != protowire.BytesType {
			continue
		}
		if signal == Metrics {
			c, err := countDataPoints(val)
			if err != nil {
				return 0, err
			}
			n += c
			continue
		}
		n++
	}
	return n, nil
}

// countDataPoints counts the data points of one Metric: gauge 5, sum 7,
// histogram 9, exponential histogram 10, summary 11, each with
// data_points = 1.
func countDataPoints(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		num, typ, val, rest, err := field(b)
		if err != nil {
			return 0, err
		}
		b = rest
		if typ != protowire.BytesType {
			continue
		}
		switch num {
		case 5, 7, 9, 10, 11:
			for c := val; len(c) > 0; {
				dn, _, _, r, err := field(c)
				if err != nil {
					return 0, err
				}
				c = r
				if dn == 1 {
					n++
				}
			}
		}
	}
	return n, nil
}
