package enrich_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pprofile"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/podstamp/podstamp/enrich"
	"github.com/podstamp/podstamp/enrich/enrichtest"
)

// gen builds random requests.
type gen struct{ r *rand.Rand }

func (g gen) pick(vs ...string) string { return vs[g.r.IntN(len(vs))] }

// value sets v to a random value of a random type (all AnyValue types).
func (g gen) value(v pcommon.Value, depth int) {
	switch g.r.IntN(8) {
	case 0:
		v.SetStr(g.pick("", "x", "a longer string value", "ünïcode"))
	case 1:
		v.SetInt(g.r.Int64() - g.r.Int64())
	case 2:
		v.SetDouble(g.r.NormFloat64())
	case 3:
		v.SetBool(g.r.IntN(2) == 0)
	case 4:
		v.SetEmptyBytes().FromRaw([]byte{byte(g.r.IntN(256)), 0, 1})
	case 5:
		s := v.SetEmptySlice()
		if depth < 2 {
			for range g.r.IntN(3) {
				g.value(s.AppendEmpty(), depth+1)
			}
		}
	case 6:
		m := v.SetEmptyMap()
		if depth < 2 {
			for i := range g.r.IntN(3) {
				g.value(m.PutEmpty(fmt.Sprintf("m%d", i)), depth+1)
			}
		}
	default:
		// left empty
	}
}

func (g gen) attrs(m pcommon.Map, n int) {
	for i := range n {
		g.value(m.PutEmpty(fmt.Sprintf("attr.%d", i)), 0)
	}
}

// resourceAttrs fills a resource with a random mix of association keys,
// keys podstamp stamps (client values, some empty, some not strings) and
// other attributes of every type. Keys are unique, as in any decoded map.
func (g gen) resourceAttrs(m pcommon.Map) {
	maybe := func(k string, vs ...string) {
		if g.r.IntN(4) == 0 {
			m.PutStr(k, g.pick(vs...))
		}
	}
	maybe("k8s.pod.uid", "uid-cart", "uid-worker", "uid-gone", "")
	maybe("k8s.pod.ip", "10.1.0.9", "10.1.0.5", "fd00::5", "::ffff:10.1.0.9", "nope", "")
	maybe("k8s.pod.name", "report-2911-xyz", "cart-7d9f8-abcde", "other", "")
	maybe("k8s.namespace.name", "batch", "shop", "")
	maybe("container.id", "aaaa", "bbbb", "c0ffee00", "zzz", "")
	maybe("k8s.container.name", "main", "sidecar", "cart", "nope", "")
	maybe("service.name", "unknown_service:java", "unknown_service", "checkout", "")
	maybe("service.version", "", "9")
	maybe("deployment.environment.name", "staging", "")
	if g.r.IntN(5) == 0 {
		g.value(m.PutEmpty("k8s.node.name"), 0) // any type
	}
	if g.r.IntN(5) == 0 {
		g.value(m.PutEmpty("k8s.pod.start_time"), 0)
	}
	g.attrs(m, g.r.IntN(4))
}

func (g gen) traces() []byte {
	td := ptrace.NewTraces()
	for range g.r.IntN(4) {
		rs := td.ResourceSpans().AppendEmpty()
		g.resourceAttrs(rs.Resource().Attributes())
		rs.Resource().SetDroppedAttributesCount(uint32(g.r.IntN(2)))
		rs.SetSchemaUrl(g.pick("", "https://opentelemetry.io/schemas/1.30.0"))
		for range g.r.IntN(3) {
			ss := rs.ScopeSpans().AppendEmpty()
			ss.Scope().SetName(g.pick("", "lib"))
			g.attrs(ss.Scope().Attributes(), g.r.IntN(2))
			for i := range g.r.IntN(4) {
				sp := ss.Spans().AppendEmpty()
				sp.SetName(fmt.Sprint("span", i))
				sp.SetTraceID(pcommon.TraceID{byte(g.r.IntN(256)), 1})
				sp.SetSpanID(pcommon.SpanID{byte(i + 1)})
				sp.SetStartTimestamp(pcommon.Timestamp(g.r.Uint64()))
				g.attrs(sp.Attributes(), g.r.IntN(4))
				if g.r.IntN(3) == 0 {
					ev := sp.Events().AppendEmpty()
					ev.SetName("ev")
					g.attrs(ev.Attributes(), 1)
				}
			}
		}
	}
	b, _ := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	return b
}

