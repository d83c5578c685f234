package kubetypes

// A decoder of the Kubernetes protobuf encoding
// (application/vnd.kubernetes.protobuf) for the fields of this package's
// types, written by hand so that no generated protobuf code is linked.
//
// Field numbers are those of k8s.io/api core/v1 and
// k8s.io/apimachinery meta/v1 and runtime generated.proto. Every field the
// types here have is decoded; every other field is skipped by its wire type
// (varint, fixed64, bytes, fixed32; Kubernetes uses no groups, and a group
// is an error). A known field with the wrong wire type is an error, as in
// the generated decoders. Strings are copies: nothing decoded aliases the
// input, which the caller may reuse.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// ContentTypeProtobuf is the media type of the Kubernetes protobuf
// encoding. A watch in it answers with ";stream=watch" added.
const ContentTypeProtobuf = "application/vnd.kubernetes.protobuf"

// protoMagic starts every object the API server encodes as protobuf; a
// runtime.Unknown message follows it.
const protoMagic = "k8s\x00"

// ErrFrameTooLarge is returned (wrapped, with the sizes) by ReadFrame for a
// frame larger than its cap; the frame is not read.
var ErrFrameTooLarge = errors.New("frame too large")

// UnmarshalPodProto decodes one v1 Pod as the API server sends it in
// protobuf: the magic "k8s\x00" and a runtime.Unknown envelope of kind Pod.
// p is reset first; its TypeMeta comes from the envelope. On an error p is
// left empty.
func UnmarshalPodProto(data []byte, p *Pod) error {
	return unmarshalProto(data, "Pod", p, func(raw []byte, tm TypeMeta) error {
		p.TypeMeta = tm
		return decodePod(raw, p)
	})
}

// UnmarshalPodListProto decodes one v1 PodList as the API server sends it
// in protobuf (magic and runtime.Unknown envelope of kind PodList). l is
// reset first, and left empty on an error; its TypeMeta comes from the
// envelope (the items carry none on the wire, as in JSON).
func UnmarshalPodListProto(data []byte, l *PodList) error {
	return unmarshalProto(data, "PodList", l, func(raw []byte, tm TypeMeta) error {
		l.TypeMeta = tm
		return decodePodList(raw, l)
	})
}

// UnmarshalStatusProto decodes one meta/v1 Status as the API server sends it
// in protobuf (magic and runtime.Unknown envelope of kind Status): the
// answer to a failed request, or the object of a watch ERROR event. s is
// reset first, and left empty on an error; its TypeMeta comes from the
// envelope.
func UnmarshalStatusProto(data []byte, s *Status) error {
	return unmarshalProto(data, "Status", s, func(raw []byte, tm TypeMeta) error {
		s.TypeMeta = tm
		return decodeStatus(raw, s)
	})
}

// unmarshalProto resets *v, unwraps data's envelope of kind and decodes
// the object with decode; on an error *v is left empty.
func unmarshalProto[T any](data []byte, kind string, v *T, decode func(raw []byte, tm TypeMeta) error) error {
	var zero T
	*v = zero
	tm, raw, err := unwrapProto(data, kind)
	if err != nil {
		return err
	}
	if err := decode(raw, tm); err != nil {
		*v = zero
		return fmt.Errorf("kubetypes: %s protobuf: %w", kind, err)
	}
	return nil
}

