package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	restwatch "k8s.io/client-go/rest/watch"
	"k8s.io/utils/ptr"

	"github.com/podstamp/podstamp/informer/kubetypes"
)

// kubeCodecs encodes core/v1 objects as the API server does: its codec
// factory over a scheme with core/v1 (and meta/v1's Status and WatchEvent
// in it), each object encoded for version v1.
type kubeCodecs struct {
	proto, json runtime.SerializerInfo
	codecs      serializer.CodecFactory
}

// newKubeCodecs: with streaming, lists are encoded an item at a time, as
// the API server's groups do (NewDefaultAPIGroupInfo).
func newKubeCodecs(t testing.TB, streaming bool) *kubeCodecs {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	var opts []serializer.CodecFactoryOptionsMutator
	if streaming {
		opts = append(opts, serializer.WithStreamingCollectionEncodingToJSON(), serializer.WithStreamingCollectionEncodingToProtobuf())
	}
	c := &kubeCodecs{codecs: serializer.NewCodecFactory(scheme, opts...)}
	var ok bool
	if c.proto, ok = runtime.SerializerInfoForMediaType(c.codecs.SupportedMediaTypes(), runtime.ContentTypeProtobuf); !ok {
		t.Fatal("no protobuf serializer")
	}
	if c.json, ok = runtime.SerializerInfoForMediaType(c.codecs.SupportedMediaTypes(), runtime.ContentTypeJSON); !ok {
		t.Fatal("no JSON serializer")
	}
	return c
}

// encode is obj as the API server answers a GET or LIST in the serializer's
// media type.
func (c *kubeCodecs) encode(t testing.TB, info runtime.SerializerInfo, obj runtime.Object) []byte {
	t.Helper()
	b, err := runtime.Encode(c.codecs.EncoderForVersion(info.Serializer, corev1.SchemeGroupVersion), obj)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// watchStream is events as the API server writes a watch in the
// serializer's media type: the event with the stream serializer, framed
// (length-delimited for protobuf, newline-delimited for JSON), the object
// inside it with the serializer itself.
func (c *kubeCodecs) watchStream(t testing.TB, info runtime.SerializerInfo, events ...watch.Event) []byte {
	t.Helper()
	var out bytes.Buffer
	stream := info.StreamSerializer
	enc := restwatch.NewEncoder(
		streaming.NewEncoder(stream.Framer.NewFrameWriter(&out), c.codecs.EncoderForVersion(stream.Serializer, corev1.SchemeGroupVersion)),
		c.codecs.EncoderForVersion(info.Serializer, corev1.SchemeGroupVersion))
	for i := range events {
		if err := enc.Encode(&events[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out.Bytes()
}

// protoFullPod is fullCorePod with more of what podstamp ignores
// (managed fields, tolerations, env, more conditions and volumes) and a
// second owner that is not the controller.
func protoFullPod() *corev1.Pod {
	p := fullCorePod()
	p.OwnerReferences = append(p.OwnerReferences, metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap",
		Name: "cm", UID: "cm-uid", Controller: ptr.To(false), BlockOwnerDeletion: ptr.To(true)})
	p.Generation = 3
	p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate,
		APIVersion: "v1", Time: &metav1.Time{Time: started}, FieldsType: "FieldsV1",
		FieldsV1: metav1.NewFieldsV1(`{"f:status":{"f:phase":{}}}`), Subresource: "status"}}
	p.Spec.Tolerations = []corev1.Toleration{{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists,
		Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)}}
	p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}}}
	p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](30)
	p.Spec.Priority = ptr.To[int32](-5)
	p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "token", VolumeSource: corev1.VolumeSource{
		Projected: &corev1.ProjectedVolumeSource{DefaultMode: ptr.To[int32](0o644)}}})
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodScheduled,
		Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(created)})
	p.Status.QOSClass = corev1.PodQOSBurstable
	p.Status.HostIPs = []corev1.HostIP{{IP: "192.0.2.1"}}
	return p
}

// minimalCorePod has a name and one container, nothing else.
func minimalCorePod() *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "m", Namespace: "default"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}}}}
}

// bookmarkPod is the object of a BOOKMARK event that ends the initial
// events of a watch.
func bookmarkPod() *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "77",
		Annotations: map[string]string{"k8s.io/initial-events-end": "true"}}}
}

func goneStatus() *metav1.Status {
	return &metav1.Status{Status: metav1.StatusFailure, Message: "too old resource version: 1 (50)",
		Reason: metav1.StatusReasonExpired, Code: 410,
		Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Message: "x"}}}}
}

