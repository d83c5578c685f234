package enrich

import (
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"
)

// attr is one attribute podstamp may add.
type attr struct{ key, value string }

// family selects which of a pod's IPs is stamped as k8s.pod.ip.
type family uint8

const (
	famAny family = iota // the pod was found by a resource attribute: its first IP
	fam4                 // found by an IPv4 peer: its first IPv4 address
	fam6                 // found by an IPv6 peer: its first IPv6 address
)

func peerFamily(peer netip.Addr) family {
	if !peer.IsValid() {
		return famAny
	}
	if peer.Unmap().Is4() {
		return fam4
	}
	return fam6
}

// noContainer is the container choice "none": container attributes are not stamped.
const noContainer = -1

// selectContainer picks the container whose attributes are stamped: the one
// the resource names by container.id or k8s.container.name (init and sidecar
// containers included), else the pod's only regular container.
func selectContainer(p *Pod, containerID, containerName string) int {
	if containerID != "" {
		for i := range p.Containers {
			for _, id := range p.Containers[i].IDs {
				if id == containerID {
					return i
				}
			}
		}
	}
	if containerName != "" {
		for i := range p.Containers {
			if p.Containers[i].Name == containerName {
				return i
			}
		}
	}
	only := noContainer
	for i := range p.Containers {
		if c := &p.Containers[i]; !c.Init && !c.Sidecar {
			if only != noContainer {
				return noContainer
			}
			only = i
		}
	}
	return only
}

func podIP(p *Pod, fam family) string {
	if len(p.IPs) == 0 {
		return ""
	}
	if fam != famAny {
		for _, ip := range p.IPs {
			if ip.Unmap().Is4() == (fam == fam4) {
				return ip.Unmap().String()
			}
		}
	}
	return p.IPs[0].Unmap().String()
}

func workload(p *Pod, k WorkloadKind) *Workload {
	for i := range p.Workloads {
		if p.Workloads[i].Kind == k {
			return &p.Workloads[i]
		}
	}
	return nil
}

// podAttrs computes the attributes the rules give pod p, with container
// choice c and IP family fam, in precedence order: each key appears once, the
// first rule producing it wins. Order: metadata, k8s.cluster.name,
// otel_annotations, label rules, annotation rules, service.* derivation.
// Empty values are never produced.
func (r *rules) podAttrs(p *Pod, c int, fam family) []attr {
	var out []attr
	seen := make(map[string]bool, 32)
	add := func(k, v string) {
		if k == "" || v == "" || seen[k] {
			return
		}
		seen[k] = true
		out = append(out, attr{k, v})
	}
	m := r.metadata
	if m[AttrNamespaceName] {
		add(AttrNamespaceName, p.Namespace)
	}
	if m[AttrPodName] {
		add(AttrPodName, p.Name)
	}
	if m[AttrPodUID] {
		add(AttrPodUID, p.UID)
	}
	if m[AttrPodHostname] {
		add(AttrPodHostname, p.Hostname)
	}
	if start := p.StartTime; m[AttrPodStartTime] {
		if r.ext.conv.StartTimeFromCreation {
			start = p.Created
		}
		if !start.IsZero() {
			add(AttrPodStartTime, start.UTC().Format(time.RFC3339))
		}
	}
	if m[AttrNodeName] {
		add(AttrNodeName, p.NodeName)
	}
	if m[AttrNodeUID] {
		add(AttrNodeUID, p.NodeUID)
	}
	if m[AttrPodIP] {
		add(AttrPodIP, podIP(p, fam))
	}
	for _, k := range workloadOrder {
		w := workload(p, k)
		if w == nil {
			continue
		}
		if m["k8s."+string(k)+".name"] {
			add("k8s."+string(k)+".name", w.Name)
		}
		if m["k8s."+string(k)+".uid"] {
			add("k8s."+string(k)+".uid", w.UID)
		}
	}
	var ctr *Container
	run := c / runStride
	if c >= 0 {
		c %= runStride
	}
	if c >= 0 && c < len(p.Containers) {
		ctr = &p.Containers[c]
		if m[AttrContainerName] {
			add(AttrContainerName, ctr.Name)
		}
		if m[AttrImageName] {
			add(AttrImageName, ctr.ImageName)
		}
		if m[AttrImageTag] {
			add(AttrImageTag, ctr.ImageTag)
		}
		if m[AttrImageTags] {
			add(AttrImageTags, ctr.ImageTag)
		}
		if m[AttrContainerID] && run < len(ctr.IDs) {
			add(AttrContainerID, ctr.IDs[run])
		}
		if m[AttrRepoDigests] && run == 0 {
			add(AttrRepoDigests, ctr.RepoDigest)
		}
	}
	if m[AttrClusterUID] {
		add(AttrClusterUID, p.ClusterUID)
	}
	add(AttrClusterName, r.clusterName)
	if r.otelAnnotations {
		for _, k := range sortedKeys(p.Annotations) {
			if name, ok := strings.CutPrefix(k, OtelAnnotationPrefix); ok {
				add(name, p.Annotations[k])
			}
		}
	}
	for _, fr := range r.labels {
		fr.apply(r, p, add)
	}
	for _, fr := range r.annotations {
		fr.apply(r, p, add)
	}
	if r.derive {
		r.deriveService(p, ctr, add)
	}
	return out
}

