package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/podstamp/podstamp/enrich"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// jsonSignal is one signal the transcoder handles, with pdata's own
// decoders as the reference.
type jsonSignal struct {
	name string
	root *jmsg
	// fromJSON: pdata's JSON → protobuf; canon: protobuf → pdata →
	// protobuf (pdata's encoding is deterministic, so equal requests give
	// equal bytes).
	fromJSON func([]byte) ([]byte, error)
	canon    func([]byte) ([]byte, error)
}

var jsonSignals = []jsonSignal{
	{"traces", &jTracesRequest,
		func(b []byte) ([]byte, error) {
			r := ptraceotlp.NewExportRequest()
			if err := r.UnmarshalJSON(b); err != nil {
				return nil, err
			}
			return r.MarshalProto()
		},
		func(b []byte) ([]byte, error) {
			r := ptraceotlp.NewExportRequest()
			if err := r.UnmarshalProto(b); err != nil {
				return nil, err
			}
			return r.MarshalProto()
		}},
	{"metrics", &jMetricsRequest,
		func(b []byte) ([]byte, error) {
			r := pmetricotlp.NewExportRequest()
			if err := r.UnmarshalJSON(b); err != nil {
				return nil, err
			}
			return r.MarshalProto()
		},
		func(b []byte) ([]byte, error) {
			r := pmetricotlp.NewExportRequest()
			if err := r.UnmarshalProto(b); err != nil {
				return nil, err
			}
			return r.MarshalProto()
		}},
	{"logs", &jLogsRequest,
		func(b []byte) ([]byte, error) {
			r := plogotlp.NewExportRequest()
			if err := r.UnmarshalJSON(b); err != nil {
				return nil, err
			}
			return r.MarshalProto()
		},
		func(b []byte) ([]byte, error) {
			r := plogotlp.NewExportRequest()
			if err := r.UnmarshalProto(b); err != nil {
				return nil, err
			}
			return r.MarshalProto()
		}},
}

// reference is pdata's result for js, canonical; an error if pdata
// refuses js or its own protobuf of it.
func (s jsonSignal) reference(js []byte) ([]byte, error) {
	pb, err := s.fromJSON(js)
	if err != nil {
		return nil, err
	}
	return s.canon(pb)
}

// sameRequest reports whether protobuf requests a and b of signal sig hold
// the same data (the transcoder writes fields in another order than pdata,
// and leaves out empty IDs and messages pdata writes).
func sameRequest(t testing.TB, sig enrich.Signal, a, b []byte) bool {
	t.Helper()
	if int(sig) >= len(jsonSignals) {
		return bytes.Equal(a, b)
	}
	ca, err1 := jsonSignals[sig].canon(a)
	cb, err2 := jsonSignals[sig].canon(b)
	if err1 != nil || err2 != nil {
		t.Fatalf("not a %s request: %v %v", jsonSignals[sig].name, err1, err2)
	}
	return bytes.Equal(ca, cb)
}

// --- random requests built with pdata ---

type gen struct{ r *rand.Rand }

func (g gen) str() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 ._-/\"\\\n\t<>&é€😀\x01"
	n := g.r.IntN(12)
	if g.r.IntN(20) == 0 {
		n = 130 + g.r.IntN(300) // a length of two varint bytes
	}
	var b strings.Builder
	for range n {
		rs := []rune(alphabet)
		b.WriteRune(rs[g.r.IntN(len(rs))])
	}
	return b.String()
}

func (g gen) u64() uint64 {
	switch g.r.IntN(4) {
	case 0:
		return 0
	case 1:
		return g.r.Uint64()
	case 2:
		return math.MaxUint64
	}
	return uint64(g.r.IntN(1000))
}

func (g gen) i64() int64 {
	switch g.r.IntN(4) {
	case 0:
		return 0
	case 1:
		return int64(g.r.Uint64())
	case 2:
		return math.MinInt64
	}
	return int64(g.r.IntN(2000) - 1000)
}

func (g gen) f64() float64 {
	switch g.r.IntN(8) {
	case 0:
		return 0
	case 1:
		return math.Inf(1)
	case 2:
		return math.Inf(-1)
	case 3:
		return math.NaN()
	case 4:
		return math.Copysign(0, -1)
	case 5:
		return math.SmallestNonzeroFloat64
	}
	return g.r.NormFloat64() * math.Pow(10, float64(g.r.IntN(40)-20))
}

func (g gen) u32() uint32 {
	if g.r.IntN(3) == 0 {
		return 0
	}
	return g.r.Uint32()
}