func (g gen) metrics() []byte {
	md := pmetric.NewMetrics()
	for range g.r.IntN(4) {
		rm := md.ResourceMetrics().AppendEmpty()
		g.resourceAttrs(rm.Resource().Attributes())
		sm := rm.ScopeMetrics().AppendEmpty()
		for i := range g.r.IntN(5) {
			m := sm.Metrics().AppendEmpty()
			m.SetName(fmt.Sprint("m", i))
			switch g.r.IntN(5) {
			case 0:
				dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
				dp.SetDoubleValue(g.r.Float64())
				g.attrs(dp.Attributes(), g.r.IntN(3))
			case 1:
				dp := m.SetEmptySum().DataPoints().AppendEmpty()
				dp.SetIntValue(g.r.Int64())
				g.attrs(dp.Attributes(), g.r.IntN(3))
			case 2:
				dp := m.SetEmptyHistogram().DataPoints().AppendEmpty()
				dp.SetCount(3)
				dp.BucketCounts().FromRaw([]uint64{1, 2})
				dp.ExplicitBounds().FromRaw([]float64{1})
			case 3:
				dp := m.SetEmptyExponentialHistogram().DataPoints().AppendEmpty()
				dp.SetScale(2)
				dp.Positive().BucketCounts().FromRaw([]uint64{4})
			default:
				dp := m.SetEmptySummary().DataPoints().AppendEmpty()
				dp.QuantileValues().AppendEmpty().SetQuantile(0.5)
			}
		}
	}
	b, _ := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	return b
}

func (g gen) logs() []byte {
	ld := plog.NewLogs()
	for range g.r.IntN(4) {
		rl := ld.ResourceLogs().AppendEmpty()
		g.resourceAttrs(rl.Resource().Attributes())
		sl := rl.ScopeLogs().AppendEmpty()
		for range g.r.IntN(4) {
			lr := sl.LogRecords().AppendEmpty()
			g.value(lr.Body(), 0)
			lr.SetSeverityNumber(plog.SeverityNumberWarn)
			g.attrs(lr.Attributes(), g.r.IntN(3))
		}
	}
	b, _ := (&plog.ProtoMarshaler{}).MarshalLogs(ld)
	return b
}

func (g gen) profiles() []byte {
	pd := pprofile.NewProfiles()
	st := pd.Dictionary().StringTable()
	st.Append("", "cpu", "nanoseconds", "main.work")
	if g.r.IntN(2) == 0 {
		st.Append("k8s.pod.uid", "uid-worker") // values a resource may reference
	}
	fn := pd.Dictionary().FunctionTable().AppendEmpty()
	fn.SetNameStrindex(3)
	for range g.r.IntN(4) {
		rp := pd.ResourceProfiles().AppendEmpty()
		g.resourceAttrs(rp.Resource().Attributes())
		sp := rp.ScopeProfiles().AppendEmpty()
		g.attrs(sp.Scope().Attributes(), g.r.IntN(2))
		for range g.r.IntN(3) {
			p := sp.Profiles().AppendEmpty()
			p.SetProfileID(pprofile.ProfileID{byte(g.r.IntN(256)), 2})
			p.SampleType().SetTypeStrindex(1)
			p.SampleType().SetUnitStrindex(2)
			s := p.Samples().AppendEmpty()
			s.Values().Append(g.r.Int64N(1000))
		}
	}
	b, err := (&pprofile.ProtoMarshaler{}).MarshalProfiles(pd)
	if err != nil {
		panic(err)
	}
	return b
}