// UnmarshalWatchEventProto decodes one meta/v1 WatchEvent of a protobuf
// watch stream (one frame, see ReadFrame): its type and its object. The
// API server writes the event itself without the magic and envelope (its
// stream serializer is the raw one) and the object inside it with both, so
// object is what UnmarshalPodProto or UnmarshalStatusProto read. An event
// that does come in an envelope (kind WatchEvent) is read too. object is a
// part of data, not a copy; typ never aliases data.
func UnmarshalWatchEventProto(data []byte) (typ string, object []byte, err error) {
	raw := data
	if len(data) >= len(protoMagic) && string(data[:len(protoMagic)]) == protoMagic {
		if _, raw, err = unwrapProto(data, "WatchEvent"); err != nil {
			return "", nil, err
		}
	}
	for b := raw; len(b) > 0; {
		var f field
		if f, b, err = nextField(b); err != nil {
			return "", nil, fmt.Errorf("kubetypes: WatchEvent protobuf: %w", err)
		}
		switch f.num {
		case 1:
			if typ, err = f.str("type"); err != nil {
				return "", nil, fmt.Errorf("kubetypes: WatchEvent protobuf: %w", err)
			}
		case 2:
			ext, err := f.msg("object")
			if err != nil {
				return "", nil, fmt.Errorf("kubetypes: WatchEvent protobuf: %w", err)
			}
			// RawExtension{raw = 1}; a repeated object is the last one.
			object = nil
			for e := ext; len(e) > 0; {
				var g field
				if g, e, err = nextField(e); err != nil {
					return "", nil, fmt.Errorf("kubetypes: WatchEvent protobuf: object: %w", err)
				}
				if g.num == 1 {
					if object, err = g.msg("object.raw"); err != nil {
						return "", nil, fmt.Errorf("kubetypes: WatchEvent protobuf: %w", err)
					}
				}
			}
		}
	}
	if typ == "" {
		return "", nil, errors.New("kubetypes: WatchEvent protobuf: no type")
	}
	if len(object) == 0 {
		return "", nil, fmt.Errorf("kubetypes: WatchEvent protobuf: %q event without an object", typ)
	}
	return typ, object, nil
}

// ReadFrame reads one frame of a length-delimited stream (apimachinery's
// LengthDelimitedFramer, the framing of a protobuf watch): a 4-byte
// big-endian length, then that many bytes. The frame is read into buf when
// it fits, else into a new slice; the returned slice can be passed back as
// buf. A frame longer than max is not read: the error wraps
// ErrFrameTooLarge, and the stream cannot be read further. A stream that
// ends between frames is io.EOF, within one io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader, buf []byte, max int) ([]byte, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(h[:])
	if int64(n) > int64(max) {
		return nil, fmt.Errorf("kubetypes: %w: %d bytes, at most %d", ErrFrameTooLarge, n, max)
	}
	if cap(buf) >= int(n) {
		buf = buf[:n]
	} else {
		buf = make([]byte, n)
	}
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// unwrapProto checks the magic and the runtime.Unknown envelope
// (typeMeta = 1 {apiVersion = 1, kind = 2}, raw = 2, contentEncoding = 3,
// contentType = 4) and returns the envelope's TypeMeta and the object.
func unwrapProto(data []byte, kind string) (TypeMeta, []byte, error) {
	var tm TypeMeta
	if len(data) < len(protoMagic) || string(data[:len(protoMagic)]) != protoMagic {
		return tm, nil, fmt.Errorf("kubetypes: %s protobuf: no %q magic: not the Kubernetes protobuf encoding", kind, protoMagic)
	}
	var (
		raw              []byte
		encoding, ctype  string
		gotKind, version string
		err              error
	)
	for b := data[len(protoMagic):]; len(b) > 0; {
		var f field
		if f, b, err = nextField(b); err != nil {
			return tm, nil, fmt.Errorf("kubetypes: %s protobuf: envelope: %w", kind, err)
		}
		switch f.num {
		case 1:
			m, err := f.msg("typeMeta")
			if err != nil {
				return tm, nil, fmt.Errorf("kubetypes: %s protobuf: envelope: %w", kind, err)
			}
			for len(m) > 0 {
				var g field
				if g, m, err = nextField(m); err != nil {
					return tm, nil, fmt.Errorf("kubetypes: %s protobuf: envelope: typeMeta: %w", kind, err)
				}
				switch g.num {
				case 1:
					version, err = g.str("typeMeta.apiVersion")
				case 2:
					gotKind, err = g.str("typeMeta.kind")
				}
				if err != nil {
					return tm, nil, fmt.Errorf("kubetypes: %s protobuf: envelope: %w", kind, err)
				}
			}
		case 2:
			raw, err = f.msg("raw")
		case 3:
			encoding, err = f.str("contentEncoding")
		case 4:
			ctype, err = f.str("contentType")
		}
		if err != nil {
			return tm, nil, fmt.Errorf("kubetypes: %s protobuf: envelope: %w", kind, err)
		}
	}
	switch {
	case gotKind != kind:
		return tm, nil, fmt.Errorf("kubetypes: %s protobuf: the object is of kind %q (%s)", kind, gotKind, version)
	case raw == nil:
		return tm, nil, fmt.Errorf("kubetypes: %s protobuf: no object (raw) in the envelope", kind)
	case encoding != "":
		return tm, nil, fmt.Errorf("kubetypes: %s protobuf: content encoding %q is not supported", kind, encoding)
	case ctype != "" && ctype != ContentTypeProtobuf:
		return tm, nil, fmt.Errorf("kubetypes: %s protobuf: the object is in %q, not protobuf", kind, ctype)
	}
	tm.Kind, tm.APIVersion = gotKind, version
	return tm, raw, nil
}

