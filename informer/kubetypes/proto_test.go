package kubetypes

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// The protobuf files in testdata are what the Kubernetes serializers
// encode, each next to its JSON (the e2e module's TestKubetypesProtoFiles
// writes and checks them): pod-full (every field of Pod and many others),
// pod-minimal, podlist3 (three pods, continue and resourceVersion),
// status-gone (410 Expired), watch-added and watch-bookmark (one watch
// event each, as one frame without its length) and watch-stream (six
// framed events: ADDED twice, MODIFIED, BOOKMARK, DELETED and ERROR).

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fullProtoPod is testdata/pod-full.* as a Pod: pod.json's pod with a
// second owner that is not the controller.
func fullProtoPod() *Pod {
	p := fullPod()
	p.OwnerReferences = append(p.OwnerReferences, OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: "cm",
		UID: "cm-uid", Controller: ptrTo(false)})
	return p
}

// emptyAsNil: containers and items have no omitempty in the API, so JSON
// has [] where protobuf has nothing; the only difference of the two.
func emptyAsNil(v any) {
	switch v := v.(type) {
	case *Pod:
		if len(v.Spec.Containers) == 0 {
			v.Spec.Containers = nil
		}
	case *PodList:
		if len(v.Items) == 0 {
			v.Items = nil
		}
		for i := range v.Items {
			emptyAsNil(&v.Items[i])
		}
	}
}

// TestProtoFiles: each protobuf file decodes to what its JSON twin does,
// and the full pod to every field of Pod.
func TestProtoFiles(t *testing.T) {
	t.Parallel()
	list := &PodList{}
	for _, tc := range []struct {
		name      string
		fromProto any
		fromJSON  any
		decode    func([]byte) error
	}{
		{"pod-full", &Pod{}, &Pod{}, nil},
		{"pod-minimal", &Pod{}, &Pod{}, nil},
		{"podlist3", list, &PodList{}, nil},
		{"status-gone", &Status{}, &Status{}, nil},
	} {
		var err error
		pb := readFile(t, tc.name+".pb")
		switch v := tc.fromProto.(type) {
		case *Pod:
			err = UnmarshalPodProto(pb, v)
		case *PodList:
			err = UnmarshalPodListProto(pb, v)
		case *Status:
			err = UnmarshalStatusProto(pb, v)
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if err := json.Unmarshal(readFile(t, tc.name+".json"), tc.fromJSON); err != nil {
			t.Fatal(err)
		}
		emptyAsNil(tc.fromProto)
		emptyAsNil(tc.fromJSON)
		if !reflect.DeepEqual(tc.fromProto, tc.fromJSON) {
			t.Errorf("%s: protobuf and JSON differ\nprotobuf %#v\nJSON     %#v", tc.name, tc.fromProto, tc.fromJSON)
		}
	}

	full := &Pod{}
	if err := UnmarshalPodProto(readFile(t, "pod-full.pb"), full); err != nil {
		t.Fatal(err)
	}
	// Every field is set (but the second owner's controller, false).
	one := *full
	one.OwnerReferences = one.OwnerReferences[:1]
	populated(t, reflect.ValueOf(one), "Pod")
	if want := fullProtoPod(); !reflect.DeepEqual(full, want) {
		t.Errorf("pod-full.pb\n%#v\nwant\n%#v", full, want)
	}

	if list.Kind != "PodList" || list.APIVersion != "v1" || list.ResourceVersion != "50" || list.Continue != "next-page" ||
		len(list.Items) != 3 || list.Items[0].Name != full.Name || list.Items[1].Name != "m" || list.Items[2].Name != "c" {
		t.Errorf("podlist3.pb: %+v", list)
	}
	var st Status
	if err := UnmarshalStatusProto(readFile(t, "status-gone.pb"), &st); err != nil {
		t.Fatal(err)
	}
	if want := (Status{TypeMeta: TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: "Failure",
		Message: "too old resource version: 1 (50)", Reason: StatusReasonExpired, Code: 410}); st != want {
		t.Errorf("status-gone.pb: %+v, want %+v", st, want)
	}
}

// TestProtoWatchEvents: one event (a frame), the initial-events-end
// bookmark, and a stream of framed events, each equal to its JSON.
func TestProtoWatchEvents(t *testing.T) {
	t.Parallel()
	typ, obj, err := UnmarshalWatchEventProto(readFile(t, "watch-added.pb"))
	if err != nil || typ != Added {
		t.Fatalf("watch-added.pb: %q, %v", typ, err)
	}
	var p Pod
	if err := UnmarshalPodProto(obj, &p); err != nil {
		t.Fatal(err)
	}
	if want := fullProtoPod(); !reflect.DeepEqual(&p, want) {
		t.Errorf("watch-added.pb object\n%#v\nwant\n%#v", &p, want)
	}

	typ, obj, err = UnmarshalWatchEventProto(readFile(t, "watch-bookmark.pb"))
	if err != nil || typ != Bookmark {
		t.Fatalf("watch-bookmark.pb: %q, %v", typ, err)
	}
	if err := UnmarshalPodProto(obj, &p); err != nil {
		t.Fatal(err)
	}
	if p.ResourceVersion != "77" || p.Annotations["k8s.io/initial-events-end"] != "true" || p.Name != "" {
		t.Errorf("bookmark: %+v", p)
	}

	stream := bytes.NewReader(readFile(t, "watch-stream.pb"))
	js := json.NewDecoder(bytes.NewReader(readFile(t, "watch-stream.json")))
	var types []string
	var buf []byte
	for {
		frame, err := ReadFrame(stream, buf, 1<<20)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		buf = frame
		typ, obj, err := UnmarshalWatchEventProto(frame)
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, typ)
		var je WatchEvent
		if err := js.Decode(&je); err != nil {
			t.Fatal(err)
		}
		var got, want any = &Pod{}, &Pod{}
		if typ == Error {
			got, want = &Status{}, &Status{}
			err = UnmarshalStatusProto(obj, got.(*Status))
		} else {
			err = UnmarshalPodProto(obj, got.(*Pod))
		}
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if err := json.Unmarshal(je.Object, want); err != nil {
			t.Fatal(err)
		}
		emptyAsNil(got)
		emptyAsNil(want)
		if je.Type != typ || !reflect.DeepEqual(got, want) {
			t.Errorf("%s event: protobuf %#v\nJSON %s %#v", typ, got, je.Type, want)
		}
	}
	if got := strings.Join(types, " "); got != "ADDED ADDED MODIFIED BOOKMARK DELETED ERROR" {
		t.Errorf("events %s", got)
	}
}