func (g gen) request(sig enrich.Signal) []byte {
	switch sig {
	case enrich.Traces:
		return g.traces()
	case enrich.Metrics:
		return g.metrics()
	case enrich.Logs:
		return g.logs()
	}
	return g.profiles()
}

// mutate rewrites the request on the wire: drops some Resource fields
// (a Resource<Signal> without Resource), empties some, adds unknown fields
// at the request, Resource<Signal>, Resource and KeyValue levels.
func (g gen) mutate(t testing.TB, b []byte) []byte {
	unknown := func() []byte {
		switch g.r.IntN(3) {
		case 0:
			return varintField(protowire.Number(50000+g.r.IntN(100)), g.r.Uint64())
		case 1:
			return field(protowire.Number(50000+g.r.IntN(100)), []byte("unknown"))
		}
		return protowire.AppendFixed32(protowire.AppendTag(nil, protowire.Number(50000+g.r.IntN(100)), protowire.Fixed32Type), 7)
	}
	var out []byte
	nums, fields, vals := rawFields(t, b)
	for i, n := range nums {
		if g.r.IntN(6) == 0 {
			out = append(out, unknown()...)
		}
		if n != 1 {
			out = append(out, fields[i]...)
			continue
		}
		var rs []byte
		rn, rf, rv := rawFields(t, vals[i])
		for j, m := range rn {
			if g.r.IntN(6) == 0 {
				rs = append(rs, unknown()...)
			}
			if m != 1 {
				rs = append(rs, rf[j]...)
				continue
			}
			switch g.r.IntN(8) {
			case 0: // no Resource
				continue
			case 1: // empty Resource
				rs = append(rs, field(1, nil)...)
				continue
			}
			var res []byte
			an, af, av := rawFields(t, rv[j])
			for k, a := range an {
				if g.r.IntN(8) == 0 {
					res = append(res, unknown()...)
				}
				if a == 1 && g.r.IntN(8) == 0 { // unknown field inside a KeyValue
					res = append(res, field(1, append(append([]byte(nil), av[k]...), unknown()...))...)
					continue
				}
				res = append(res, af[k]...)
			}
			rs = append(rs, field(1, res)...)
		}
		out = append(out, field(1, rs)...)
	}
	if g.r.IntN(6) == 0 {
		out = append(out, unknown()...)
	}
	return out
}

// diffConfigs are the rule sets the differential test draws from.
func diffConfigs() []enrich.Config {
	d := enrich.DefaultConfig()
	ow := enrich.DefaultConfig()
	ow.Overwrite.Keys = []string{"k8s.namespace.name", "k8s.node.name", "k8s.pod.ip", "k8s.container.name"}
	svc := enrich.DefaultConfig()
	svc.Service = enrich.ServiceConfig{Derive: true, WellKnownLabels: true}
	svc.Overwrite.UnknownService = true
	svc.ClusterName = "eu-1"
	rules := enrich.DefaultConfig()
	rules.Labels = []enrich.FieldRule{{KeyRegex: "(.*)", TagName: "l.$1"}, {From: "namespace", Key: "tier"}}
	rules.Annotations = []enrich.FieldRule{{Key: "owner", TagName: "service.name"}}
	rules.Association = []string{"connection", "k8s.pod.name", "container.id"}
	// Trusted relays: worker and the unknown peer by address, cart by namespace.
	rules.TrustedRelays = []enrich.TrustedRelay{{CIDRs: []string{"10.1.0.9/32", "10.1.0.200/32"}}, {Namespaces: []string{"shop"}}}
	conn := enrich.DefaultConfig()
	conn.Association = []string{"k8s.pod.ip", "connection"}
	conn.Metadata = append(conn.Metadata, "k8s.deployment.uid", "k8s.node.uid")
	// cart is trusted by its labels over IPv4 only; worker is not.
	conn.TrustedRelays = []enrich.TrustedRelay{{PodSelector: &enrich.PodSelector{MatchLabels: map[string]string{"team": "payments"}}, CIDRs: []string{"10.0.0.0/8"}}}
	return []enrich.Config{d, ow, svc, rules, conn}
}