func (g gen) id16() (id pcommon.TraceID) {
	if g.r.IntN(5) > 0 {
		for i := range id {
			id[i] = byte(g.r.IntN(256))
		}
	}
	return id
}

func (g gen) id8() (id pcommon.SpanID) {
	if g.r.IntN(5) > 0 {
		for i := range id {
			id[i] = byte(g.r.IntN(256))
		}
	}
	return id
}

func (g gen) value(v pcommon.Value, depth int) {
	k := g.r.IntN(8)
	if depth > 3 && k >= 5 {
		k = 0
	}
	switch k {
	case 0:
		v.SetStr(g.str())
	case 1:
		v.SetBool(g.r.IntN(2) == 0)
	case 2:
		v.SetInt(g.i64())
	case 3:
		v.SetDouble(g.f64())
	case 4:
		b := v.SetEmptyBytes()
		for range g.r.IntN(20) {
			b.Append(byte(g.r.IntN(256)))
		}
	case 5:
		s := v.SetEmptySlice()
		for range g.r.IntN(4) {
			g.value(s.AppendEmpty(), depth+1)
		}
	case 6:
		g.attrs(v.SetEmptyMap(), depth+1)
	case 7:
		// empty value
	}
}

func (g gen) attrs(m pcommon.Map, depth int) {
	for i := range g.r.IntN(5) {
		g.value(m.PutEmpty(fmt.Sprintf("%s.%d", g.str(), i)), depth)
	}
}

func (g gen) resource(r pcommon.Resource) {
	g.attrs(r.Attributes(), 0)
	r.SetDroppedAttributesCount(g.u32())
}

func (g gen) scope(s pcommon.InstrumentationScope) {
	s.SetName(g.str())
	s.SetVersion(g.str())
	g.attrs(s.Attributes(), 0)
	s.SetDroppedAttributesCount(g.u32())
}

func (g gen) traces() ptraceotlp.ExportRequest {
	td := ptrace.NewTraces()
	for range g.r.IntN(3) {
		rs := td.ResourceSpans().AppendEmpty()
		g.resource(rs.Resource())
		rs.SetSchemaUrl(g.str())
		for range g.r.IntN(3) {
			ss := rs.ScopeSpans().AppendEmpty()
			g.scope(ss.Scope())
			ss.SetSchemaUrl(g.str())
			for range g.r.IntN(4) {
				sp := ss.Spans().AppendEmpty()
				sp.SetTraceID(g.id16())
				sp.SetSpanID(g.id8())
				sp.SetParentSpanID(g.id8())
				sp.TraceState().FromRaw(g.str())
				sp.SetFlags(g.u32())
				sp.SetName(g.str())
				sp.SetKind(ptrace.SpanKind(g.r.IntN(7)))
				sp.SetStartTimestamp(pcommon.Timestamp(g.u64()))
				sp.SetEndTimestamp(pcommon.Timestamp(g.u64()))
				g.attrs(sp.Attributes(), 0)
				sp.SetDroppedAttributesCount(g.u32())
				for range g.r.IntN(3) {
					ev := sp.Events().AppendEmpty()
					ev.SetName(g.str())
					ev.SetTimestamp(pcommon.Timestamp(g.u64()))
					g.attrs(ev.Attributes(), 0)
					ev.SetDroppedAttributesCount(g.u32())
				}
				sp.SetDroppedEventsCount(g.u32())
				for range g.r.IntN(3) {
					l := sp.Links().AppendEmpty()
					l.SetTraceID(g.id16())
					l.SetSpanID(g.id8())
					l.TraceState().FromRaw(g.str())
					g.attrs(l.Attributes(), 0)
					l.SetDroppedAttributesCount(g.u32())
					l.SetFlags(g.u32())
				}
				sp.SetDroppedLinksCount(g.u32())
				sp.Status().SetCode(ptrace.StatusCode(g.r.IntN(4)))
				sp.Status().SetMessage(g.str())
			}
		}
	}
	return ptraceotlp.NewExportRequestFromTraces(td)
}

func (g gen) exemplars(es pmetric.ExemplarSlice) {
	for range g.r.IntN(3) {
		e := es.AppendEmpty()
		g.attrs(e.FilteredAttributes(), 0)
		e.SetTimestamp(pcommon.Timestamp(g.u64()))
		switch g.r.IntN(3) {
		case 0:
			e.SetDoubleValue(g.f64())
		case 1:
			e.SetIntValue(g.i64())
		}
		e.SetTraceID(g.id16())
		e.SetSpanID(g.id8())
	}
}