// field is one field of a message: its number and wire type, and its value
// (u for varint and fixed, b for bytes).
type field struct {
	num protowire.Number
	typ protowire.Type
	u   uint64
	b   []byte
}

// nextField reads the field at the start of b and returns it and the rest
// of b. Every length is checked against what is left.
func nextField(b []byte) (field, []byte, error) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return field{}, nil, fmt.Errorf("bad field tag: %w", protowire.ParseError(n))
	}
	f := field{num: num, typ: typ}
	b = b[n:]
	switch typ {
	case protowire.VarintType:
		f.u, n = protowire.ConsumeVarint(b)
	case protowire.Fixed32Type:
		var v uint32
		v, n = protowire.ConsumeFixed32(b)
		f.u = uint64(v)
	case protowire.Fixed64Type:
		f.u, n = protowire.ConsumeFixed64(b)
	case protowire.BytesType:
		f.b, n = protowire.ConsumeBytes(b)
	default:
		return field{}, nil, fmt.Errorf("field %d: wire type %d (group or invalid) is not supported", num, typ)
	}
	if n < 0 {
		return field{}, nil, fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
	}
	return f, b[n:], nil
}

func (f field) wrongType(name string, want protowire.Type) error {
	return fmt.Errorf("%s (field %d): wire type %d, want %d", name, f.num, f.typ, want)
}

// msg is the field's bytes (an embedded message or a bytes field); they
// alias the input.
func (f field) msg(name string) ([]byte, error) {
	if f.typ != protowire.BytesType {
		return nil, f.wrongType(name, protowire.BytesType)
	}
	return f.b, nil
}

// str is the field as a string, a copy (or a constant).
func (f field) str(name string) (string, error) {
	if f.typ != protowire.BytesType {
		return "", f.wrongType(name, protowire.BytesType)
	}
	return copyString(f.b), nil
}

func (f field) varint(name string) (uint64, error) {
	if f.typ != protowire.VarintType {
		return 0, f.wrongType(name, protowire.VarintType)
	}
	return f.u, nil
}