// decoded is a request decoded by pdata.
type decoded struct {
	sig enrich.Signal
	td  ptrace.Traces
	md  pmetric.Metrics
	ld  plog.Logs
	pd  pprofile.Profiles
}

func decode(t testing.TB, sig enrich.Signal, b []byte) decoded {
	t.Helper()
	d := decoded{sig: sig}
	var err error
	switch sig {
	case enrich.Traces:
		d.td, err = (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(b)
	case enrich.Metrics:
		d.md, err = (&pmetric.ProtoUnmarshaler{}).UnmarshalMetrics(b)
	case enrich.Logs:
		d.ld, err = (&plog.ProtoUnmarshaler{}).UnmarshalLogs(b)
	case enrich.Profiles:
		d.pd, err = (&pprofile.ProtoUnmarshaler{}).UnmarshalProfiles(b)
	}
	if err != nil {
		t.Fatalf("output does not parse: %v", err)
	}
	return d
}

func (d decoded) resources() []pcommon.Resource {
	var out []pcommon.Resource
	switch d.sig {
	case enrich.Traces:
		for i := 0; i < d.td.ResourceSpans().Len(); i++ {
			out = append(out, d.td.ResourceSpans().At(i).Resource())
		}
	case enrich.Metrics:
		for i := 0; i < d.md.ResourceMetrics().Len(); i++ {
			out = append(out, d.md.ResourceMetrics().At(i).Resource())
		}
	case enrich.Logs:
		for i := 0; i < d.ld.ResourceLogs().Len(); i++ {
			out = append(out, d.ld.ResourceLogs().At(i).Resource())
		}
	case enrich.Profiles:
		for i := 0; i < d.pd.ResourceProfiles().Len(); i++ {
			out = append(out, d.pd.ResourceProfiles().At(i).Resource())
		}
	}
	return out
}

func (d decoded) marshal(t testing.TB) []byte {
	var (
		b   []byte
		err error
	)
	switch d.sig {
	case enrich.Traces:
		b, err = (&ptrace.ProtoMarshaler{}).MarshalTraces(d.td)
	case enrich.Metrics:
		b, err = (&pmetric.ProtoMarshaler{}).MarshalMetrics(d.md)
	case enrich.Logs:
		b, err = (&plog.ProtoMarshaler{}).MarshalLogs(d.ld)
	case enrich.Profiles:
		b, err = (&pprofile.ProtoMarshaler{}).MarshalProfiles(d.pd)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// semanticallyEqual asserts that two requests decode to the same data:
// the same attributes per resource (no key twice) and, with resource
// attributes set aside, the same everything else.
func semanticallyEqual(t testing.TB, sig enrich.Signal, wire, ref []byte) {
	t.Helper()
	w, r := decode(t, sig, wire), decode(t, sig, ref)
	wr, rr := w.resources(), r.resources()
	if len(wr) != len(rr) {
		t.Fatalf("%d resources vs %d", len(wr), len(rr))
	}
	for i := range wr {
		if wr[i].Attributes().Len() != len(wr[i].Attributes().AsRaw()) {
			t.Fatalf("resource %d: duplicate keys in the wire output", i)
		}
		if a, b := wr[i].Attributes().AsRaw(), rr[i].Attributes().AsRaw(); !reflect.DeepEqual(a, b) {
			t.Fatalf("resource %d attributes differ:\nwire  %v\npdata %v", i, a, b)
		}
		wr[i].Attributes().Clear()
		rr[i].Attributes().Clear()
	}
	if sig == enrich.Profiles {
		// pdata interns the strings it adds at the end of the string table.
		ws, rs := w.pd.Dictionary().StringTable().AsRaw(), r.pd.Dictionary().StringTable().AsRaw()
		if len(rs) < len(ws) || !reflect.DeepEqual(ws, rs[:len(ws)]) {
			t.Fatalf("string tables: wire %q, pdata %q", ws, rs)
		}
		r.pd.Dictionary().StringTable().FromRaw(rs[:len(ws)])
	}
	if !bytes.Equal(w.marshal(t), r.marshal(t)) {
		t.Fatal("requests differ outside resource attributes")
	}
}

func TestDifferentialWireVsPdata(t *testing.T) {
	iterations := 3000
	if testing.Short() {
		iterations = 300
	}
	g := gen{rand.New(rand.NewPCG(1, 2))}
	cfgs := diffConfigs()
	peers := []netip.Addr{peerCart, peerCart6, peerWorker, peerNobody, {}}
	type pair struct{ wire, ref stamper }
	var stampers []pair
	var wireConflicts, refConflicts []enrich.Conflict
	for _, c := range cfgs {
		r := enrichtest.New(cartPod(), workerPod())
		w := enrich.NewStamper(enrichtest.Rules(c), r, enrich.WithConflictHandler(func(c enrich.Conflict) { wireConflicts = append(wireConflicts, c) }))
		p, _ := enrich.NewPdataStamper(c, r, enrich.WithConflictHandler(func(c enrich.Conflict) { refConflicts = append(refConflicts, c) }))
		stampers = append(stampers, pair{w, p})
	}
	var stamped, unchanged, noResource, conflicts int
	for i := range iterations {
		sig := enrich.Signals[g.r.IntN(len(enrich.Signals))]
		in := g.request(sig)
		if g.r.IntN(2) == 0 {
			in = g.mutate(t, in)
		}
		ci := g.r.IntN(len(stampers))
		peer := peers[g.r.IntN(len(peers))]
		ctx := context.Background()
		wireConflicts, refConflicts = wireConflicts[:0], refConflicts[:0]
		wout, wres, werr := stampers[ci].wire.Enrich(ctx, sig, peer, in, nil)
		pout, pres, perr := stampers[ci].ref.Enrich(ctx, sig, peer, in, nil)
		if werr != nil || perr != nil {
			t.Fatalf("#%d %s cfg %d: wire err %v, pdata err %v", i, sig, ci, werr, perr)
		}
		if !reflect.DeepEqual(wireConflicts, refConflicts) {
			t.Fatalf("#%d %s cfg %d peer %v: conflicts\nwire  %+v\npdata %+v", i, sig, ci, peer, wireConflicts, refConflicts)
		}
		conflicts += len(wireConflicts)
		if wres != pres {
			t.Fatalf("#%d %s cfg %d: result wire %q, pdata %q", i, sig, ci, wres, pres)
		}
		func() {
			defer func() {
				if t.Failed() {
					t.Logf("#%d %s cfg %d peer %v input %x", i, sig, ci, peer, in)
				}
			}()
			semanticallyEqual(t, sig, wout, pout)
			checkPreserved(t, in, wout)
		}()
		switch {
		case bytes.Equal(in, wout):
			unchanged++
		default:
			stamped++
		}
		for _, r := range rawResources(t, in) {
			if r == nil {
				noResource++
			}
		}
	}
	t.Logf("%d requests: %d stamped, %d unchanged; %d resources without Resource, %d identity conflicts",
		iterations, stamped, unchanged, noResource, conflicts)
	if stamped < iterations/4 || unchanged < iterations/20 || noResource == 0 || conflicts < iterations/10 {
		t.Fatalf("generator does not cover the cases: %d stamped, %d unchanged, %d without Resource, %d conflicts",
			stamped, unchanged, noResource, conflicts)
	}
}