func (fr *fieldRule) apply(r *rules, p *Pod, add func(k, v string)) {
	var src map[string]string
	switch {
	case fr.from == fromPod && !fr.annotation:
		src = p.Labels
	case fr.from == fromPod:
		src = p.Annotations
	case fr.from == fromNamespace && !fr.annotation:
		src = p.NamespaceLabels
	case fr.from == fromNamespace:
		src = p.NamespaceAnnotations
	case fr.from == fromWorkload:
		w := workload(p, fr.workload)
		if w == nil {
			return
		}
		src = w.Labels
		if fr.annotation {
			src = w.Annotations
		}
	case !fr.annotation:
		src = p.NodeLabels
	default:
		src = p.NodeAnnotations
	}
	kind := "label"
	if fr.annotation {
		kind = "annotation"
	}
	// The default names: k8s.<from>.label.<key> (v1), k8s.<from>.labels.<key>
	// (v0; pod, namespace and node only, as in the processor).
	addDefault := func(k, v string) {
		if r.ext.conv.V1 || fr.from == fromWorkload {
			add("k8s."+fr.fromName+"."+kind+"."+k, v)
		}
		if r.ext.conv.V0 && fr.from != fromWorkload {
			add("k8s."+fr.fromName+"."+kind+"s."+k, v)
		}
	}
	if fr.re == nil {
		if v, ok := src[fr.key]; ok {
			if fr.tagName != "" {
				add(fr.tagName, v)
			} else {
				addDefault(fr.key, v)
			}
		}
		return
	}
	for _, k := range sortedKeys(src) {
		match := fr.re.FindStringSubmatchIndex(k)
		if match == nil {
			continue
		}
		if fr.tagName != "" {
			add(string(fr.re.ExpandString(nil, fr.tagName, k, match)), src[k])
		} else {
			addDefault(k, src[k])
		}
	}
}

// deriveService follows the semantic conventions' non-normative
// "service.* from Kubernetes" order; the first value found wins.
func (r *rules) deriveService(p *Pod, ctr *Container, add func(k, v string)) {
	if keys := r.ext.conv.ServiceKeys; keys != nil {
		all := add
		add = func(k, v string) {
			if slices.Contains(keys, k) {
				all(k, v)
			}
		}
	}
	ann := func(k string) string {
		if !r.ext.conv.ServiceAnnotations {
			return ""
		}
		return p.Annotations[OtelAnnotationPrefix+k]
	}
	label := func(k string) string {
		if !r.wellKnown {
			return ""
		}
		return p.Labels[k]
	}
	first := func(vs ...string) string {
		for _, v := range vs {
			if v != "" {
				return v
			}
		}
		return ""
	}
	wl := func(k WorkloadKind) string {
		if w := workload(p, k); w != nil {
			return w.Name
		}
		return ""
	}
	ctrName, ctrTag := "", ""
	if ctr != nil {
		ctrName, ctrTag = ctr.Name, ctr.ImageVersion
		if ctrTag == "" && r.ext.conv.ServiceKeys == nil {
			ctrTag = ctr.ImageTag // podstamp's layout: an implicit "latest" too
		}
	}
	add(AttrServiceNS, first(ann(AttrServiceNS), p.Namespace))
	add(AttrServiceName, first(ann(AttrServiceName),
		label("app.kubernetes.io/instance"), label("app.kubernetes.io/name"),
		wl(Deployment), wl(ReplicaSet), wl(StatefulSet), wl(DaemonSet), wl(CronJob), wl(Job),
		p.Name, ctrName))
	add(AttrServiceVersion, first(ann(AttrServiceVersion), label("app.kubernetes.io/version"), ctrTag))
	inst := ""
	if ctrName != "" && p.Namespace != "" && p.Name != "" {
		inst = p.Namespace + "." + p.Name + "." + ctrName
	}
	add(AttrServiceInst, first(ann(AttrServiceInst), inst))
}

func sortedKeys(m map[string]string) []string {
	if len(m) == 0 {
		return nil
	}
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// clientValue is what the client sent for one key.
type clientValue struct {
	present bool   // a non-empty value: anything but an empty string or an unset AnyValue
	isStr   bool   // the value is a string
	str     string // the string value, when isStr
	isInt   bool   // the value is an int
	i       int64  // the int value, when isInt
}

// replaces reports whether podstamp's value v replaces the client's value cv
// of key k: when the client sent nothing (or an empty value), when overwrite
// lists k, or for an SDK-default service.name with unknown_service on. A
// client value equal to v is left as is.
func (r *rules) replaces(k, v string, cv clientValue) bool {
	if !cv.present {
		return true
	}
	if cv.isStr && cv.str == v {
		return false
	}
	if r.overwrite[k] {
		return true
	}
	return r.unknownService && k == AttrServiceName && cv.isStr && strings.HasPrefix(cv.str, "unknown_service")
}
