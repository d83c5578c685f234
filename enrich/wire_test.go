package enrich_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/plog"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/podstamp/podstamp/enrich"
	"github.com/podstamp/podstamp/enrich/enrichtest"
)

// field encodes one length-delimited field.
func field(num protowire.Number, v []byte) []byte {
	b := protowire.AppendTag(nil, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func varintField(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func strKV(k, v string) []byte {
	return field(1, cat(field(1, []byte(k)), field(2, field(1, []byte(v)))))
}

// checkPreserved asserts that out is in with attributes appended to (and
// replaced ones removed from) each resource, everything else byte for byte.
// It returns, per resource, the keys appended. Requests whose
// Resource<Signal>s carry the Resource field more than once are skipped.
func checkPreserved(t testing.TB, in, out []byte) [][]string {
	t.Helper()
	inN, inF, inV := rawFields(t, in)
	outN, outF, outV := rawFields(t, out)
	if !reflect.DeepEqual(inN, outN) {
		t.Fatalf("request fields %v became %v", inN, outN)
	}
	var added [][]string
	for i := range inN {
		if inN[i] != 1 {
			if !bytes.Equal(inF[i], outF[i]) {
				t.Fatalf("request field %d (#%d) changed", inN[i], i)
			}
			continue
		}
		added = append(added, checkRS(t, inV[i], outV[i]))
	}
	return added
}

func checkRS(t testing.TB, in, out []byte) []string {
	t.Helper()
	inN, inF, inV := rawFields(t, in)
	outN, outF, outV := rawFields(t, out)
	count := func(ns []protowire.Number) (c int) {
		for _, n := range ns {
			if n == 1 {
				c++
			}
		}
		return
	}
	if count(inN) > 1 {
		return nil
	}
	var inRes []byte
	if count(inN) == 0 {
		if len(outN) == len(inN) {
			if !bytes.Equal(in, out) {
				t.Fatal("resource without Resource changed but got none")
			}
			return nil
		}
		if len(outN) != len(inN)+1 || outN[0] != 1 {
			t.Fatalf("resource without Resource: fields %v became %v", inN, outN)
		}
		if !bytes.Equal(out[len(outF[0]):], in) {
			t.Fatal("resource without Resource: other fields changed")
		}
		return checkResource(t, nil, outV[0])
	}
	if !reflect.DeepEqual(inN, outN) {
		t.Fatalf("resource fields %v became %v", inN, outN)
	}
	for i := range inN {
		if inN[i] == 1 {
			inRes = inV[i]
			return append([]string(nil), checkResource(t, inRes, outV[i])...)
		} else if !bytes.Equal(inF[i], outF[i]) {
			t.Fatalf("resource field %d changed", inN[i])
		}
	}
	return nil
}

func checkResource(t testing.TB, in, out []byte) []string {
	t.Helper()
	inN, inF, _ := rawFields(t, in)
	outN, outF, outV := rawFields(t, out)
	var inOther, outOther, inAttrs, outAttrs [][]byte
	var outAttrV [][]byte
	for i := range inN {
		if inN[i] == 1 {
			inAttrs = append(inAttrs, inF[i])
		} else {
			inOther = append(inOther, inF[i])
		}
	}
	for i := range outN {
		if outN[i] == 1 {
			outAttrs, outAttrV = append(outAttrs, outF[i]), append(outAttrV, outV[i])
		} else {
			outOther = append(outOther, outF[i])
		}
	}
	if !reflect.DeepEqual(bytes.Join(inOther, nil), bytes.Join(outOther, nil)) {
		t.Fatal("Resource fields other than attributes changed")
	}
	// Output attributes: the input's, some removed, order kept; then appended ones.
	j := 0
	var dropped [][]byte
	var added []string
	for i, a := range outAttrs {
		for j < len(inAttrs) && !bytes.Equal(inAttrs[j], a) {
			dropped = append(dropped, inAttrs[j])
			j++
		}
		if j < len(inAttrs) {
			j++
			continue
		}
		// Appended: KeyValue{key, AnyValue{string_value}} exactly.
		kn, _, kv := rawFields(t, outAttrV[i])
		if len(kn) != 2 || kn[0] != 1 || kn[1] != 2 {
			t.Fatalf("appended attribute has fields %v", kn)
		}
		vn, _, vv := rawFields(t, kv[1])
		if len(vn) != 1 || vn[0] != 1 || len(vv[0]) == 0 {
			t.Fatalf("appended attribute %q value has fields %v", kv[0], vn)
		}
		if !bytes.Equal(a, strKV(string(kv[0]), string(vv[0]))) {
			t.Fatalf("appended attribute %q not canonically encoded", kv[0])
		}
		added = append(added, string(kv[0]))
	}
	dropped = append(dropped, inAttrs[j:]...)
	for _, d := range dropped {
		kn, _, kv := rawFields(t, d[len(d)-len(mustBytes(t, d)):])
		key, literal := "", false
		for i, n := range kn {
			if n == 1 {
				key, literal = string(kv[i]), true
			}
		}
		// An identity attribute that contradicts the sender's pod is removed
		// when the pod has no value for it.
		if literal && !contains(added, key) && !identityKey(key) {
			t.Fatalf("attribute %q removed but not replaced", key)
		}
	}
	return added
}

// identityKey reports whether podstamp checks k against an untrusted sender's pod.
func identityKey(k string) bool {
	switch k {
	case "k8s.namespace.name", "k8s.pod.name", "k8s.pod.uid", "k8s.pod.ip", "k8s.node.name", "container.id":
		return true
	}
	for _, w := range []string{"deployment", "replicaset", "statefulset", "daemonset", "job", "cronjob"} {
		if k == "k8s."+w+".name" || k == "k8s."+w+".uid" {
			return true
		}
	}
	return false
}

func mustBytes(t testing.TB, f []byte) []byte {
	_, _, n := protowire.ConsumeTag(f)
	v, m := protowire.ConsumeBytes(f[n:])
	if m < 0 {
		t.Fatal("bad field")
	}
	return v
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func TestUnknownFieldsPreservedByteForByte(t *testing.T) {
	unknownAny := cat(field(1, []byte("v")), varintField(15, 3))
	res := cat(
		strKV("k8s.namespace.name", ""), // empty: replaced
		field(1, cat(field(1, []byte("custom")), field(2, unknownAny), varintField(9, 1))), // unknown fields inside
		varintField(2, 3), // dropped_attributes_count
		field(44, []byte("unknown in Resource")),
		strKV("container.image.name", "theirs"),
	)
	rs := cat(field(1, res), field(2, []byte{}), field(3, []byte("https://schema")), varintField(99, 7))
	in := cat(varintField(100, 1), field(1, rs), field(5, []byte("tail")), field(1, field(2, nil)))
	s := enrich.NewStamper(enrichtest.Rules(enrich.DefaultConfig()), enrichtest.New(cartPod()))
	out, _, err := s.Enrich(context.Background(), enrich.Traces, peerCart, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	added := checkPreserved(t, in, out)
	want := cartAttrs()
	delete(want, "container.image.name")
	if len(added) != 2 || len(added[0]) != len(want) || len(added[1]) != len(cartAttrs()) {
		t.Fatalf("added %v", added)
	}
	for _, k := range added[0] {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected key %q added", k)
		}
	}
	got := attrMaps(t, enrich.Traces, out)
	if got[0]["container.image.name"] != "theirs" || got[0]["k8s.namespace.name"] != "shop" || got[0]["custom"] != "v" {
		t.Fatalf("attributes %v", got[0])
	}
	if !reflect.DeepEqual(got[1], cartAttrs()) {
		t.Fatalf("created Resource has %v", got[1])
	}
}

func TestNothingAddedIsByteIdentical(t *testing.T) {
	// Unusual but valid encodings must survive untouched when nothing is added:
	// a non-minimal length varint and fields out of order.
	res := strKV("a", "b")
	rs := cat(field(3, []byte("schema")), []byte{0x0a, 0x80 | byte(len(res)), 0x00}, res)
	in := cat(field(1, rs), varintField(7, 1))
	s := enrich.NewStamper(enrichtest.Rules(enrich.DefaultConfig()), enrichtest.New(cartPod()))
	dst := make([]byte, 3, 1024)
	out, res2, err := s.Enrich(context.Background(), enrich.Logs, peerNobody, in, dst)
	if err != nil || res2 != enrich.ResultUnknown {
		t.Fatalf("err=%v result=%q", err, res2)
	}
	if !bytes.Equal(out, in) {
		t.Fatalf("output\n%x\nwant\n%x", out, in)
	}
	// With a pod, the non-minimal Resource<Signal> length is rewritten and stays valid.
	out, _, err = s.Enrich(context.Background(), enrich.Logs, peerCart, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkPreserved(t, in, out)
	if got := attrMaps(t, enrich.Logs, out)[0]; got["a"] != "b" || got["k8s.pod.uid"] != "uid-cart" {
		t.Fatalf("attributes %v", got)
	}
}

func TestRepeatedResourceFieldMerges(t *testing.T) {
	// Resource given twice in one Resource<Signal>: decoders merge them; the
	// client's key in the first occurrence still counts.
	rs := cat(field(1, strKV("container.image.name", "theirs")), field(2, nil), field(1, strKV("x", "y")))
	in := field(1, rs)
	for name, s := range bothStampers(t, enrich.DefaultConfig(), enrichtest.New(cartPod())) {
		out, _, err := s.Enrich(context.Background(), enrich.Traces, peerCart, in, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := attrMaps(t, enrich.Traces, out)[0]
		if got["container.image.name"] != "theirs" || got["x"] != "y" || got["k8s.pod.uid"] != "uid-cart" {
			t.Fatalf("%s: attributes %v", name, got)
		}
		assertNoDuplicateKeys(t, enrich.Traces, out)
	}
	// Empty client values in both occurrences are dropped and replaced, a
	// key given twice included (the pdata reference only replaces the
	// first of duplicate keys, so it is not compared here).
	rs = cat(field(1, strKV("k8s.pod.uid", "")), field(2, nil), field(1, cat(strKV("k8s.node.name", ""), strKV("k8s.pod.uid", ""))))
	in = field(1, rs)
	for name, s := range map[string]stamper{"wire": bothStampers(t, enrich.DefaultConfig(), enrichtest.New(cartPod()))["wire"]} {
		out, _, err := s.Enrich(context.Background(), enrich.Traces, peerCart, in, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := attrMaps(t, enrich.Traces, out)[0]; !reflect.DeepEqual(got, cartAttrs()) {
			t.Fatalf("%s: attributes %v", name, got)
		}
		assertNoDuplicateKeys(t, enrich.Traces, out)
	}
}

func TestMalformed(t *testing.T) {
	good := field(1, field(1, strKV("a", "b")))
	cases := []struct {
		name string
		sig  enrich.Signal
		in   []byte
		want string
	}{
		{"truncated request", enrich.Traces, good[:len(good)-1], "request: resource entry 0 at offset 0: bad length"},
		{"bad tag", enrich.Traces, []byte{0x00}, "request: bad field tag at offset 0"},
		{"field 1 not length-delimited", enrich.Metrics, varintField(1, 5), "field 1 (resource metrics) has wire type 0"},
		{"truncated unknown field", enrich.Traces, cat(good, []byte{0x12, 0x05, 0x01}), "request: bad field 2"},
		{"Resource not length-delimited", enrich.Logs, field(1, varintField(1, 1)), "resource entry 0: field 1 (resource) has wire type 0"},
		{"Resource truncated", enrich.Logs, field(1, []byte{0x0a, 0x09, 0x01}), "resource entry 0: resource at offset 2: bad length"},
		{"attribute not length-delimited", enrich.Traces, field(1, field(1, varintField(1, 1))), "resource entry 0: resource: attribute at offset 4 has wire type 0"},
		{"attribute truncated", enrich.Traces, field(1, field(1, []byte{0x0a, 0x05, 0x0a})), "resource entry 0: resource: attribute at offset 4: bad length"},
		{"KeyValue key varint", enrich.Traces, field(1, field(1, field(1, varintField(1, 1)))), "KeyValue field 1 has wire type 0"},
		{"AnyValue string varint", enrich.Traces, field(1, field(1, field(1, cat(field(1, []byte("k")), field(2, varintField(1, 1)))))), "AnyValue field 1 has wire type 0"},
		{"Resource unknown field truncated", enrich.Traces, field(1, field(1, []byte{0x22, 0x04})), "resource: bad field 4"},
		{"profiles key_strindex out of range", enrich.Profiles,
			cat(field(1, field(1, field(1, varintField(3, 4)))), field(2, field(5, nil))), "key_strindex: index 4 outside the string table (1 entries)"},
		{"profiles key and key_strindex", enrich.Profiles,
			cat(field(1, field(1, field(1, cat(field(1, []byte("k")), varintField(3, 1))))), field(2, cat(field(5, nil), field(5, []byte("k"))))),
			"both key and key_strindex"},
		{"profiles string_value_strindex negative", enrich.Profiles,
			cat(field(1, field(1, field(1, cat(varintField(3, 1), field(2, varintField(8, 0xffffffffffffffff)))))), field(2, cat(field(5, nil), field(5, []byte("k"))))),
			"string_value_strindex: index -1 outside the string table"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := enrich.NewStamper(enrichtest.Rules(enrich.DefaultConfig()), enrichtest.New(cartPod()))
			out, _, err := s.Enrich(context.Background(), tc.sig, peerCart, tc.in, nil)
			if !errors.Is(err, enrich.ErrMalformed) {
				t.Fatalf("err = %v (out %d bytes), want ErrMalformed", err, len(out))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %q, want it to contain %q", err, tc.want)
			}
			if _, perr := resources(tc.sig, tc.in); perr == nil {
				t.Errorf("pdata accepts what the wire stamper rejects")
			}
		})
	}
}

func TestProfilesStringTableReferences(t *testing.T) {
	// Keys and values as references: a trusted relay's k8s.pod.uid (by
	// reference) associates; its k8s.pod.name (by reference) is kept.
	dict := field(2, cat(field(5, nil), field(5, []byte("k8s.pod.uid")), field(5, []byte("uid-worker")),
		field(5, []byte("k8s.pod.name")), field(5, []byte("mine"))))
	kv := func(k, v uint64) []byte { return field(1, cat(varintField(3, k), field(2, varintField(8, v)))) }
	in := cat(field(1, field(1, cat(kv(1, 2), kv(3, 4)))), dict)
	relay := enrich.DefaultConfig()
	trustCIDR("10.1.0.5/32")(&relay)
	for name, s := range bothStampers(t, relay, enrichtest.New(cartPod(), workerPod())) {
		out, res, err := s.Enrich(context.Background(), enrich.Profiles, peerCart, in, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res != enrich.ResultResourceAttribute {
			t.Errorf("%s: result %q", name, res)
		}
		want := with(workerAttrs(), "k8s.pod.name", "mine")
		if got := attrMaps(t, enrich.Profiles, out)[0]; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: attributes\n got %v\nwant %v", name, got, want)
		}
		if name == "wire" {
			checkPreserved(t, in, out)
		}
	}
}

func TestAllocationsPerRequestAreConstant(t *testing.T) {
	s := enrich.NewStamper(enrichtest.Rules(enrich.DefaultConfig()), enrichtest.New(cartPod()))
	ctx := context.Background()
	for _, n := range []int{1, 512} {
		in := benchTraces(t, n, 8, map[string]any{"service.name": "cart"})
		dst := make([]byte, 0, 2*len(in))
		allocs := testing.AllocsPerRun(100, func() {
			out, _, err := s.Enrich(ctx, enrich.Traces, peerCart, in, dst)
			if err != nil || len(out) <= len(in) {
				t.Fatal("not stamped", err)
			}
		})
		limit := 1.0
		if raceEnabled {
			// The race detector makes sync.Pool drop a quarter of what is put
			// back, so some requests rebuild the pooled scratch: bound the
			// average by half of what a request on a fresh stamper (no
			// scratch at all) allocates. Anything allocated per span still
			// fails this.
			fresh := testing.AllocsPerRun(20, func() {
				s2 := enrich.NewStamper(enrichtest.Rules(enrich.DefaultConfig()), enrichtest.New(cartPod()))
				s2.Enrich(ctx, enrich.Traces, peerCart, in, dst)
			}) - testing.AllocsPerRun(20, func() {
				enrich.NewStamper(enrichtest.Rules(enrich.DefaultConfig()), enrichtest.New(cartPod()))
			})
			limit = max(4, fresh/2)
		}
		t.Logf("%d spans: %.2f allocations per request (at most %.1f)", n, allocs, limit)
		if allocs > limit {
			t.Errorf("%d spans: %.1f allocations per request, want at most %.0f", n, allocs, limit)
		}
	}
}

func TestConcurrentStampingSharesCacheSafely(t *testing.T) {
	r := enrichtest.New(cartPod(), workerPod())
	s := enrich.NewStamper(enrichtest.Rules(enrich.DefaultConfig()), r)
	reqCart := requestWith(t, enrich.Traces, map[string]any{}, map[string]any{"k8s.pod.uid": "uid-worker"})
	reqWorker := requestWith(t, enrich.Traces, map[string]any{"k8s.container.name": "sidecar"})
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			var dst []byte
			for i := range 200 {
				peer, in := peerCart, reqCart
				if (g+i)%2 == 1 {
					peer, in = peerWorker, reqWorker
				}
				out, _, err := s.Enrich(context.Background(), enrich.Traces, peer, in, dst)
				if err != nil {
					errs <- err
					return
				}
				got, err := resources(enrich.Traces, out)
				if err != nil {
					errs <- err
					return
				}
				want := "cart-7d9f8-abcde"
				if peer == peerWorker {
					want = "report-2911-xyz"
				}
				if v, _ := got[0].Attributes().Get("k8s.pod.name"); v.Str() != want {
					errs <- fmt.Errorf("k8s.pod.name %q, want %q", v.Str(), want)
					return
				}
				dst = out
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestCacheFollowsNewPodObjects(t *testing.T) {
	// A cache publishes a new *Pod when a pod changes; the stamper must use it.
	old := cartPod()
	r := enrichtest.New(old)
	relay := enrich.DefaultConfig()
	trustCIDR("10.1.0.200/32")(&relay)
	s := enrich.NewStamper(enrichtest.Rules(relay), r)
	in := requestWith(t, enrich.Logs, map[string]any{"k8s.pod.uid": "uid-cart"})
	out, _, _ := s.Enrich(context.Background(), enrich.Logs, peerNobody, in, nil)
	if got := attrMaps(t, enrich.Logs, out)[0]["k8s.node.name"]; got != "node-a" {
		t.Fatalf("k8s.node.name %v", got)
	}
	moved := cartPod()
	moved.UID = "uid-cart-2"
	moved.NodeName = "node-b"
	r.Add(moved)
	in = requestWith(t, enrich.Logs, map[string]any{"k8s.pod.uid": "uid-cart-2"})
	out, _, _ = s.Enrich(context.Background(), enrich.Logs, peerNobody, in, nil)
	if got := attrMaps(t, enrich.Logs, out)[0]["k8s.node.name"]; got != "node-b" {
		t.Fatalf("k8s.node.name %v after the pod changed", got)
	}
}

func TestManyResourceOccurrences(t *testing.T) {
	// 20,000 occurrences of the Resource field in one Resource<Signal>, each
	// with an empty k8s.pod.uid that must be dropped: linear work, valid output.
	var rs []byte
	for range 20000 {
		rs = append(rs, field(1, strKV("k8s.pod.uid", ""))...)
	}
	in := field(1, rs)
	s := enrich.NewStamper(enrichtest.Rules(enrich.DefaultConfig()), enrichtest.New(cartPod()))
	out, _, err := s.Enrich(context.Background(), enrich.Traces, peerCart, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := attrMaps(t, enrich.Traces, out)[0]; !reflect.DeepEqual(got, cartAttrs()) {
		t.Fatalf("attributes %v", got)
	}
	assertNoDuplicateKeys(t, enrich.Traces, out)
}

func TestPdataStamperOnDecodedData(t *testing.T) {
	relay := enrich.DefaultConfig()
	trust(enrich.TrustedRelay{Namespaces: []string{"shop"}})(&relay)
	p, _ := enrich.NewPdataStamper(relay, enrichtest.New(cartPod(), workerPod()))
	ld := plog.NewLogs()
	ld.ResourceLogs().AppendEmpty()
	ld.ResourceLogs().AppendEmpty().Resource().Attributes().PutStr("k8s.pod.uid", "uid-worker")
	res, err := p.StampLogs(context.Background(), enrich.Peer{Addr: peerCart}, ld)
	if err != nil || res != enrich.ResultHit {
		t.Fatalf("res=%q err=%v", res, err)
	}
	if got := ld.ResourceLogs().At(0).Resource().Attributes().AsRaw(); !reflect.DeepEqual(got, cartAttrs()) {
		t.Fatalf("resource 0: %v", got)
	}
	if got := ld.ResourceLogs().At(1).Resource().Attributes().AsRaw(); !reflect.DeepEqual(got, workerAttrs()) {
		t.Fatalf("resource 1: %v", got)
	}
	if _, _, err := p.Enrich(context.Background(), enrich.Traces, peerCart, []byte{0x0a, 0x05}, nil); !errors.Is(err, enrich.ErrMalformed) {
		t.Fatalf("pdata stamper on a truncated request: %v", err)
	}
}
