package enrich_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/podstamp/podstamp/enrich"
	"github.com/podstamp/podstamp/enrich/enrichtest"
)

// FuzzStamp feeds arbitrary bytes (and a signal, rule set and peer) to the
// wire stamper. It must never panic; errors must wrap ErrMalformed; and for
// every input pdata can decode, the output must decode too, with every
// span, data point, log record and profile unchanged and every key the
// stamper added present exactly once in its resource.
func FuzzStamp(f *testing.F) {
	g := gen{rand.New(rand.NewPCG(7, 7))}
	for i := range 16 {
		sig := enrich.Signals[i%4]
		in := g.request(sig)
		if i%2 == 1 {
			in = g.mutate(f, in)
		}
		f.Add(uint8(sig), uint8(i), uint8(i), in)
	}
	cfgs := diffConfigs()
	peers := []netip.Addr{peerCart, peerCart6, peerWorker, peerNobody, {}}
	stampers := make([]*enrich.Stamper, len(cfgs))
	for i, c := range cfgs {
		s := enrich.NewStamper(enrichtest.Rules(c), enrichtest.New(cartPod(), workerPod()))
		stampers[i] = s
	}
	f.Fuzz(func(t *testing.T, sigB, cfgB, peerB uint8, in []byte) {
		sig := enrich.Signals[int(sigB)%len(enrich.Signals)]
		s := stampers[int(cfgB)%len(stampers)]
		peer := peers[int(peerB)%len(peers)]
		orig := bytes.Clone(in)
		out, _, err := s.Enrich(context.Background(), sig, peer, in, nil)
		if !bytes.Equal(in, orig) {
			t.Fatal("input modified")
		}
		// The segments, every unchanged range referenced, are Enrich's output.
		segs, side, _, serr := s.EnrichSegmentsRefMin(context.Background(), sig, peer, in, nil, make([]byte, 0, 3), 1)
		if (serr == nil) != (err == nil) || err == nil && !bytes.Equal(bytes.Join(segs, nil), out) {
			t.Fatalf("segments (%v) differ from Enrich's output (%v)", serr, err)
		}
		for _, seg := range segs {
			if len(seg) > 0 && !within(in, seg) && !within(side, seg) {
				t.Fatal("a segment is in neither the request nor the returned side")
			}
		}
		_, perr := resources(sig, in)
		if err != nil {
			if !errors.Is(err, enrich.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			if perr == nil && wellFormed(in) {
				t.Fatalf("the request is well-formed, the stamper rejects it: %v", err)
			}
			return
		}
		if perr != nil {
			return // garbage below the resource level is forwarded as is
		}
		added := checkPreserved(t, in, out)
		want, got := decode(t, sig, in), decode(t, sig, out)
		wr, gr := want.resources(), got.resources()
		if len(wr) != len(gr) {
			t.Fatalf("%d resources became %d", len(wr), len(gr))
		}
		for i := range gr {
			counts := map[string]int{}
			for k := range gr[i].Attributes().All() {
				counts[k]++
			}
			if i < len(added) {
				for _, k := range added[i] {
					if counts[k] != 1 {
						t.Fatalf("resource %d: added key %q appears %d times", i, k, counts[k])
					}
				}
			}
			wr[i].Attributes().Clear()
			gr[i].Attributes().Clear()
		}
		if !bytes.Equal(want.marshal(t), got.marshal(t)) {
			t.Fatal("data outside resource attributes changed")
		}
	})
}

// wellFormed is an independent check of the levels the stamper parses:
// every field of the request, each Resource<Signal>, each Resource, each
// KeyValue and its AnyValue consumes cleanly, and the fields the stamper
// reads have their declared wire types. (pdata's decoder is more lenient
// than protobuf about unterminated groups, so it cannot be the judge.)
func wellFormed(b []byte) bool {
	type want map[protowire.Number]protowire.Type
	walk := func(b []byte, types want, descend map[protowire.Number]func([]byte) bool) bool {
		for len(b) > 0 {
			num, typ, n := protowire.ConsumeTag(b)
			if n < 0 {
				return false
			}
			m := protowire.ConsumeFieldValue(num, typ, b[n:])
			if m < 0 {
				return false
			}
			if wt, ok := types[num]; ok && wt != typ {
				return false
			}
			if d := descend[num]; d != nil {
				v, _ := protowire.ConsumeBytes(b[n:])
				if !d(v) {
					return false
				}
			}
			b = b[n+m:]
		}
		return true
	}
	bt, vt := protowire.BytesType, protowire.VarintType
	anyValue := func(b []byte) bool {
		return walk(b, want{1: bt, 2: vt, 3: vt, 4: protowire.Fixed64Type, 5: bt, 6: bt, 7: bt, 8: vt}, nil)
	}
	keyValue := func(b []byte) bool {
		return walk(b, want{1: bt, 2: bt, 3: vt}, map[protowire.Number]func([]byte) bool{2: anyValue})
	}
	resource := func(b []byte) bool { return walk(b, want{1: bt}, map[protowire.Number]func([]byte) bool{1: keyValue}) }
	rs := func(b []byte) bool { return walk(b, want{1: bt}, map[protowire.Number]func([]byte) bool{1: resource}) }
	return walk(b, want{1: bt}, map[protowire.Number]func([]byte) bool{1: rs})
}

// TestWriteFuzzSeeds regenerates testdata/fuzz/FuzzStamp when
// PODSTAMP_WRITE_FUZZ_SEEDS is set.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("PODSTAMP_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set PODSTAMP_WRITE_FUZZ_SEEDS=1 to regenerate the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzStamp")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	g := gen{rand.New(rand.NewPCG(3, 4))}
	write := func(name string, sig, cfg, peer uint8, b []byte) {
		body := fmt.Sprintf("go test fuzz v1\nbyte(%q)\nbyte(%q)\nbyte(%q)\n[]byte(%q)\n", sig, cfg, peer, b)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 24 {
		sig := enrich.Signals[i%4]
		in := g.request(sig)
		if i%3 != 0 {
			in = g.mutate(t, in)
		}
		write(fmt.Sprintf("gen-%s-%02d", sig, i), uint8(sig), uint8(i%5), uint8(i%5), in)
	}
	write("empty", 0, 0, 0, nil)
	write("resource-without-resource", 0, 0, 0, field(1, field(2, nil)))
	write("profiles-references", 3, 0, 0, cat(field(1, field(1, field(1, cat(varintField(3, 1), field(2, varintField(8, 2)))))),
		field(2, cat(field(5, nil), field(5, []byte("k8s.pod.uid")), field(5, []byte("uid-worker"))))))
	write("truncated", 1, 0, 0, field(1, field(1, strKV("a", "b")))[:9])
}