// envelope is data's object in a hand-made runtime.Unknown envelope.
func envelope(apiVersion, kind string, raw []byte, encoding, ctype string) []byte {
	var tm []byte
	tm = protowire.AppendTag(tm, 1, protowire.BytesType)
	tm = protowire.AppendString(tm, apiVersion)
	tm = protowire.AppendTag(tm, 2, protowire.BytesType)
	tm = protowire.AppendString(tm, kind)
	b := []byte(protoMagic)
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, tm)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendBytes(b, raw)
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendString(b, encoding)
	b = protowire.AppendTag(b, 4, protowire.BytesType)
	return protowire.AppendString(b, ctype)
}

// msg builds a message from fields: a string or []byte is a bytes field, a
// uint64 a varint, a uint32 a fixed32, an int64 a fixed64.
type kv struct {
	num protowire.Number
	val any
}

func msg(fields ...kv) []byte {
	var b []byte
	for _, f := range fields {
		switch v := f.val.(type) {
		case string:
			b = protowire.AppendTag(b, f.num, protowire.BytesType)
			b = protowire.AppendString(b, v)
		case []byte:
			b = protowire.AppendTag(b, f.num, protowire.BytesType)
			b = protowire.AppendBytes(b, v)
		case uint64:
			b = protowire.AppendTag(b, f.num, protowire.VarintType)
			b = protowire.AppendVarint(b, v)
		case uint32:
			b = protowire.AppendTag(b, f.num, protowire.Fixed32Type)
			b = protowire.AppendFixed32(b, v)
		case int64:
			b = protowire.AppendTag(b, f.num, protowire.Fixed64Type)
			b = protowire.AppendFixed64(b, uint64(v))
		default:
			panic(f.val)
		}
	}
	return b
}