// copyString returns b as a string that does not alias b: one of the
// frequent values without allocating, or a copy.
func copyString(b []byte) string {
	switch string(b) {
	case "":
		return ""
	case "v1":
		return "v1"
	case "apps/v1":
		return "apps/v1"
	case "batch/v1":
		return "batch/v1"
	case "ReplicaSet":
		return "ReplicaSet"
	case "DaemonSet":
		return "DaemonSet"
	case "StatefulSet":
		return "StatefulSet"
	case "Job":
		return "Job"
	case "Node":
		return "Node"
	case "Always":
		return "Always"
	case "Never":
		return "Never"
	case "OnFailure":
		return "OnFailure"
	case "Pending":
		return "Pending"
	case "Running":
		return "Running"
	case "Succeeded":
		return "Succeeded"
	case "Failed":
		return "Failed"
	case "Unknown":
		return "Unknown"
	case "true":
		return "true"
	case Added:
		return Added
	case Modified:
		return Modified
	case Deleted:
		return Deleted
	case Bookmark:
		return Bookmark
	case Error:
		return Error
	}
	return string(b)
}

// countFields counts the fields of message b by number (below 32), for
// sizing slices and maps before they are filled.
func countFields(b []byte) (counts [32]int, err error) {
	for len(b) > 0 {
		var f field
		if f, b, err = nextField(b); err != nil {
			return counts, err
		}
		if f.num < 32 {
			counts[f.num]++
		}
	}
	return counts, nil
}

// decodeTime reads a meta/v1 Time {seconds = 1, nanos = 2} as the
// Kubernetes decoder does: an empty message is the zero time, else the
// seconds in the local zone; nanos are ignored (the API keeps seconds
// only, in protobuf as in JSON).
func decodeTime(b []byte, name string) (Time, error) {
	if len(b) == 0 {
		return Time{}, nil
	}
	var secs int64
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return Time{}, fmt.Errorf("%s: %w", name, err)
		}
		b = rest
		if f.num == 1 {
			v, err := f.varint(name + ".seconds")
			if err != nil {
				return Time{}, err
			}
			secs = int64(v)
		}
	}
	return Time{time.Unix(secs, 0).Local()}, nil
}

// decodeTimePtr reads an optional Time: the zero time is nil, as JSON's
// null is.
func decodeTimePtr(f field, name string) (*Time, error) {
	b, err := f.msg(name)
	if err != nil {
		return nil, err
	}
	t, err := decodeTime(b, name)
	if err != nil || t.Time.IsZero() {
		return nil, err
	}
	return &t, nil
}

func decodePod(b []byte, p *Pod) error {
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		var m []byte
		switch f.num {
		case 1:
			if m, err = f.msg("metadata"); err == nil {
				err = decodeObjectMeta(m, &p.ObjectMeta)
			}
			if err != nil {
				return fmt.Errorf("metadata: %w", err)
			}
		case 2:
			if m, err = f.msg("spec"); err == nil {
				err = decodePodSpec(m, &p.Spec)
			}
			if err != nil {
				return fmt.Errorf("spec: %w", err)
			}
		case 3:
			if m, err = f.msg("status"); err == nil {
				err = decodePodStatus(m, &p.Status)
			}
			if err != nil {
				return fmt.Errorf("status: %w", err)
			}
		}
	}
	return nil
}

func decodePodList(b []byte, l *PodList) error {
	counts, err := countFields(b)
	if err != nil {
		return err
	}
	presize(&l.Items, counts[2])
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		var m []byte
		switch f.num {
		case 1:
			if m, err = f.msg("metadata"); err == nil {
				err = decodeListMeta(m, &l.ListMeta)
			}
			if err != nil {
				return fmt.Errorf("metadata: %w", err)
			}
		case 2:
			if err := appendMsg(f, "items", &l.Items, decodePod); err != nil {
				return err
			}
		}
	}
	return nil
}

