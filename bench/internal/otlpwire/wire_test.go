package otlpwire_test

import (
	"errors"
	"math/rand/v2"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/goleak"

	"github.com/podstamp/podstamp/bench/internal/otlpwire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestScanTracesAttributes(t *testing.T) {
	td := ptrace.NewTraces()
	for r := 0; r < 2; r++ {
		rs := td.ResourceSpans().AppendEmpty()
		a := rs.Resource().Attributes()
		a.PutStr("k8s.pod.name", "p")
		a.PutInt("n", int64(r))
		a.PutBool("b", true)
		a.PutDouble("d", 1.5)
		a.PutEmptySlice("s").AppendEmpty().SetStr("x")
		a.PutEmptyMap("m").PutStr("k", "v")
		a.PutEmptyBytes("raw").FromRaw([]byte{0xab})
		for s := 0; s < 2; s++ {
			ss := rs.ScopeSpans().AppendEmpty()
			for i := 0; i < 3+r; i++ {
				ss.Spans().AppendEmpty().SetName("x")
			}
		}
	}
	body, _ := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	var got []otlpwire.Resource
	if err := otlpwire.Scan("traces", body, func(r otlpwire.Resource) { got = append(got, r) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Items != 6 || got[1].Items != 8 {
		t.Fatalf("resources: %+v", got)
	}
	want := []otlpwire.Attr{
		{Key: "k8s.pod.name", Type: "Str", Value: "p"}, {Key: "n", Type: "Int", Value: "1"},
		{Key: "b", Type: "Bool", Value: "true"}, {Key: "d", Type: "Double", Value: "1.5"},
		{Key: "s", Type: "Slice", Value: "[Str(x)]"}, {Key: "m", Type: "Map", Value: "{k:Str(v)}"},
		{Key: "raw", Type: "Bytes", Value: "ab"},
	}
	for i, w := range want {
		if got[1].Attrs[i] != w {
			t.Fatalf("attr %d: %+v want %+v", i, got[1].Attrs[i], w)
		}
	}
	if v, ok := got[0].Get("k8s.pod.name"); !ok || v != "p" {
		t.Fatalf("Get: %q %v", v, ok)
	}
}

func TestScanMetricsCountsDataPoints(t *testing.T) {
	md := pmetric.NewMetrics()
	sm := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty()
	g := sm.Metrics().AppendEmpty().SetEmptyGauge()
	g.DataPoints().AppendEmpty()
	g.DataPoints().AppendEmpty()
	sm.Metrics().AppendEmpty().SetEmptySum().DataPoints().AppendEmpty()
	sm.Metrics().AppendEmpty().SetEmptyHistogram().DataPoints().AppendEmpty().SetTimestamp(pcommon.Timestamp(1))
	sm.Metrics().AppendEmpty().SetEmptyExponentialHistogram().DataPoints().AppendEmpty().SetCount(1)
	sm.Metrics().AppendEmpty().SetEmptySummary().DataPoints().AppendEmpty().SetCount(1)
	body, _ := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	n := 0
	if err := otlpwire.Scan("metrics", body, func(r otlpwire.Resource) { n += r.Items }); err != nil {
		t.Fatal(err)
	}
	if n != 6 {
		t.Fatalf("data points: %d", n)
	}
}

func TestScanNeverPanicsAndReportsMalformed(t *testing.T) {
	if err := otlpwire.Scan("traces", []byte{0x0a, 0x05, 0x0a}, func(otlpwire.Resource) {}); !errors.Is(err, otlpwire.ErrMalformed) {
		t.Fatalf("truncated: %v", err)
	}
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("a", "b")
	rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty().SetName("s")
	good, _ := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		b := append([]byte(nil), good...)
		for j := 0; j < 1+r.IntN(4); j++ {
			b[r.IntN(len(b))] = byte(r.Uint32())
		}
		_ = otlpwire.Scan("metrics", b, func(otlpwire.Resource) {})
		_ = otlpwire.Scan("traces", b[:r.IntN(len(b))], func(otlpwire.Resource) {})
	}
}