// unknowns are fields of every wire type with numbers no message here
// reads, among them a bytes field that looks like a message.
func unknowns() []kv {
	return []kv{{1000, uint64(1 << 62)}, {1001, uint32(7)}, {1002, int64(-1)}, {1003, "x"},
		{1004, msg(kv{1, "not a field of ours"})}, {536870911, uint64(0)}}
}

func with(fields ...kv) []byte { return msg(append(append(unknowns(), fields...), unknowns()...)...) }

// TestProtoSkipsUnknownFields: a pod built by hand with unknown fields of
// every wire type before and after each field, at every level, repeated
// singular fields (the last one counts, messages merge, as in the
// generated decoders), and fields in any order.
func TestProtoSkipsUnknownFields(t *testing.T) {
	t.Parallel()
	tm := with(kv{1, uint64(1767323045)}, kv{2, uint64(999)}) // nanos are dropped, as by Kubernetes
	meta := with(kv{1, "first"}, kv{3, "ns"}, kv{1, "name"}, kv{5, "uid"}, kv{6, "7"}, kv{8, tm}, kv{9, tm},
		kv{11, with(kv{1, "k"}, kv{2, "v"})}, kv{11, with(kv{2, "only-value"})}, kv{12, with(kv{1, "a"})},
		kv{13, with(kv{5, "apps/v1"}, kv{1, "ReplicaSet"}, kv{3, "rs"}, kv{4, "rs-uid"}, kv{6, uint64(2)})})
	container := with(kv{24, "Always"}, kv{2, "img"}, kv{1, "c"})
	spec := with(kv{20, container}, kv{2, container}, kv{10, "node"}, kv{11, uint64(1)}, kv{16, "host"}, kv{2, msg()})
	lastState := with(kv{3, with(kv{7, "old"})})
	cstatus := with(kv{1, "c"}, kv{3, lastState}, kv{5, uint64(0xffffffffffffffff)}, kv{7, "iid"}, kv{8, "cid"})
	status := with(kv{1, "Running"}, kv{6, "10.0.0.1"}, kv{12, with(kv{1, "10.0.0.1"})}, kv{12, with(kv{1, "fd00::1"})},
		kv{7, tm}, kv{10, cstatus}, kv{8, cstatus})
	raw := with(kv{3, status}, kv{1, meta}, kv{2, spec}, kv{2, with(kv{16, "host2"})})

	var got Pod
	if err := UnmarshalPodProto(envelope("v1", "Pod", raw, "", ContentTypeProtobuf), &got); err != nil {
		t.Fatal(err)
	}
	at := Time{time.Unix(1767323045, 0).Local()}
	cs := ContainerStatus{Name: "c", ContainerID: "cid", ImageID: "iid", RestartCount: -1,
		LastTerminationState: ContainerState{Terminated: &ContainerStateTerminated{ContainerID: "old"}}}
	want := Pod{TypeMeta: TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: ObjectMeta{Name: "name", Namespace: "ns", UID: "uid", ResourceVersion: "7",
			CreationTimestamp: at, DeletionTimestamp: &at,
			Labels: map[string]string{"k": "v", "": "only-value"}, Annotations: map[string]string{"a": ""},
			OwnerReferences: []OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: "rs-uid", Controller: ptrTo(true)}}},
		Spec: PodSpec{InitContainers: []Container{{Name: "c", Image: "img", RestartPolicy: "Always"}},
			Containers: []Container{{Name: "c", Image: "img", RestartPolicy: "Always"}, {}},
			NodeName:   "node", HostNetwork: true, Hostname: "host2"},
		Status: PodStatus{Phase: PodRunning, PodIP: "10.0.0.1", PodIPs: []PodIP{{"10.0.0.1"}, {"fd00::1"}}, StartTime: &at,
			InitContainerStatuses: []ContainerStatus{cs}, ContainerStatuses: []ContainerStatus{cs}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("\n%#v\nwant\n%#v", got, want)
	}
	if !got.CreationTimestamp.Equal(at.Time) || got.CreationTimestamp.Nanosecond() != 0 {
		t.Errorf("creationTimestamp %v", got.CreationTimestamp)
	}
}

