package loadgen

import (
	"encoding/binary"
	"fmt"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/podstamp/podstamp/bench/internal/otlpwire"
)

// SourceAttr is the resource attribute carrying the connection's source address.
const SourceAttr = "loadgen.source"

// PayloadSpec says what one export request contains.
type PayloadSpec struct {
	Signal        string            // traces, metrics or logs
	Items         int               // spans, data points or log records per request
	Attrs         int               // attributes per item
	Source        string            // value of loadgen.source ("" leaves it out)
	ResourceAttrs map[string]string // extra resource attributes
	JSON          bool              // OTLP/JSON instead of protobuf
}

// BuildPayload encodes one export request.
func BuildPayload(spec PayloadSpec) ([]byte, error) {
	now := time.Now()
	switch spec.Signal {
	case otlpwire.Traces:
		td := ptrace.NewTraces()
		rs := td.ResourceSpans().AppendEmpty()
		fillResource(rs.Resource().Attributes(), spec)
		ss := rs.ScopeSpans().AppendEmpty()
		ss.Scope().SetName("podstamp/loadgen")
		spans := ss.Spans()
		spans.EnsureCapacity(spec.Items)
		for i := 0; i < spec.Items; i++ {
			sp := spans.AppendEmpty()
			sp.SetTraceID(traceID(i / 16))
			sp.SetSpanID(spanID(i))
			if i%16 != 0 {
				sp.SetParentSpanID(spanID(i - i%16))
			}
			sp.SetName(fmt.Sprintf("operation-%d", i%32))
			sp.SetKind(ptrace.SpanKindServer)
			sp.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(-time.Duration(i+1) * time.Millisecond)))
			sp.SetEndTimestamp(pcommon.NewTimestampFromTime(now))
			fillItemAttrs(sp.Attributes(), spec.Attrs, i)
			sp.Status().SetCode(ptrace.StatusCodeOk)
		}
		if spec.JSON {
			return (&ptrace.JSONMarshaler{}).MarshalTraces(td)
		}
		return (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	case otlpwire.Metrics:
		md := pmetric.NewMetrics()
		rm := md.ResourceMetrics().AppendEmpty()
		fillResource(rm.Resource().Attributes(), spec)
		sm := rm.ScopeMetrics().AppendEmpty()
		sm.Scope().SetName("podstamp/loadgen")
		ms := sm.Metrics()
		ms.EnsureCapacity(spec.Items)
		for i := 0; i < spec.Items; i++ {
			m := ms.AppendEmpty()
			m.SetName(fmt.Sprintf("loadgen.metric.%d", i))
			m.SetUnit("1")
			dp := m.SetEmptySum().DataPoints().AppendEmpty()
			m.Sum().SetIsMonotonic(true)
			m.Sum().SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
			dp.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(-time.Minute)))
			dp.SetTimestamp(pcommon.NewTimestampFromTime(now))
			dp.SetIntValue(int64(i))
			fillItemAttrs(dp.Attributes(), spec.Attrs, i)
		}
		if spec.JSON {
			return (&pmetric.JSONMarshaler{}).MarshalMetrics(md)
		}
		return (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	case otlpwire.Logs:
		ld := plog.NewLogs()
		rl := ld.ResourceLogs().AppendEmpty()
		fillResource(rl.Resource().Attributes(), spec)
		sl := rl.ScopeLogs().AppendEmpty()
		sl.Scope().SetName("podstamp/loadgen")
		lrs := sl.LogRecords()
		lrs.EnsureCapacity(spec.Items)
		for i := 0; i < spec.Items; i++ {
			lr := lrs.AppendEmpty()
			lr.SetTimestamp(pcommon.NewTimestampFromTime(now))
			lr.SetObservedTimestamp(pcommon.NewTimestampFromTime(now))
			lr.SetSeverityNumber(plog.SeverityNumberInfo)
			lr.SetSeverityText("INFO")
			lr.Body().SetStr(fmt.Sprintf("request %d handled", i))
			fillItemAttrs(lr.Attributes(), spec.Attrs, i)
		}
		if spec.JSON {
			return (&plog.JSONMarshaler{}).MarshalLogs(ld)
		}
		return (&plog.ProtoMarshaler{}).MarshalLogs(ld)
	}
	return nil, fmt.Errorf("loadgen: unsupported signal %q (traces, metrics, logs)", spec.Signal)
}

func fillResource(m pcommon.Map, spec PayloadSpec) {
	m.PutStr("service.name", "loadgen")
	if spec.Source != "" {
		m.PutStr(SourceAttr, spec.Source)
	}
	for k, v := range spec.ResourceAttrs {
		m.PutStr(k, v)
	}
}

// fillItemAttrs adds n attributes of realistic shape: mostly strings, some
// integers and a boolean.
func fillItemAttrs(m pcommon.Map, n, i int) {
	m.EnsureCapacity(n)
	for j := 0; j < n; j++ {
		key := itemAttrKeys[j%len(itemAttrKeys)]
		if j >= len(itemAttrKeys) {
			key = fmt.Sprintf("%s.%d", key, j/len(itemAttrKeys))
		}
		switch j % 4 {
		case 1:
			m.PutInt(key, int64(i*7+j))
		case 3:
			m.PutBool(key, (i+j)%2 == 0)
		default:
			m.PutStr(key, fmt.Sprintf("value-%d-%d", j, i%64))
		}
	}
}

var itemAttrKeys = []string{
	"http.request.method", "http.response.status_code", "url.path", "server.address",
	"user_agent.original", "network.peer.port", "db.system.name", "messaging.system",
}

func traceID(i int) pcommon.TraceID {
	var id [16]byte
	binary.BigEndian.PutUint64(id[0:8], 0x5eed000000000000|uint64(time.Now().UnixNano()&0xffffffff))
	binary.BigEndian.PutUint64(id[8:16], uint64(i)+1)
	return id
}

func spanID(i int) pcommon.SpanID {
	var id [8]byte
	binary.BigEndian.PutUint64(id[:], uint64(i)+1)
	return id
}