func (g gen) numberPoints(ps pmetric.NumberDataPointSlice) {
	for range g.r.IntN(3) {
		p := ps.AppendEmpty()
		g.attrs(p.Attributes(), 0)
		p.SetStartTimestamp(pcommon.Timestamp(g.u64()))
		p.SetTimestamp(pcommon.Timestamp(g.u64()))
		switch g.r.IntN(3) {
		case 0:
			p.SetDoubleValue(g.f64())
		case 1:
			p.SetIntValue(g.i64())
		}
		g.exemplars(p.Exemplars())
		p.SetFlags(pmetric.DataPointFlags(g.u32()))
	}
}

func (g gen) metrics() pmetricotlp.ExportRequest {
	md := pmetric.NewMetrics()
	for range g.r.IntN(3) {
		rm := md.ResourceMetrics().AppendEmpty()
		g.resource(rm.Resource())
		rm.SetSchemaUrl(g.str())
		for range g.r.IntN(3) {
			sm := rm.ScopeMetrics().AppendEmpty()
			g.scope(sm.Scope())
			sm.SetSchemaUrl(g.str())
			for range g.r.IntN(6) {
				m := sm.Metrics().AppendEmpty()
				m.SetName(g.str())
				m.SetDescription(g.str())
				m.SetUnit(g.str())
				g.attrs(m.Metadata(), 0)
				temp := pmetric.AggregationTemporality(g.r.IntN(4))
				switch g.r.IntN(6) {
				case 0:
					g.numberPoints(m.SetEmptyGauge().DataPoints())
				case 1:
					s := m.SetEmptySum()
					s.SetAggregationTemporality(temp)
					s.SetIsMonotonic(g.r.IntN(2) == 0)
					g.numberPoints(s.DataPoints())
				case 2:
					h := m.SetEmptyHistogram()
					h.SetAggregationTemporality(temp)
					for range g.r.IntN(3) {
						p := h.DataPoints().AppendEmpty()
						g.attrs(p.Attributes(), 0)
						p.SetStartTimestamp(pcommon.Timestamp(g.u64()))
						p.SetTimestamp(pcommon.Timestamp(g.u64()))
						p.SetCount(g.u64())
						if g.r.IntN(2) == 0 {
							p.SetSum(g.f64())
						}
						if g.r.IntN(2) == 0 {
							p.SetMin(g.f64())
						}
						if g.r.IntN(2) == 0 {
							p.SetMax(g.f64())
						}
						for range g.r.IntN(5) {
							p.BucketCounts().Append(g.u64())
							p.ExplicitBounds().Append(g.f64())
						}
						g.exemplars(p.Exemplars())
						p.SetFlags(pmetric.DataPointFlags(g.u32()))
					}
				case 3:
					h := m.SetEmptyExponentialHistogram()
					h.SetAggregationTemporality(temp)
					for range g.r.IntN(3) {
						p := h.DataPoints().AppendEmpty()
						g.attrs(p.Attributes(), 0)
						p.SetStartTimestamp(pcommon.Timestamp(g.u64()))
						p.SetTimestamp(pcommon.Timestamp(g.u64()))
						p.SetCount(g.u64())
						if g.r.IntN(2) == 0 {
							p.SetSum(g.f64())
						}
						if g.r.IntN(2) == 0 {
							p.SetMin(g.f64())
						}
						if g.r.IntN(2) == 0 {
							p.SetMax(g.f64())
						}
						p.SetScale(int32(g.i64()))
						p.SetZeroCount(g.u64())
						p.SetZeroThreshold(g.f64())
						for _, b := range []pmetric.ExponentialHistogramDataPointBuckets{p.Positive(), p.Negative()} {
							b.SetOffset(int32(g.i64()))
							for range g.r.IntN(5) {
								b.BucketCounts().Append(g.u64())
							}
						}
						g.exemplars(p.Exemplars())
						p.SetFlags(pmetric.DataPointFlags(g.u32()))
					}
				case 4:
					s := m.SetEmptySummary()
					for range g.r.IntN(3) {
						p := s.DataPoints().AppendEmpty()
						g.attrs(p.Attributes(), 0)
						p.SetStartTimestamp(pcommon.Timestamp(g.u64()))
						p.SetTimestamp(pcommon.Timestamp(g.u64()))
						p.SetCount(g.u64())
						p.SetSum(g.f64())
						for range g.r.IntN(3) {
							q := p.QuantileValues().AppendEmpty()
							q.SetQuantile(g.f64())
							q.SetValue(g.f64())
						}
						p.SetFlags(pmetric.DataPointFlags(g.u32()))
					}
				case 5:
					// no data
				}
			}
		}
	}
	return pmetricotlp.NewExportRequestFromMetrics(md)
}