func protoPodList() *corev1.PodList {
	a, b, c := protoFullPod(), minimalCorePod(), protoFullPod()
	a.TypeMeta, c.TypeMeta = metav1.TypeMeta{}, metav1.TypeMeta{}
	c.Name, c.UID, c.Status.Phase, c.DeletionTimestamp = "c", "c-uid", corev1.PodFailed, nil
	return &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: "50", Continue: "next-page",
		RemainingItemCount: ptr.To[int64](7)}, Items: []corev1.Pod{*a, *b, *c}}
}

// protoStreamEvents are the events of testdata/watch-stream.*.
func protoStreamEvents() []watch.Event {
	mod := protoFullPod()
	mod.ResourceVersion = "43"
	return []watch.Event{
		{Type: watch.Added, Object: minimalCorePod()},
		{Type: watch.Added, Object: protoFullPod()},
		{Type: watch.Modified, Object: mod},
		{Type: watch.Bookmark, Object: bookmarkPod()},
		{Type: watch.Deleted, Object: minimalCorePod()},
		{Type: watch.Error, Object: goneStatus()},
	}
}

// TestKubetypesProtoFiles writes (with -update-contract) or checks the
// protobuf test files of package kubetypes, each with its JSON twin, as the
// real Kubernetes serializers encode them: the unit tests of kubetypes
// decode both and compare.
func TestKubetypesProtoFiles(t *testing.T) {
	c := newKubeCodecs(t, true)
	files := map[string][]byte{}
	for name, obj := range map[string]runtime.Object{
		"pod-full":    protoFullPod(),
		"pod-minimal": minimalCorePod(),
		"podlist3":    protoPodList(),
		"status-gone": goneStatus(),
	} {
		files[name+".pb"] = c.encode(t, c.proto, obj)
		files[name+".json"] = c.encode(t, c.json, obj)
	}
	for name, ev := range map[string]watch.Event{
		"watch-added":    {Type: watch.Added, Object: protoFullPod()},
		"watch-bookmark": {Type: watch.Bookmark, Object: bookmarkPod()},
	} {
		// One event: the frame without its length.
		files[name+".pb"] = c.watchStream(t, c.proto, ev)[4:]
		files[name+".json"] = c.watchStream(t, c.json, ev)
	}
	files["watch-stream.pb"] = c.watchStream(t, c.proto, protoStreamEvents()...)
	files["watch-stream.json"] = c.watchStream(t, c.json, protoStreamEvents()...)

	for name, want := range files {
		checkContractFile(t, filepath.Join("../informer/kubetypes/testdata", name), want, "k8s.io/apimachinery", false)
	}
}

// normalizePod makes the one difference of the two encodings the API
// server really sends disappear: spec.containers has no omitempty, so an
// empty list is [] in JSON (an empty slice) but absent in protobuf (nil).
func normalizePod(p *kubetypes.Pod) {
	if len(p.Spec.Containers) == 0 {
		p.Spec.Containers = nil
	}
}

// normalizeList: items, like containers, is [] in JSON when empty.
func normalizeList(l *kubetypes.PodList) {
	if len(l.Items) == 0 {
		l.Items = nil
	}
	for i := range l.Items {
		normalizePod(&l.Items[i])
	}
}