// TestProtoErrors: what is not a pod in the Kubernetes protobuf encoding
// is an error saying what is wrong, never a panic or a partial success.
func TestProtoErrors(t *testing.T) {
	t.Parallel()
	pod := readFile(t, "pod-full.pb")
	raw := msg(kv{1, msg(kv{1, "n"})})
	for _, tc := range []struct {
		name, want string
		data       []byte
	}{
		{"empty", "magic", nil},
		{"JSON", "magic", readFile(t, "pod-full.json")},
		{"magic only", `kind ""`, []byte(protoMagic)},
		{"wrong kind", `kind "Status"`, readFile(t, "status-gone.pb")},
		{"list as pod", `kind "PodList"`, readFile(t, "podlist3.pb")},
		{"content encoding", `content encoding "gzip"`, envelope("v1", "Pod", raw, "gzip", "")},
		{"content type", `"application/json"`, envelope("v1", "Pod", raw, "", "application/json")},
		{"group", "group", envelope("v1", "Pod", append(bytes.Clone(raw), 0x0b, 0x0c), "", "")},
		{"bad wire type", "wire type", envelope("v1", "Pod", append(bytes.Clone(raw), 0x0f), "", "")},
		{"name as varint", "name (field 1): wire type 0, want 2", envelope("v1", "Pod", msg(kv{1, msg(kv{1, uint64(1)})}), "", "")},
		{"metadata as fixed32", "metadata (field 1): wire type 5", envelope("v1", "Pod", msg(kv{1, uint32(1)}), "", "")},
		{"hostNetwork as bytes", "hostNetwork", envelope("v1", "Pod", msg(kv{2, msg(kv{11, "true"})}), "", "")},
		{"length past the end", "field 2: unexpected EOF", envelope("v1", "Pod", []byte{0x12, 0x05, 0x0a, 0x7f, 'x'}, "", "")},
		{"nested length past the end", "spec: field 1: unexpected EOF", envelope("v1", "Pod", []byte{0x12, 0x03, 0x0a, 0x7f, 'x'}, "", "")},
		{"no raw", "no object", []byte(protoMagic + "\x0a\x09\x0a\x02v1\x12\x03Pod")},
		{"huge length", "", envelope("v1", "Pod", []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}, "", "")},
		{"varint too long", "", envelope("v1", "Pod", append([]byte{0x58}, bytes.Repeat([]byte{0xff}, 11)...), "", "")},
		{"field number 0", "tag", envelope("v1", "Pod", []byte{0x00, 0x00}, "", "")},
		{"truncated", "", pod[:len(pod)/2]},
	} {
		var p Pod
		err := UnmarshalPodProto(tc.data, &p)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "kubetypes: Pod protobuf") {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
		if !reflect.DeepEqual(p, Pod{}) {
			t.Errorf("%s: pod filled in on error: %+v", tc.name, p)
		}
	}

	// Every cut of a pod inside its object is an error (the envelope
	// ends with two empty strings, 4 bytes, after which a cut is whole).
	if !bytes.HasSuffix(pod, []byte{0x1a, 0x00, 0x22, 0x00}) {
		t.Fatalf("envelope ends with % x", pod[len(pod)-4:])
	}
	for n := range len(pod) - 4 {
		var p Pod
		if err := UnmarshalPodProto(pod[:n], &p); err == nil {
			t.Fatalf("pod cut at %d of %d decoded", n, len(pod))
		}
	}

	for _, tc := range []struct {
		name, want string
		data       []byte
	}{
		{"no type", "no type", msg(kv{2, msg(kv{1, "x"})})},
		{"no object", `"ADDED" event without an object`, msg(kv{1, "ADDED"})},
		{"empty object", "without an object", msg(kv{1, "ADDED"}, kv{2, msg(kv{1, ""})})},
		{"type as varint", "type (field 1)", msg(kv{1, uint64(1)})},
		{"raw as varint", "object.raw", msg(kv{1, "ADDED"}, kv{2, msg(kv{1, uint64(1)})})},
		{"enveloped, wrong kind", `kind "Pod"`, readFile(t, "pod-full.pb")},
		{"truncated", "", readFile(t, "watch-added.pb")[:100]},
	} {
		if typ, obj, err := UnmarshalWatchEventProto(tc.data); err == nil || !strings.Contains(err.Error(), tc.want) ||
			typ != "" || obj != nil {
			t.Errorf("watch event %s: %q %d bytes %v, want an error with %q", tc.name, typ, len(obj), err, tc.want)
		}
	}

	var l PodList
	if err := UnmarshalPodListProto(envelope("v1", "PodList", msg(kv{2, msg(kv{1, uint64(3)})}), "", ""), &l); err == nil ||
		!strings.Contains(err.Error(), "items[0]: metadata") {
		t.Errorf("bad item: %v", err)
	}
	var s Status
	if err := UnmarshalStatusProto(envelope("v1", "Status", msg(kv{6, "410"}), "", ""), &s); err == nil ||
		!strings.Contains(err.Error(), "code (field 6)") {
		t.Errorf("bad code: %v", err)
	}
}

