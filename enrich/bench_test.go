package enrich_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/podstamp/podstamp/enrich"
	"github.com/podstamp/podstamp/enrich/enrichtest"
)

// benchTraces builds a realistic traces request: one resource with
// resAttrs, one scope, n spans with attrs attributes each.
func benchTraces(t testing.TB, n, attrs int, resAttrs map[string]any) []byte {
	t.Helper()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	if err := rs.Resource().Attributes().FromRaw(resAttrs); err != nil {
		t.Fatal(err)
	}
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("io.opentelemetry.http")
	ss.Scope().SetVersion("1.40.0")
	for i := range n {
		sp := ss.Spans().AppendEmpty()
		sp.SetTraceID(pcommon.TraceID{byte(i), byte(i >> 8), 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
		sp.SetSpanID(pcommon.SpanID{byte(i), byte(i >> 8), 3, 4, 5, 6, 7, 8})
		sp.SetParentSpanID(pcommon.SpanID{9, 9, 9, 9, byte(i), 1, 1, 1})
		sp.SetName(fmt.Sprintf("GET /api/v1/cart/%d", i%17))
		sp.SetKind(ptrace.SpanKindServer)
		sp.SetStartTimestamp(pcommon.Timestamp(1764064800000000000 + uint64(i)*1000))
		sp.SetEndTimestamp(pcommon.Timestamp(1764064800000500000 + uint64(i)*1000))
		sp.Status().SetCode(ptrace.StatusCodeOk)
		a := sp.Attributes()
		for j := range attrs {
			switch j % 4 {
			case 0:
				a.PutStr(fmt.Sprintf("http.attr.%d", j), "value-of-some-length-"+fmt.Sprint(i))
			case 1:
				a.PutInt(fmt.Sprintf("http.count.%d", j), int64(i*j))
			case 2:
				a.PutBool(fmt.Sprintf("http.flag.%d", j), i%2 == 0)
			default:
				a.PutDouble(fmt.Sprintf("http.ratio.%d", j), float64(i)/3)
			}
		}
	}
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// processCPU is the CPU time the process has used, in nanoseconds.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// benchSizes are the request shapes of the benchmark: small, typical, large.
func benchSizes(b *testing.B) []struct {
	name string
	body []byte
} {
	res := map[string]any{"service.name": "cart", "telemetry.sdk.language": "go", "host.name": "cart-7d9f8-abcde"}
	large := 4 << 20
	n := 16384
	body := benchTraces(b, n, 8, res)
	n = n * large / len(body)
	return []struct {
		name string
		body []byte
	}{
		{"1span", benchTraces(b, 1, 8, res)},
		{"512spans", benchTraces(b, 512, 8, res)},
		{"4MiB", benchTraces(b, n, 8, res)},
	}
}

func BenchmarkStamp(b *testing.B) {
	r := enrichtest.New(cartPod())
	ctx := context.Background()
	sizes := benchSizes(b)
	for _, size := range sizes {
		for _, impl := range []string{"wire", "pdata"} {
			b.Run(size.name+"/"+impl, func(b *testing.B) {
				s := bothStampers(b, enrich.DefaultConfig(), r)[impl]
				dst := make([]byte, 0, len(size.body)+4096)
				out, _, err := s.Enrich(ctx, enrich.Traces, peerCart, size.body, dst)
				if err != nil || len(out) <= len(size.body) {
					b.Fatalf("not stamped: %v", err)
				}
				b.SetBytes(int64(len(size.body)))
				b.ReportAllocs()
				// cpu-ns/op is the process's CPU time (user+system, GC
				// included) per request: on a shared machine it is a better
				// measure of cost than wall-clock ns/op.
				cpu0 := processCPU()
				n := 0
				for b.Loop() {
					if _, _, err := s.Enrich(ctx, enrich.Traces, peerCart, size.body, dst); err != nil {
						b.Fatal(err)
					}
					n++
				}
				b.ReportMetric(float64(processCPU()-cpu0)/float64(n), "cpu-ns/op")
			})
		}
	}
}

// BenchmarkSegments compares Enrich (the output concatenated into a reused
// dst) with EnrichSegments (unchanged ranges referenced, reused segs and
// side) on the same requests.
func BenchmarkSegments(b *testing.B) {
	s := enrich.NewStamper(enrichtest.Rules(enrich.DefaultConfig()), enrichtest.New(cartPod()))
	ctx := context.Background()
	for _, size := range benchSizes(b) {
		b.Run(size.name+"/concat", func(b *testing.B) {
			dst := make([]byte, 0, len(size.body)+4096)
			b.SetBytes(int64(len(size.body)))
			b.ReportAllocs()
			cpu0, n := processCPU(), 0
			for b.Loop() {
				if _, _, err := s.Enrich(ctx, enrich.Traces, peerCart, size.body, dst); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(processCPU()-cpu0)/float64(n), "cpu-ns/op")
		})
		b.Run(size.name+"/segments", func(b *testing.B) {
			var segs [][]byte
			var side []byte
			b.SetBytes(int64(len(size.body)))
			b.ReportAllocs()
			cpu0, n := processCPU(), 0
			for b.Loop() {
				var err error
				if segs, side, _, err = s.EnrichSegments(ctx, enrich.Traces, peerCart, size.body, segs, side); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(processCPU()-cpu0)/float64(n), "cpu-ns/op")
			b.ReportMetric(float64(len(segs)), "segments")
		})
	}
}