// TestKubetypesProtoDifferential: pods (random, with a fixed seed, and edge
// cases) encoded by the real Kubernetes serializers decode into the same
// kubetypes values from protobuf (kubetypes.UnmarshalPodProto) as from JSON
// (encoding/json); likewise lists, Status and watch streams.
func TestKubetypesProtoDifferential(t *testing.T) {
	c, plain := newKubeCodecs(t, true), newKubeCodecs(t, false)
	rng := rand.New(rand.NewPCG(20260101, 7))
	pods := edgeCorePods()
	for range 200 {
		pods = append(pods, randomCorePod(rng))
	}

	decodePod := func(t *testing.T, obj runtime.Object) (fromProto, fromJSON *kubetypes.Pod) {
		t.Helper()
		fromProto, fromJSON = &kubetypes.Pod{}, &kubetypes.Pod{}
		pb := c.encode(t, c.proto, obj)
		if err := kubetypes.UnmarshalPodProto(pb, fromProto); err != nil {
			t.Fatalf("protobuf: %v", err)
		}
		if err := json.Unmarshal(c.encode(t, c.json, obj), fromJSON); err != nil {
			t.Fatalf("JSON: %v", err)
		}
		normalizePod(fromProto)
		normalizePod(fromJSON)
		return fromProto, fromJSON
	}

	t.Run("Pod", func(t *testing.T) {
		for i, p := range pods {
			got, want := decodePod(t, p)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("pod %d (%s): protobuf and JSON differ\nprotobuf %#v\nJSON     %#v", i, p.Name, got, want)
			}
		}
	})

	t.Run("PodList", func(t *testing.T) {
		lists := []*corev1.PodList{{}, {ListMeta: metav1.ListMeta{ResourceVersion: "1"}, Items: []corev1.Pod{}}}
		for i := 0; i < len(pods); {
			n := rng.IntN(6)
			l := &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: fmt.Sprint(rng.IntN(1e6)), Continue: randString(rng)}}
			for ; n > 0 && i < len(pods); n-- {
				// The API server's list items carry no kind, in JSON as in
				// protobuf (where a Pod has no field for it).
				item := *pods[i]
				item.TypeMeta = metav1.TypeMeta{}
				l.Items = append(l.Items, item)
				i++
			}
			lists = append(lists, l)
		}
		for i, l := range lists {
			got, want := &kubetypes.PodList{}, &kubetypes.PodList{}
			pb := c.encode(t, c.proto, l)
			if err := kubetypes.UnmarshalPodListProto(pb, got); err != nil {
				t.Fatalf("list %d: %v", i, err)
			}
			// Encoded an item at a time or at once, a list is the same.
			if whole := plain.encode(t, plain.proto, l); !bytes.Equal(pb, whole) {
				t.Errorf("list %d: %d bytes encoded an item at a time, %d at once", i, len(pb), len(whole))
			}
			if err := json.Unmarshal(c.encode(t, c.json, l), want); err != nil {
				t.Fatal(err)
			}
			normalizeList(got)
			normalizeList(want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("list %d: protobuf and JSON differ\nprotobuf %#v\nJSON     %#v", i, got, want)
			}
		}
	})

	t.Run("Status", func(t *testing.T) {
		statuses := []*metav1.Status{{}, goneStatus(), {Status: metav1.StatusFailure, Code: -1, Reason: "", Message: "ü\x00"}}
		for range 50 {
			statuses = append(statuses, &metav1.Status{Status: randString(rng), Message: randString(rng),
				Reason: metav1.StatusReason(randString(rng)), Code: rng.Int32N(600),
				ListMeta: metav1.ListMeta{ResourceVersion: randString(rng)},
				Details:  &metav1.StatusDetails{Name: randString(rng), RetryAfterSeconds: rng.Int32()}})
		}
		for i, s := range statuses {
			got, want := &kubetypes.Status{}, &kubetypes.Status{}
			if err := kubetypes.UnmarshalStatusProto(c.encode(t, c.proto, s), got); err != nil {
				t.Fatalf("status %d: %v", i, err)
			}
			if err := json.Unmarshal(c.encode(t, c.json, s), want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("status %d: protobuf and JSON differ\nprotobuf %#v\nJSON     %#v", i, got, want)
			}
		}
	})

	t.Run("Watch", func(t *testing.T) {
		types := []watch.EventType{watch.Added, watch.Modified, watch.Deleted, watch.Bookmark}
		events := protoStreamEvents()
		for _, p := range pods {
			events = append(events, watch.Event{Type: types[rng.IntN(len(types))], Object: p})
		}
		pbStream := bytes.NewReader(c.watchStream(t, c.proto, events...))
		jsonStream := json.NewDecoder(bytes.NewReader(c.watchStream(t, c.json, events...)))
		var buf []byte
		for i := 0; ; i++ {
			frame, err := kubetypes.ReadFrame(pbStream, buf, 1<<20)
			if errors.Is(err, io.EOF) {
				if i != len(events) {
					t.Fatalf("%d frames, want %d", i, len(events))
				}
				break
			}
			if err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
			buf = frame
			typ, obj, err := kubetypes.UnmarshalWatchEventProto(frame)
			if err != nil {
				t.Fatalf("event %d: %v", i, err)
			}
			var je kubetypes.WatchEvent
			if err := jsonStream.Decode(&je); err != nil {
				t.Fatal(err)
			}
			if typ != je.Type || typ != string(events[i].Type) {
				t.Fatalf("event %d: type %q from protobuf, %q from JSON, want %q", i, typ, je.Type, events[i].Type)
			}
			var got, want any
			if typ == kubetypes.Error {
				s, js := &kubetypes.Status{}, &kubetypes.Status{}
				err, got, want = kubetypes.UnmarshalStatusProto(obj, s), s, js
				if jerr := json.Unmarshal(je.Object, js); jerr != nil {
					t.Fatal(jerr)
				}
			} else {
				p, jp := &kubetypes.Pod{}, &kubetypes.Pod{}
				err, got, want = kubetypes.UnmarshalPodProto(obj, p), p, jp
				if jerr := json.Unmarshal(je.Object, jp); jerr != nil {
					t.Fatal(jerr)
				}
				normalizePod(p)
				normalizePod(jp)
			}
			if err != nil {
				t.Fatalf("event %d object: %v", i, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("event %d: protobuf and JSON differ\nprotobuf %#v\nJSON     %#v", i, got, want)
			}
		}
	})
}