// TestProtoWatchEventEnveloped: a watch event in an envelope of its own
// (the API server sends it bare) is read too.
func TestProtoWatchEventEnveloped(t *testing.T) {
	t.Parallel()
	bare := readFile(t, "watch-bookmark.pb")
	typ, obj, err := UnmarshalWatchEventProto(envelope("v1", "WatchEvent", bare, "", ""))
	wtyp, wobj, werr := UnmarshalWatchEventProto(bare)
	if err != nil || werr != nil || typ != wtyp || typ != Bookmark || !bytes.Equal(obj, wobj) {
		t.Errorf("enveloped %q %v, bare %q %v", typ, err, wtyp, werr)
	}
	if !bytes.HasPrefix(obj, []byte(protoMagic)) {
		t.Errorf("the object of an event is not in an envelope: % x", obj[:8])
	}
}

// TestProtoNoAliasing: nothing decoded shares memory with the input: after
// the input is overwritten, the pod is still what it decoded to.
func TestProtoNoAliasing(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"pod-full.pb", "podlist3.pb", "status-gone.pb", "watch-added.pb"} {
		data := readFile(t, name)
		keep := bytes.Clone(data)
		var got, want any
		switch name {
		case "podlist3.pb":
			l, wl := &PodList{}, &PodList{}
			got, want = l, wl
			if err := errors.Join(UnmarshalPodListProto(data, l), UnmarshalPodListProto(keep, wl)); err != nil {
				t.Fatal(err)
			}
		case "status-gone.pb":
			s, ws := &Status{}, &Status{}
			got, want = s, ws
			if err := errors.Join(UnmarshalStatusProto(data, s), UnmarshalStatusProto(keep, ws)); err != nil {
				t.Fatal(err)
			}
		case "watch-added.pb":
			typ, _, err := UnmarshalWatchEventProto(data)
			wtyp, _, werr := UnmarshalWatchEventProto(keep)
			got, want = &typ, &wtyp
			if err := errors.Join(err, werr); err != nil {
				t.Fatal(err)
			}
		default:
			p, wp := &Pod{}, &Pod{}
			got, want = p, wp
			if err := errors.Join(UnmarshalPodProto(data, p), UnmarshalPodProto(keep, wp)); err != nil {
				t.Fatal(err)
			}
		}
		for i := range data {
			data[i] = 'X'
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: the decoded value changed with its input:\n%#v\nwant\n%#v", name, got, want)
		}
	}
}

