package enrich_test

import (
	"net/netip"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pprofile"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/goleak"

	"github.com/podstamp/podstamp/enrich"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	peerCart   = netip.MustParseAddr("10.1.0.5")
	peerCart6  = netip.MustParseAddr("fd00::5")
	peerWorker = netip.MustParseAddr("10.1.0.9")
	peerNobody = netip.MustParseAddr("10.1.0.200")
	startTime  = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
)

// cartPod has one container, a Deployment and both IP families.
func cartPod() *enrich.Pod {
	return &enrich.Pod{
		Namespace: "shop", Name: "cart-7d9f8-abcde", UID: "uid-cart",
		IPs:       []netip.Addr{netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("fd00::5")},
		StartTime: startTime, NodeName: "node-a", NodeUID: "uid-node-a",
		Labels: map[string]string{
			"app.kubernetes.io/name": "cart", "app.kubernetes.io/version": "1.2.3",
			"team": "payments", "tier": "backend",
		},
		Annotations: map[string]string{
			"resource.opentelemetry.io/deployment.environment.name": "prod",
			"owner": "alice", "note.example.com/a": "x",
		},
		Workloads: []enrich.Workload{
			{Kind: enrich.ReplicaSet, Name: "cart-7d9f8", UID: "uid-rs"},
			{Kind: enrich.Deployment, Name: "cart", UID: "uid-deploy"},
		},
		Containers: []enrich.Container{
			{Name: "cart", ImageName: "ghcr.io/shop/cart", ImageTag: "1.2.3", IDs: []string{"c0ffee01", "c0ffee00"}},
		},
		NamespaceLabels:      map[string]string{"tier": "gold"},
		NamespaceAnnotations: map[string]string{"contact": "ops"},
		NodeLabels:           map[string]string{"topology.kubernetes.io/zone": "z1"},
	}
}

// workerPod has two containers and a Job owned by a CronJob.
func workerPod() *enrich.Pod {
	return &enrich.Pod{
		Namespace: "batch", Name: "report-2911-xyz", UID: "uid-worker",
		IPs:       []netip.Addr{netip.MustParseAddr("10.1.0.9")},
		StartTime: startTime, NodeName: "node-a",
		Workloads: []enrich.Workload{
			{Kind: enrich.Job, Name: "report-2911"},
			{Kind: enrich.CronJob, Name: "report"},
		},
		Containers: []enrich.Container{
			{Name: "main", ImageName: "reg/report", ImageTag: "v2", IDs: []string{"aaaa"}},
			{Name: "sidecar", ImageName: "reg/proxy", ImageTag: "latest", IDs: []string{"bbbb"}},
		},
	}
}

// resources decodes the resources of a request of any signal.
func resources(sig enrich.Signal, b []byte) ([]pcommon.Resource, error) {
	var out []pcommon.Resource
	switch sig {
	case enrich.Traces:
		d, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(b)
		if err != nil {
			return nil, err
		}
		for i := 0; i < d.ResourceSpans().Len(); i++ {
			out = append(out, d.ResourceSpans().At(i).Resource())
		}
	case enrich.Metrics:
		d, err := (&pmetric.ProtoUnmarshaler{}).UnmarshalMetrics(b)
		if err != nil {
			return nil, err
		}
		for i := 0; i < d.ResourceMetrics().Len(); i++ {
			out = append(out, d.ResourceMetrics().At(i).Resource())
		}
	case enrich.Logs:
		d, err := (&plog.ProtoUnmarshaler{}).UnmarshalLogs(b)
		if err != nil {
			return nil, err
		}
		for i := 0; i < d.ResourceLogs().Len(); i++ {
			out = append(out, d.ResourceLogs().At(i).Resource())
		}
	case enrich.Profiles:
		d, err := (&pprofile.ProtoUnmarshaler{}).UnmarshalProfiles(b)
		if err != nil {
			return nil, err
		}
		for i := 0; i < d.ResourceProfiles().Len(); i++ {
			out = append(out, d.ResourceProfiles().At(i).Resource())
		}
	}
	return out, nil
}

// attrMaps decodes every resource's attributes as a Go map.
func attrMaps(t testing.TB, sig enrich.Signal, b []byte) []map[string]any {
	t.Helper()
	rs, err := resources(sig, b)
	if err != nil {
		t.Fatalf("output does not parse: %v", err)
	}
	out := make([]map[string]any, len(rs))
	for i, r := range rs {
		out[i] = r.Attributes().AsRaw()
	}
	return out
}

// tracesWith builds a traces request with one resource per attribute map,
// each with one span.
func tracesWith(t testing.TB, res ...map[string]any) []byte {
	t.Helper()
	td := ptrace.NewTraces()
	for _, attrs := range res {
		rs := td.ResourceSpans().AppendEmpty()
		if err := rs.Resource().Attributes().FromRaw(attrs); err != nil {
			t.Fatal(err)
		}
		sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
		sp.SetName("GET /cart")
		sp.SetTraceID(pcommon.TraceID{1, 2, 3})
		sp.SetSpanID(pcommon.SpanID{4, 5})
	}
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// requestWith builds a request of signal sig with one resource per attribute
// map, each with one item.
func requestWith(t testing.TB, sig enrich.Signal, res ...map[string]any) []byte {
	t.Helper()
	var (
		b   []byte
		err error
	)
	switch sig {
	case enrich.Traces:
		return tracesWith(t, res...)
	case enrich.Metrics:
		md := pmetric.NewMetrics()
		for _, attrs := range res {
			rm := md.ResourceMetrics().AppendEmpty()
			if err := rm.Resource().Attributes().FromRaw(attrs); err != nil {
				t.Fatal(err)
			}
			m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
			m.SetName("requests")
			m.SetEmptyGauge().DataPoints().AppendEmpty().SetIntValue(42)
		}
		b, err = (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	case enrich.Logs:
		ld := plog.NewLogs()
		for _, attrs := range res {
			rl := ld.ResourceLogs().AppendEmpty()
			if err := rl.Resource().Attributes().FromRaw(attrs); err != nil {
				t.Fatal(err)
			}
			rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body().SetStr("hello")
		}
		b, err = (&plog.ProtoMarshaler{}).MarshalLogs(ld)
	case enrich.Profiles:
		pd := pprofile.NewProfiles()
		pd.Dictionary().StringTable().Append("", "cpu", "nanoseconds")
		for _, attrs := range res {
			rp := pd.ResourceProfiles().AppendEmpty()
			if err := rp.Resource().Attributes().FromRaw(attrs); err != nil {
				t.Fatal(err)
			}
			p := rp.ScopeProfiles().AppendEmpty().Profiles().AppendEmpty()
			p.SetProfileID(pprofile.ProfileID{9, 9})
			p.Samples().AppendEmpty().Values().Append(100)
		}
		b, err = (&pprofile.ProtoMarshaler{}).MarshalProfiles(pd)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}