// decodeListMeta reads a meta/v1 ListMeta: resourceVersion = 2,
// continue = 3.
func decodeListMeta(b []byte, m *ListMeta) error {
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		switch f.num {
		case 2:
			m.ResourceVersion, err = f.str("resourceVersion")
		case 3:
			m.Continue, err = f.str("continue")
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// decodeStatus reads a meta/v1 Status: status = 2, message = 3,
// reason = 4, code = 6.
func decodeStatus(b []byte, s *Status) error {
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		switch f.num {
		case 2:
			s.Status, err = f.str("status")
		case 3:
			s.Message, err = f.str("message")
		case 4:
			s.Reason, err = f.str("reason")
		case 6:
			var v uint64
			v, err = f.varint("code")
			s.Code = int32(v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// decodeObjectMeta reads a meta/v1 ObjectMeta: name = 1, namespace = 3,
// uid = 5, resourceVersion = 6, creationTimestamp = 8,
// deletionTimestamp = 9, labels = 11, annotations = 12,
// ownerReferences = 13.
func decodeObjectMeta(b []byte, m *ObjectMeta) error {
	counts, err := countFields(b)
	if err != nil {
		return err
	}
	if n := counts[11]; n > 0 && m.Labels == nil {
		m.Labels = make(map[string]string, n)
	}
	if n := counts[12]; n > 0 && m.Annotations == nil {
		m.Annotations = make(map[string]string, n)
	}
	presize(&m.OwnerReferences, counts[13])
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		var v []byte
		switch f.num {
		case 1:
			m.Name, err = f.str("name")
		case 3:
			m.Namespace, err = f.str("namespace")
		case 5:
			m.UID, err = f.str("uid")
		case 6:
			m.ResourceVersion, err = f.str("resourceVersion")
		case 8:
			if v, err = f.msg("creationTimestamp"); err == nil {
				m.CreationTimestamp, err = decodeTime(v, "creationTimestamp")
			}
		case 9:
			m.DeletionTimestamp, err = decodeTimePtr(f, "deletionTimestamp")
		case 11:
			if v, err = f.msg("labels"); err == nil {
				err = decodeMapEntry(v, m.Labels, "labels")
			}
		case 12:
			if v, err = f.msg("annotations"); err == nil {
				err = decodeMapEntry(v, m.Annotations, "annotations")
			}
		case 13:
			err = appendMsg(f, "ownerReferences", &m.OwnerReferences, decodeOwnerReference)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// decodeMapEntry reads one entry of a map<string, string> (key = 1,
// value = 2, either absent is "") into to, which is not nil.
func decodeMapEntry(b []byte, to map[string]string, name string) error {
	var k, v string
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		b = rest
		switch f.num {
		case 1:
			k, err = f.str(name + " key")
		case 2:
			v, err = f.str(name + " value")
		}
		if err != nil {
			return err
		}
	}
	to[k] = v
	return nil
}

// decodeOwnerReference reads a meta/v1 OwnerReference: kind = 1, name = 3,
// uid = 4, apiVersion = 5, controller = 6.
func decodeOwnerReference(b []byte, o *OwnerReference) error {
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		switch f.num {
		case 1:
			o.Kind, err = f.str("kind")
		case 3:
			o.Name, err = f.str("name")
		case 4:
			o.UID, err = f.str("uid")
		case 5:
			o.APIVersion, err = f.str("apiVersion")
		case 6:
			var v uint64
			if v, err = f.varint("controller"); err == nil {
				c := v != 0
				o.Controller = &c
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// decodePodSpec reads the fields of a core/v1 PodSpec kept here:
// containers = 2, nodeName = 10, hostNetwork = 11, hostname = 16,
// initContainers = 20.
func decodePodSpec(b []byte, s *PodSpec) error {
	counts, err := countFields(b)
	if err != nil {
		return err
	}
	presize(&s.InitContainers, counts[20])
	presize(&s.Containers, counts[2])
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		switch f.num {
		case 2:
			err = appendMsg(f, "containers", &s.Containers, decodeContainer)
		case 10:
			s.NodeName, err = f.str("nodeName")
		case 11:
			var u uint64
			u, err = f.varint("hostNetwork")
			s.HostNetwork = u != 0
		case 16:
			s.Hostname, err = f.str("hostname")
		case 20:
			err = appendMsg(f, "initContainers", &s.InitContainers, decodeContainer)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// decodeContainer reads a core/v1 Container: name = 1, image = 2,
// restartPolicy = 24.
func decodeContainer(b []byte, c *Container) error {
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		switch f.num {
		case 1:
			c.Name, err = f.str("name")
		case 2:
			c.Image, err = f.str("image")
		case 24:
			c.RestartPolicy, err = f.str("restartPolicy")
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// decodePodStatus reads the fields of a core/v1 PodStatus kept here:
// phase = 1, podIP = 6, startTime = 7, containerStatuses = 8,
// initContainerStatuses = 10, podIPs = 12.
func decodePodStatus(b []byte, s *PodStatus) error {
	counts, err := countFields(b)
	if err != nil {
		return err
	}
	presize(&s.PodIPs, counts[12])
	presize(&s.InitContainerStatuses, counts[10])
	presize(&s.ContainerStatuses, counts[8])
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		switch f.num {
		case 1:
			var phase string
			phase, err = f.str("phase")
			s.Phase = PodPhase(phase)
		case 6:
			s.PodIP, err = f.str("podIP")
		case 7:
			s.StartTime, err = decodeTimePtr(f, "startTime")
		case 8:
			err = appendMsg(f, "containerStatuses", &s.ContainerStatuses, decodeContainerStatus)
		case 10:
			err = appendMsg(f, "initContainerStatuses", &s.InitContainerStatuses, decodeContainerStatus)
		case 12:
			err = appendMsg(f, "podIPs", &s.PodIPs, decodePodIP)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// decodePodIP reads a core/v1 PodIP: ip = 1.
func decodePodIP(b []byte, p *PodIP) error {
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		if f.num == 1 {
			if p.IP, err = f.str("ip"); err != nil {
				return err
			}
		}
	}
	return nil
}

// decodeContainerStatus reads a core/v1 ContainerStatus: name = 1,
// lastState = 3 (ContainerState, of which terminated = 3, of which
// containerID = 7), restartCount = 5, imageID = 7, containerID = 8.
func decodeContainerStatus(b []byte, s *ContainerStatus) error {
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		var v []byte
		switch f.num {
		case 1:
			s.Name, err = f.str("name")
		case 3:
			if v, err = f.msg("lastState"); err == nil {
				if err = decodeContainerState(v, &s.LastTerminationState); err != nil {
					err = fmt.Errorf("lastState: %w", err)
				}
			}
		case 5:
			var u uint64
			u, err = f.varint("restartCount")
			s.RestartCount = int32(u)
		case 7:
			s.ImageID, err = f.str("imageID")
		case 8:
			s.ContainerID, err = f.str("containerID")
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func decodeContainerState(b []byte, s *ContainerState) error {
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		if f.num != 3 {
			continue
		}
		v, err := f.msg("terminated")
		if err != nil {
			return err
		}
		if s.Terminated == nil {
			s.Terminated = &ContainerStateTerminated{}
		}
		for len(v) > 0 {
			g, rest, err := nextField(v)
			if err != nil {
				return fmt.Errorf("terminated: %w", err)
			}
			v = rest
			if g.num == 7 {
				if s.Terminated.ContainerID, err = g.str("terminated.containerID"); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// appendMsg decodes the message field f (named name) into a new last
// element of *s; an error names the element.
func appendMsg[T any](f field, name string, s *[]T, decode func([]byte, *T) error) error {
	v, err := f.msg(name)
	if err != nil {
		return err
	}
	*s = append(*s, *new(T))
	if err := decode(v, &(*s)[len(*s)-1]); err != nil {
		return fmt.Errorf("%s[%d]: %w", name, len(*s)-1, err)
	}
	return nil
}

// presize gives a nil *s room for the n elements a count pass found, so
// that decoding appends without growing it.
func presize[T any](s *[]T, n int) {
	if n > 0 && *s == nil {
		*s = make([]T, 0, n)
	}
}