// edgeCorePods are pods at the edges of the encodings: empty strings, nil
// and empty maps and slices, zero and non-nil zero times, times with
// nanoseconds (which both encodings drop), empty map keys and values.
func edgeCorePods() []*corev1.Pod {
	nanos := time.Date(2026, 3, 4, 5, 6, 7, 891011121, time.UTC)
	return []*corev1.Pod{
		{},
		minimalCorePod(),
		protoFullPod(),
		bookmarkPod(),
		{ObjectMeta: metav1.ObjectMeta{Name: "", Labels: map[string]string{}, Annotations: map[string]string{},
			OwnerReferences: []metav1.OwnerReference{}, DeletionTimestamp: &metav1.Time{}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{}, InitContainers: []corev1.Container{}},
			Status: corev1.PodStatus{PodIPs: []corev1.PodIP{}, StartTime: &metav1.Time{},
				ContainerStatuses: []corev1.ContainerStatus{}, InitContainerStatuses: []corev1.ContainerStatus{}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "nanos", CreationTimestamp: metav1.NewTime(nanos),
			DeletionTimestamp: &metav1.Time{Time: nanos.Add(time.Hour)},
			Labels:            map[string]string{"": "", "k": ""}, Annotations: map[string]string{"": "v"},
			OwnerReferences: []metav1.OwnerReference{{}, {Controller: ptr.To(false)}, {Controller: ptr.To(true)}}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{}, {RestartPolicy: ptr.To(corev1.ContainerRestartPolicy(""))}}},
			Status: corev1.PodStatus{StartTime: &metav1.Time{Time: nanos}, PodIPs: []corev1.PodIP{{}, {IP: "::1"}},
				ContainerStatuses: []corev1.ContainerStatus{{}, {RestartCount: -3,
					LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{}}}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "epoch", CreationTimestamp: metav1.NewTime(time.Unix(0, 0)),
			DeletionTimestamp: &metav1.Time{Time: time.Unix(-86400*365, 5)}}},
		{ObjectMeta: metav1.ObjectMeta{Name: strings.Repeat("n", 300), Annotations: map[string]string{
			"big": strings.Repeat("ä", 70000)}}},
	}
}

// randString is empty, a word, or a string of arbitrary runes.
func randString(rng *rand.Rand) string {
	switch rng.IntN(4) {
	case 0:
		return ""
	case 1:
		return fmt.Sprintf("w%d", rng.IntN(1000))
	}
	r := make([]rune, rng.IntN(40))
	for i := range r {
		switch rng.IntN(3) {
		case 0:
			r[i] = rune(rng.IntN(128))
		case 1:
			r[i] = rune(0x80 + rng.IntN(0xd000-0x80))
		default:
			r[i] = rune(0xe000 + rng.IntN(0x10ffff-0xe000))
		}
	}
	return string(r)
}

func randTime(rng *rand.Rand) metav1.Time {
	if rng.IntN(4) == 0 {
		return metav1.Time{}
	}
	return metav1.NewTime(time.Unix(rng.Int64N(4e9)-1e9, rng.Int64N(1e9)))
}

func randTimePtr(rng *rand.Rand) *metav1.Time {
	switch rng.IntN(3) {
	case 0:
		return nil
	case 1:
		return &metav1.Time{}
	}
	t := randTime(rng)
	return &t
}

func randMap(rng *rand.Rand) map[string]string {
	switch n := rng.IntN(6); n {
	case 0:
		return nil
	default:
		m := make(map[string]string, n-1)
		for range n - 1 {
			m[randString(rng)] = randString(rng)
		}
		return m
	}
}