// allocated is the bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestProtoAllocationBound: the worst input per byte (many empty entries of
// the largest repeated type, each two bytes) allocates what its values
// take, a bounded multiple of the input, sized once: no slice grows by
// appending, and a length larger than what is left is refused before
// anything is allocated for it.
func TestProtoAllocationBound(t *testing.T) {
	const n = 10000
	empties := func(num protowire.Number) []byte {
		var b []byte
		for range n {
			b = protowire.AppendTag(b, num, protowire.BytesType)
			b = protowire.AppendVarint(b, 0)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		data []byte
		per  uint64 // bytes per input byte, at most
		dec  func([]byte) error
	}{
		// An OwnerReference is 72 bytes (80 with the allocator's size class).
		{"owner references", envelope("v1", "Pod", msg(kv{1, empties(13)}), "", ""), 48, nil},
		{"container statuses", envelope("v1", "Pod", msg(kv{3, empties(8)}), "", ""), 40, nil},
		{"containers", envelope("v1", "Pod", msg(kv{2, empties(2)}), "", ""), 32, nil},
		// The map is sized for every entry, here all the same.
		{"labels", envelope("v1", "Pod", msg(kv{1, empties(11)}), "", ""), 40, nil},
		// A Pod is about 370 bytes: a list of empty items is the worst there is
		// (JSON's {"items":[{},{}...]} is about as bad per byte).
		{"list items", envelope("v1", "PodList", empties(2), "", ""), 200, func(b []byte) error {
			return UnmarshalPodListProto(b, &PodList{})
		}},
		{"huge length", envelope("v1", "Pod", []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}, "", ""), 0, nil},
	} {
		dec := tc.dec
		if dec == nil {
			dec = func(b []byte) error { return UnmarshalPodProto(b, &Pod{}) }
		}
		_ = dec(tc.data) // warm up
		got := allocated(func() { _ = dec(tc.data) })
		if limit := tc.per*uint64(len(tc.data)) + 4096; got > limit {
			t.Errorf("%s: %d input bytes allocate %d bytes (%.1f per byte), more than %d", tc.name, len(tc.data),
				got, float64(got)/float64(len(tc.data)), limit)
		}
		t.Logf("%s: %d bytes for %d input bytes (%.1f per byte)", tc.name, got, len(tc.data), float64(got)/float64(len(tc.data)))
	}
}

// TestReadFrame: the framing of apimachinery's LengthDelimitedFramer, a
// reused buffer, and the cap, over which nothing but the length is read.
func TestReadFrame(t *testing.T) {
	t.Parallel()
	frame := func(b []byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
	}
	stream := bytes.NewReader(bytes.Join([][]byte{frame([]byte("one")), frame(nil), frame([]byte("three"))}, nil))
	buf := make([]byte, 0, 4)
	got, err := ReadFrame(stream, buf, 8)
	if err != nil || string(got) != "one" || &got[0] != &buf[:1][0] {
		t.Fatalf("%q %v (in buf: %v)", got, err, err == nil && &got[0] == &buf[:1][0])
	}
	if got, err = ReadFrame(stream, got, 8); err != nil || len(got) != 0 {
		t.Fatalf("empty frame: %q %v", got, err)
	}
	if got, err = ReadFrame(stream, got, 8); err != nil || string(got) != "three" {
		t.Fatalf("%q %v", got, err)
	}
	if _, err = ReadFrame(stream, got, 8); err != io.EOF {
		t.Fatalf("end: %v, want EOF", err)
	}

	big := bytes.NewReader(append(frame(bytes.Repeat([]byte("x"), 9)), frame(nil)...))
	if _, err = ReadFrame(big, nil, 8); !errors.Is(err, ErrFrameTooLarge) || !strings.Contains(err.Error(), "9 bytes, at most 8") {
		t.Fatalf("large frame: %v", err)
	}
	if left := big.Len(); left != 9+4 {
		t.Errorf("after a large frame %d bytes are left, want its 9 and the next frame's 4", left)
	}
	if _, err = ReadFrame(bytes.NewReader(frame([]byte("x"))), nil, -1); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("negative cap: %v", err)
	}
	huge := bytes.NewReader([]byte{0xff, 0xff, 0xff, 0xff})
	if _, err = ReadFrame(huge, nil, 1<<20); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("4 GiB frame: %v", err)
	}

	for _, cut := range [][]byte{{0, 0}, {0, 0, 0, 3, 'a'}} {
		if _, err := ReadFrame(bytes.NewReader(cut), nil, 8); err != io.ErrUnexpectedEOF {
			t.Errorf("% x: %v, want unexpected EOF", cut, err)
		}
	}
}

// BenchmarkPodDecode: the full pod from protobuf (this decoder) and from
// JSON (encoding/json, the other way to read it).
func BenchmarkPodDecode(b *testing.B) {
	pb, js := readFile(b, "pod-full.pb"), readFile(b, "pod-full.json")
	b.Run("proto", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(pb)))
		for b.Loop() {
			var p Pod
			if err := UnmarshalPodProto(pb, &p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(js)))
		for b.Loop() {
			var p Pod
			if err := json.Unmarshal(js, &p); err != nil {
				b.Fatal(err)
			}
		}
	})
}