func (g gen) logs() plogotlp.ExportRequest {
	ld := plog.NewLogs()
	for range g.r.IntN(3) {
		rl := ld.ResourceLogs().AppendEmpty()
		g.resource(rl.Resource())
		rl.SetSchemaUrl(g.str())
		for range g.r.IntN(3) {
			sl := rl.ScopeLogs().AppendEmpty()
			g.scope(sl.Scope())
			sl.SetSchemaUrl(g.str())
			for range g.r.IntN(4) {
				lr := sl.LogRecords().AppendEmpty()
				lr.SetTimestamp(pcommon.Timestamp(g.u64()))
				lr.SetObservedTimestamp(pcommon.Timestamp(g.u64()))
				lr.SetSeverityNumber(plog.SeverityNumber(g.r.IntN(26)))
				lr.SetSeverityText(g.str())
				g.value(lr.Body(), 0)
				g.attrs(lr.Attributes(), 0)
				lr.SetDroppedAttributesCount(g.u32())
				lr.SetFlags(plog.LogRecordFlags(g.u32()))
				lr.SetTraceID(g.id16())
				lr.SetSpanID(g.id8())
				lr.SetEventName(g.str())
			}
		}
	}
	return plogotlp.NewExportRequestFromLogs(ld)
}

// randomRequest returns a random request of signal i as pdata's JSON.
func randomRequest(t testing.TB, g gen, i int) []byte {
	var js []byte
	var err error
	switch i {
	case 0:
		js, err = g.traces().MarshalJSON()
	case 1:
		js, err = g.metrics().MarshalJSON()
	default:
		js, err = g.logs().MarshalJSON()
	}
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// checkAgainstPdata transcodes js and compares with pdata's result.
func checkAgainstPdata(t *testing.T, s jsonSignal, js []byte) {
	t.Helper()
	want, err := s.reference(js)
	if err != nil {
		t.Fatalf("pdata refuses %s: %v", js, err)
	}
	out, err := appendOTLPJSON(nil, s.root, js)
	if err != nil {
		t.Fatalf("transcoding %s: %v", js, err)
	}
	if n := otlpJSONBound(len(js), bytes.Count(js, []byte{','})); len(out) > n {
		t.Fatalf("%d bytes out of %d, over the bound %d", len(out), len(js), n)
	}
	got, err := s.canon(out)
	if err != nil {
		t.Fatalf("pdata cannot decode the output of %s: %v", js, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: differs from pdata\n got %x\nwant %x", js, got, want)
	}
}

// TestOTLPJSONAgainstPdata: random requests of every signal (all AnyValue
// kinds, every metric type, events, links, exemplars, flags, dropped
// counts, schema URLs, empty and nested values), as pdata writes them in
// JSON, transcode to the same request as pdata's own JSON → protobuf.
func TestOTLPJSONAgainstPdata(t *testing.T) {
	g := gen{rand.New(rand.NewPCG(1, 2))}
	for i, s := range jsonSignals {
		t.Run(s.name, func(t *testing.T) {
			for range 400 {
				checkAgainstPdata(t, s, randomRequest(t, g, i))
			}
		})
	}
}

// TestOTLPJSONForms: what OTLP/JSON allows beyond what pdata writes —
// .proto field names, numbers for 64-bit integers, enum names, escapes,
// null, unknown fields, duplicates and oneof replacement — decode as in
// pdata.
func TestOTLPJSONForms(t *testing.T) {
	traces, metrics, logs := jsonSignals[0], jsonSignals[1], jsonSignals[2]
	for _, c := range []struct {
		s  jsonSignal
		js string
	}{
		{traces, `{"resource_spans":[{"scope_spans":[{"spans":[{"trace_id":"0102030405060708090a0b0c0d0e0f10","span_id":"0102030405060708","parent_span_id":"A1A2A3A4A5A6A7A8","start_time_unix_nano":1700000000000000000,"end_time_unix_nano":"1700000000000001000","kind":"SPAN_KIND_SERVER","status":{"code":"STATUS_CODE_ERROR","message":"m"},"flags":257,"dropped_attributes_count":"3"}]}]}]}`},
		{traces, `{"resourceSpans":[{"resource":{"attributes":[{"key":"a","value":{"intValue":5}},{"key":"b","value":{"int_value":"-9223372036854775808"}},{"key":"c","value":{"double_value":"NaN"}},{"key":"d","value":{"doubleValue":"-Infinity"}},{"key":"e","value":{"doubleValue":1e308}},{"key":"f","value":{"bytes_value":"AAEC/w=="}},{"key":"g","value":{"kvlist_value":{"values":[{"key":"x","value":{"array_value":{"values":[{"boolValue":true},{},{"stringValue":"\u00e9\ud83d\ude00\ud800x\\\"\/\b\f\n\r\t"}]}}}]}}}]}}]}`},
		{traces, `{"resourceSpans":[{"unknown":{"a":[1,2.5e-3,{"b":null}],"c":"\u0041"},"scopeSpans":[{"spans":[{"name":"a"},{"name":"b","kind":2}],"spans":[{"name":"c"}]}],"schemaUrl":null}],"x":true}`},
		{traces, `{"resourceSpans":[{"resource":{"attributes":[{"key":"k","value":{"stringValue":"a","intValue":"7"}},{"key":"l","value":{"arrayValue":{"values":[{"intValue":1}]},"kvlistValue":{}}},{"key":"m","value":{"intValue":"1","stringValue":null}},{"key":"n","value":{"arrayValue":null}}]}}]}`},
		{traces, `{"resourceSpans":[{"resource":null,"scopeSpans":[null,{"scope":{"name":null},"spans":[null,{"status":null,"events":[{"name":"e","timeUnixNano":"5"}],"links":[{"traceId":"","spanId":"","flags":1}]}]}]}]}`},
		{traces, `{"resourceSpans":[{"resource":{"attributes":[],"entityRefs":[{"schemaUrl":"s","type":"t","idKeys":["a",null,""],"descriptionKeys":["d"]}]}}]}`},
		{traces, `{"resourceSpans":[{"deprecatedScopeSpans":[{"spans":[{"name":"old"}]}]}]}`},
		{traces, " \n{ \"resourceSpans\" : [ { } ] } \t"},
		{traces, `null`},
		{traces, `{}`},
		{traces, `{"resourceSpans":[{"resource":{"attributes":[{"key":"a","value":{"stringValueStrindex":-3}},{"keyStrindex":-1}]}}]}`},
		{traces, `{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":-1,"status":{"code":99},"name":"` + strings.Repeat("x", 300) + `"}]}]}]}`},
		{traces, `{"resourceSpans":[{"scopeSpans":[{"spans":[{"trace\u0049d":"0102030405060708090a0b0c0d0e0f10"}]}]}]}`},
		{metrics, `{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"a","gauge":{"dataPoints":[{"asInt":"5"}]},"sum":{"dataPoints":[{"asDouble":1.5,"as_int":-2}],"aggregationTemporality":"AGGREGATION_TEMPORALITY_CUMULATIVE","isMonotonic":true}},{"histogram":{"dataPoints":[{"sum":0,"min":0,"max":0,"count":0,"bucketCounts":[0,1,"2",18446744073709551615],"explicitBounds":[0,1.5,"-Infinity"]},{"bucketCounts":[],"explicitBounds":null}],"aggregation_temporality":1}},{"exponential_histogram":{"dataPoints":[{"scale":-3,"zero_count":4,"positive":{"offset":-7,"bucketCounts":[1,"2",0]},"negative":{},"zeroThreshold":0.5,"exemplars":[{"asInt":3,"filteredAttributes":[{"key":"a"}],"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708"}]}]}},{"summary":{"dataPoints":[{"quantileValues":[{"quantile":0.5,"value":1}],"sum":3}]}},{"gauge":null},{"sum":{"dataPoints":[{"asInt":1}]},"sum":{"dataPoints":[{"asInt":2}]}}]}]}]}`},
		{logs, `{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityNumber":"SEVERITY_NUMBER_TRACE ","body":{"kvlistValue":{"values":[{"key":"a","value":{"boolValue":false}}]}},"body":{"stringValue":"b"},"flags":1,"traceId":"0102030405060708090a0b0c0d0e0f10","eventName":"ev","observed_time_unix_nano":3},{"severity_number":24,"severityText":"x"}]}]}]}`},
	} {
		checkAgainstPdata(t, c.s, []byte(c.js))
	}
}

// TestOTLPJSONLenient: what is accepted on purpose where pdata refuses it.
func TestOTLPJSONLenient(t *testing.T) {
	for _, c := range []struct{ js, same string }{
		{`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":null,"spanId":null,"kind":null,"flags":null,"startTimeUnixNano":null,"name":"a"}]}]}]}`,
			`{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"a"}]}]}]}`},
		{`{"resourceSpans":[{"resource":{"attributes":[{"key":"a","value":{"intValue":null,"boolValue":null,"doubleValue":null,"bytesValue":null}}]}}]}`,
			`{"resourceSpans":[{"resource":{"attributes":[{"key":"a","value":{}}]}}]}`},
		{`{"resourceSpans":[{"resource":{"attributes":[{"key":"a","value":{"intValue":"1","boolValue":null}}]}}]}`,
			`{"resourceSpans":[{"resource":{"attributes":[{"key":"a","value":{"intValue":"1"}}]}}]}`},
		{`{"resourceSpans":[],"x":1e400}`, `{}`},
	} {
		s := jsonSignals[0]
		if _, err := s.reference([]byte(c.js)); err == nil {
			t.Errorf("pdata accepts %s", c.js)
		}
		got, err := appendOTLPJSON(nil, s.root, []byte(c.js))
		if err != nil {
			t.Fatalf("%s: %v", c.js, err)
		}
		want, _ := appendOTLPJSON(nil, s.root, []byte(c.same))
		if !bytes.Equal(got, want) {
			t.Errorf("%s: %x, want as %s: %x", c.js, got, c.same, want)
		}
		d := otlpJSONDecoder{in: []byte(c.js), pdataCompat: true}
		if _, err := d.run(s.root); err == nil {
			t.Errorf("%s: accepted in pdata's way", c.js)
		}
	}
	logs := jsonSignals[2]
	a, err1 := appendOTLPJSON(nil, logs.root, []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityNumber":"SEVERITY_NUMBER_TRACE"}]}]}]}`))
	b, err2 := appendOTLPJSON(nil, logs.root, []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityNumber":1}]}]}]}`))
	if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
		t.Errorf("SEVERITY_NUMBER_TRACE: %v %v %x %x", err1, err2, a, b)
	}
}

// TestOTLPJSONMalformed: bad input gets a clear error naming what and
// where, and its class.
func TestOTLPJSONMalformed(t *testing.T) {
	for _, c := range []struct {
		js    string
		class error
		msg   string
	}{
		{``, errJSONSyntax, "end of input"},
		{`{"resourceSpans": [`, errJSONSyntax, "end of input"},
		{`{"resourceSpans":[]} x`, errJSONSyntax, "bytes after the request"},
		{`[]`, errJSONValue, "want an object"},
		{`{"resourceSpans":{}}`, errJSONValue, `"resourceSpans" takes a list`},
		{`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102"}]}]}]}`, errJSONValue, "4 hex digits, want 32"},
		{`{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"zz02030405060708"}]}]}]}`, errJSONValue, "invalid byte"},
		{`{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SERVER"}]}]}]}`, errJSONValue, `unknown name "SERVER"`},
		{`{"resourceSpans":[{"scopeSpans":[{"spans":[{"flags":4294967296}]}]}]}`, errJSONRange, "4294967296"},
		{`{"resourceSpans":[{"scopeSpans":[{"spans":[{"flags":-1}]}]}]}`, errJSONValue, "unsigned"},
		{`{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":1.5}]}]}]}`, errJSONValue, "integer"},
		{`{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":"x"}]}]}]}`, errJSONValue, "invalid syntax"},
		{`{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":5}]}]}]}`, errJSONValue, `"name" takes a string`},
		{`{"resourceSpans":[{"resource":{"attributes":[{"key":"a","value":{"bytesValue":"QQ"}}]}}]}`, errJSONValue, "base64"},
		{`{"resourceSpans":[{"resource":{"attributes":[{"key":"a","value":{"boolValue":"true"}}]}}]}`, errJSONValue, "true or false"},
		{`{"resourceSpans":[{"x":"a` + "\x01" + `"}]}`, errJSONSyntax, "control character"},
		{`{"resourceSpans":[{"x":"\q"}]}`, errJSONSyntax, "invalid escape"},
		{`{"resourceSpans":[{"x":01}]}`, errJSONSyntax, "want ','"},
		{`{"resourceSpans":[{"x":[1,]}]}`, errJSONSyntax, "unexpected character"},
		{`{"resourceSpans":[{"x":[1.]}]}`, errJSONSyntax, "invalid number"},
		{`{"resourceSpans":[{"x":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}]}`, errJSONSyntax, "nested deeper"},
		{`{"resourceSpans":[{"resource":{"attributes":[{"key":"a","value":` + strings.Repeat(`{"arrayValue":{"values":[`, 50) + `{}` + strings.Repeat(`]}}`, 50) + `}]}}]}`, errJSONDepth, "nested"},
	} {
		_, err := appendOTLPJSON(nil, &jTracesRequest, []byte(c.js))
		if err == nil || !errors.Is(err, c.class) || !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), "at byte") {
			t.Errorf("%.80s: %v, want %v with %q", c.js, err, c.class, c.msg)
		}
	}
}

// TestOTLPJSONDepthAsPdata: attribute values are refused exactly as deep
// as pdata's protobuf decoder refuses them.
func TestOTLPJSONDepthAsPdata(t *testing.T) {
	s := jsonSignals[0]
	for n := 45; n <= 52; n++ {
		for _, leaf := range []string{`{}`, `{"kvlistValue":{"values":[{"key":"k"}]}}`, `{"arrayValue":null}`} {
			js := []byte(`{"resourceSpans":[{"resource":{"attributes":[{"key":"a","value":` + strings.Repeat(`{"arrayValue":{"values":[`, n) + leaf + strings.Repeat(`]}}`, n) + `}]}}]}`)
			_, refErr := s.reference(js)
			_, err := appendOTLPJSON(nil, s.root, js)
			if (refErr == nil) != (err == nil) {
				t.Errorf("%d levels, leaf %s: pdata %v, here %v", n, leaf, refErr, err)
			}
		}
	}
}

// TestOTLPJSONBound: the worst cases for the output's size stay within
// otlpJSONBound, and protobuf can be larger than its JSON.
func TestOTLPJSONBound(t *testing.T) {
	for _, js := range []string{
		`{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"histogram":{"dataPoints":[{"bucketCounts":[0` + strings.Repeat(`,0`, 1000) + `],"explicitBounds":[0` + strings.Repeat(`,0`, 1000) + `]}]}}]}]}]}`,
		`{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"histogram":{"dataPoints":[` + strings.Repeat(`{"sum":0,"sum":0,"min":0,"max":0},`, 300) + `{"sum":0}]}}]}]}]}`,
		`{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"histogram":{"dataPoints":[{"bucketCounts":[0]}]}}]}]}]}`,
		`{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"histogram":{"dataPoints":[{"sum":0}]}}]}]}]}`,
	} {
		out, err := appendOTLPJSON(nil, &jMetricsRequest, []byte(js))
		if err != nil {
			t.Fatal(err)
		}
		bound := otlpJSONBound(len(js), strings.Count(js, ","))
		t.Logf("%d JSON bytes → %d protobuf bytes (bound %d)", len(js), len(out), bound)
		if len(out) > bound {
			t.Errorf("%.60s: %d bytes, over the bound %d", js, len(out), bound)
		}
	}
	js := []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":-1,"kind":-1,"status":{"code":-1}}` + strings.Repeat(`,{"kind":-1}`, 100) + `]}]}]}`)
	out, err := appendOTLPJSON(nil, &jTracesRequest, js)
	if err != nil || len(out) > otlpJSONBound(len(js), bytes.Count(js, []byte{','})) {
		t.Errorf("negative enums: %d bytes of %d, %v", len(out), len(js), err)
	}
}

// TestOTLPJSONNoAllocs: transcoding into a buffer large enough allocates
// nothing.
func TestOTLPJSONNoAllocs(t *testing.T) {
	js := benchJSON(t)
	buf := make([]byte, 0, otlpJSONBound(len(js), bytes.Count(js, []byte{','})))
	if n := testing.AllocsPerRun(20, func() {
		if _, err := appendOTLPJSON(buf, &jTracesRequest, js); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations per request", n)
	}
}

var emptyKey = regexp.MustCompile(`""\s*:`)

// jsonDepth is the deepest nesting of objects and lists in js (valid
// JSON).
func jsonDepth(js []byte) int {
	depth, most := 0, 0
	inStr := false
	for i := 0; i < len(js); i++ {
		switch c := js[i]; {
		case inStr && c == '\\':
			i++
		case c == '"':
			inStr = !inStr
		case !inStr && (c == '{' || c == '['):
			depth++
			most = max(most, depth)
		case !inStr && (c == '}' || c == ']'):
			depth--
		}
	}
	return most
}

// FuzzOTLPJSON: whatever the input, the transcoder does not panic, stays
// within otlpJSONBound, and agrees with pdata: on what pdata accepts, the
// same request (unless the input is not JSON, holds an integer beyond its
// field's range or attribute values nested 100 deep — refused here); on
// what pdata refuses, an error (unless refused only for pdata's own
// reasons: see pdataCompat). Inputs with an empty field name are left
// out: pdata ends an object there.
func FuzzOTLPJSON(f *testing.F) {
	g := gen{rand.New(rand.NewPCG(3, 4))}
	for i := range jsonSignals {
		for range 3 {
			f.Add(uint8(i), randomRequest(f, g, i))
		}
	}
	f.Add(uint8(0), []byte(`{"resourceSpans":[{"resource":{"attributes":[{"key":"a","value":{"intValue":null}}]},"scopeSpans":[{"spans":[{"kind":"SPAN_KIND_CLIENT","flags":1,"traceId":null}]}]}]}`))
	f.Add(uint8(1), []byte(`{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"histogram":{"dataPoints":[{"bucketCounts":[0,1],"sum":0}]},"gauge":null}]}]}]}`))
	f.Add(uint8(2), []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityNumber":"SEVERITY_NUMBER_TRACE","body":{"stringValue":"\ud800\ud800\udc00"}}]}]}]}`))
	f.Fuzz(func(t *testing.T, sig uint8, js []byte) {
		s := jsonSignals[int(sig)%len(jsonSignals)]
		want, refErr := s.reference(js)
		out, err := appendOTLPJSON(nil, s.root, js)
		if err == nil {
			if n := otlpJSONBound(len(js), bytes.Count(js, []byte{','})); len(out) > n {
				t.Fatalf("%d bytes out of %d, over the bound %d", len(out), len(js), n)
			}
		}
		if emptyKey.Match(js) {
			return // pdata ends an object at an empty key
		}
		if refErr != nil {
			if err == nil {
				d := otlpJSONDecoder{in: js, pdataCompat: true}
				if _, err := d.run(s.root); err == nil {
					t.Fatalf("pdata refuses (%v), accepted here", refErr)
				}
			}
			return
		}
		if err != nil {
			switch {
			case errors.Is(err, errJSONSyntax) && !json.Valid(js):
			case errors.Is(err, errJSONRange):
			case errors.Is(err, errJSONDepth) && jsonDepth(js) > 2*anyChainLimit:
			default:
				t.Fatalf("pdata accepts, refused here: %v", err)
			}
			return
		}
		got, err := s.canon(out)
		if err != nil {
			t.Fatalf("pdata cannot decode the output: %v", err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("differs from pdata\n got %x\nwant %x", got, want)
		}
	})
}

// benchJSON is the bench's request shape: 512 spans of 8 attributes.
func benchJSON(t testing.TB) []byte {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "loadgen")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("loadgen")
	for i := range 512 {
		sp := ss.Spans().AppendEmpty()
		sp.SetName("GET /api/v1/items")
		sp.SetTraceID(pcommon.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, byte(i >> 8), byte(i)})
		sp.SetSpanID(pcommon.SpanID{1, 2, 3, 4, 5, 6, byte(i >> 8), byte(i)})
		sp.SetParentSpanID(pcommon.SpanID{8, 7, 6, 5, 4, 3, byte(i >> 8), byte(i)})
		sp.SetKind(ptrace.SpanKindServer)
		sp.SetStartTimestamp(pcommon.Timestamp(1700000000000000000 + i))
		sp.SetEndTimestamp(pcommon.Timestamp(1700000000000100000 + i))
		a := sp.Attributes()
		a.PutStr("http.method", "GET")
		a.PutStr("http.route", "/api/v1/items")
		a.PutInt("http.status_code", 200)
		a.PutStr("net.peer.name", "checkout.default.svc.cluster.local")
		a.PutInt("net.peer.port", 8080)
		a.PutStr("user_agent.original", "loadgen/1.0")
		a.PutBool("error", false)
		a.PutDouble("sample.rate", 0.25)
		sp.Status().SetCode(ptrace.StatusCodeOk)
	}
	js, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// BenchmarkOTLPJSON: the transcoder against pdata's JSON → protobuf, on
// the bench's shape.
func BenchmarkOTLPJSON(b *testing.B) {
	js := benchJSON(b)
	transcode := func(b *testing.B) {
		buf := make([]byte, 0, otlpJSONBound(len(js), bytes.Count(js, []byte{','})))
		b.SetBytes(int64(len(js)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := appendOTLPJSON(buf, &jTracesRequest, js); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("transcode", transcode)
	// The same with one byte for every length (nested records larger than
	// 127 bytes move once they are written).
	b.Run("transcode-reserve1", func(b *testing.B) {
		for m := range reserveHints {
			m.reserve = 1
		}
		defer func() {
			for m, r := range reserveHints {
				m.reserve = r
			}
		}()
		transcode(b)
	})
	b.Run("pdata", func(b *testing.B) {
		b.SetBytes(int64(len(js)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := jsonSignals[0].fromJSON(js); err != nil {
				b.Fatal(err)
			}
		}
	})
}