func randBoolPtr(rng *rand.Rand) *bool {
	if rng.IntN(3) == 0 {
		return nil
	}
	return ptr.To(rng.IntN(2) == 0)
}

func randContainers(rng *rand.Rand) []corev1.Container {
	n := rng.IntN(5) - 1
	if n < 0 {
		return nil
	}
	cs := make([]corev1.Container, n)
	for i := range cs {
		cs[i] = corev1.Container{Name: randString(rng), Image: randString(rng),
			Args: []string{randString(rng)}, Env: []corev1.EnvVar{{Name: randString(rng), Value: randString(rng)}},
			Ports: []corev1.ContainerPort{{ContainerPort: rng.Int32N(65536), Protocol: corev1.ProtocolTCP}}}
		switch rng.IntN(4) {
		case 1:
			cs[i].RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
		case 2:
			cs[i].RestartPolicy = ptr.To(corev1.ContainerRestartPolicy(randString(rng)))
		}
		if rng.IntN(2) == 0 {
			cs[i].Resources.Requests = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(fmt.Sprintf("%dMi", rng.IntN(4096)))}
		}
	}
	return cs
}

func randStatuses(rng *rand.Rand) []corev1.ContainerStatus {
	n := rng.IntN(5) - 1
	if n < 0 {
		return nil
	}
	ss := make([]corev1.ContainerStatus, n)
	for i := range ss {
		ss[i] = corev1.ContainerStatus{Name: randString(rng), ContainerID: randString(rng), ImageID: randString(rng),
			Image: randString(rng), Ready: rng.IntN(2) == 0, RestartCount: rng.Int32() - 1<<30, Started: randBoolPtr(rng)}
		if rng.IntN(2) == 0 {
			ss[i].LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ContainerID: randString(rng),
				ExitCode: rng.Int32(), Reason: randString(rng), FinishedAt: randTime(rng)}
		}
		if rng.IntN(2) == 0 {
			ss[i].State.Running = &corev1.ContainerStateRunning{StartedAt: randTime(rng)}
		} else {
			ss[i].State.Waiting = &corev1.ContainerStateWaiting{Reason: randString(rng)}
		}
	}
	return ss
}

// randomCorePod sets each field kubetypes.Pod has, or not, to a random
// value, and some it does not have.
func randomCorePod(rng *rand.Rand) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: randString(rng), Namespace: randString(rng), UID: types.UID("u" + randString(rng)), GenerateName: randString(rng),
		ResourceVersion: fmt.Sprint(rng.Uint64()), Generation: rng.Int64(),
		CreationTimestamp: randTime(rng), DeletionTimestamp: randTimePtr(rng),
		Labels: randMap(rng), Annotations: randMap(rng), Finalizers: []string{randString(rng)},
	}}
	for range rng.IntN(4) {
		p.OwnerReferences = append(p.OwnerReferences, metav1.OwnerReference{APIVersion: randString(rng),
			Kind: randString(rng), Name: randString(rng), UID: types.UID("o" + randString(rng)),
			Controller: randBoolPtr(rng), BlockOwnerDeletion: randBoolPtr(rng)})
	}
	if rng.IntN(2) == 0 {
		p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: randString(rng), Time: randTimePtr(rng),
			FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(`{"f:x":{}}`)}}
	}
	p.Spec = corev1.PodSpec{InitContainers: randContainers(rng), Containers: randContainers(rng),
		NodeName: randString(rng), HostNetwork: rng.IntN(2) == 0, Hostname: randString(rng),
		ServiceAccountName: randString(rng), NodeSelector: randMap(rng),
		Tolerations: []corev1.Toleration{{Key: randString(rng), TolerationSeconds: ptr.To(rng.Int64())}}}
	if rng.IntN(2) == 0 {
		p.Spec.Volumes = []corev1.Volume{{Name: randString(rng), VolumeSource: corev1.VolumeSource{
			ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: randString(rng)}}}}}
	}
	p.Status = corev1.PodStatus{Phase: corev1.PodPhase(randString(rng)), PodIP: randString(rng),
		StartTime: randTimePtr(rng), HostIP: randString(rng), Message: randString(rng),
		InitContainerStatuses: randStatuses(rng), ContainerStatuses: randStatuses(rng),
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: randTime(rng)}}}
	for range rng.IntN(3) {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: randString(rng)})
	}
	return p
}
