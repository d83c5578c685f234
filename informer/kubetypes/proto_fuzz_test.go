package kubetypes

import (
	"bytes"
	"reflect"
	"testing"
)

// FuzzUnmarshalPodProto: whatever the bytes, the protobuf decoders do not
// panic, a pod that decodes does not alias its input (overwriting the input
// leaves it as it was), a failed decode leaves the pod empty, and decoding
// allocates at most a bounded multiple of the input (see
// TestProtoAllocationBound for the worst cases per type).
func FuzzUnmarshalPodProto(f *testing.F) {
	for _, name := range []string{"pod-full.pb", "pod-minimal.pb", "podlist3.pb", "status-gone.pb"} {
		b := readFile(f, name)
		f.Add(b)
		f.Add(b[:len(b)/3])
		if _, raw, err := unwrapProto(b, "Pod"); err == nil {
			f.Add(raw) // for the second check, which wraps it
		}
	}
	for _, name := range []string{"watch-added.pb", "watch-bookmark.pb"} {
		ev := readFile(f, name)
		f.Add(ev)
		if _, obj, err := UnmarshalWatchEventProto(ev); err == nil {
			f.Add(obj)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkPodProto(t, data)
		// The bytes as the object in a valid envelope too, so that
		// mutations reach the pod's own fields directly.
		checkPodProto(t, envelope("v1", "Pod", data, "", ""))

		var l PodList
		_ = UnmarshalPodListProto(data, &l)
		var s Status
		_ = UnmarshalStatusProto(data, &s)
		if typ, obj, err := UnmarshalWatchEventProto(data); err == nil {
			if typ == "" || len(obj) == 0 {
				t.Fatalf("event %q with %d bytes of object and no error", typ, len(obj))
			}
			_ = UnmarshalPodProto(obj, &Pod{})
		}
	})
}

// checkPodProto decodes data as a pod and fails if that allocated more
// than the bound, filled in the pod on an error, or left it aliasing data.
func checkPodProto(t *testing.T, data []byte) {
	keep := bytes.Clone(data)
	var p Pod
	var err error
	got := allocated(func() { err = UnmarshalPodProto(data, &p) })
	// A Pod is about 370 bytes and each repeated entry takes at most
	// about 40 bytes per input byte; errors allocate their text.
	if limit := 48*uint64(len(data)) + 8192; got > limit {
		t.Fatalf("%d input bytes allocated %d bytes", len(data), got)
	}
	if err != nil {
		if !reflect.DeepEqual(p, Pod{}) {
			t.Fatalf("pod filled in on error %v: %+v", err, p)
		}
		return
	}
	for i := range data {
		data[i] ^= 0xff
	}
	defer copy(data, keep)
	var again Pod
	if err := UnmarshalPodProto(keep, &again); err != nil {
		t.Fatalf("decoded once, then: %v", err)
	}
	if !reflect.DeepEqual(p, again) {
		t.Fatalf("the pod changed with its input:\n%#v\nwant\n%#v", p, again)
	}
}
