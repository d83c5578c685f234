package informer

import (
	"net/netip"
	"strings"
	"time"

	"github.com/distribution/reference"

	"github.com/podstamp/podstamp/enrich"
	"github.com/podstamp/podstamp/informer/kubetypes"
)

// podObj is what the cache keeps for one pod: the stripped *enrich.Pod plus
// the few fields the cache reasons with. It is built as soon as a pod is
// decoded, so the decoded pod is garbage at once and memory grows only with
// what is stamped.
type podObj struct {
	kubetypes.ObjectMeta // Namespace, Name, UID, ResourceVersion only

	pod      *enrich.Pod // without namespace/node metadata and workload UIDs
	phase    kubetypes.PodPhase
	start    time.Time // ordering time for IP ownership
	deleting bool      // deletionTimestamp set

	// owners as found in ownerReferences, for workload UID lookups.
	rsName, rsUID   string
	jobName, jobUID string
	ownerUIDs       map[enrich.WorkloadKind]string
}

func (o *podObj) finished() bool {
	return o.phase == kubetypes.PodSucceeded || o.phase == kubetypes.PodFailed
}

func toPodObj(p *kubetypes.Pod) *podObj {
	o := &podObj{
		ObjectMeta: kubetypes.ObjectMeta{
			Namespace:       p.Namespace,
			Name:            p.Name,
			UID:             p.UID,
			ResourceVersion: p.ResourceVersion,
		},
		phase:    p.Status.Phase,
		deleting: p.DeletionTimestamp != nil,
	}
	ep := &enrich.Pod{
		Namespace:   p.Namespace,
		Name:        p.Name,
		UID:         string(p.UID),
		NodeName:    p.Spec.NodeName,
		HostNetwork: p.Spec.HostNetwork,
		Hostname:    p.Spec.Hostname,
		Labels:      p.Labels,
		Annotations: stripAnnotations(p.Annotations),
	}
	ep.Created = p.CreationTimestamp.Time
	if p.Status.StartTime != nil {
		ep.StartTime = p.Status.StartTime.Time
	} else {
		ep.StartTime = p.CreationTimestamp.Time
	}
	o.start = ep.StartTime
	ep.IPs = podIPs(p)

	// Workloads from owner references, without cluster-wide watches.
	for _, ref := range p.OwnerReferences {
		switch ref.Kind {
		case "ReplicaSet":
			o.rsName, o.rsUID = ref.Name, string(ref.UID)
			ep.Workloads = append(ep.Workloads, enrich.Workload{Kind: enrich.ReplicaSet, Name: ref.Name})
			if d := deploymentName(ref.Name, p.Labels["pod-template-hash"]); d != "" {
				ep.Workloads = append(ep.Workloads, enrich.Workload{Kind: enrich.Deployment, Name: d})
			}
		case "Job":
			o.jobName, o.jobUID = ref.Name, string(ref.UID)
			ep.Workloads = append(ep.Workloads, enrich.Workload{Kind: enrich.Job, Name: ref.Name})
			if cj := cronJobName(ref.Name); cj != "" {
				ep.Workloads = append(ep.Workloads, enrich.Workload{Kind: enrich.CronJob, Name: cj})
			}
		case "StatefulSet":
			ep.Workloads = append(ep.Workloads, enrich.Workload{Kind: enrich.StatefulSet, Name: ref.Name})
		case "DaemonSet":
			ep.Workloads = append(ep.Workloads, enrich.Workload{Kind: enrich.DaemonSet, Name: ref.Name})
		default:
			continue
		}
		if o.ownerUIDs == nil {
			o.ownerUIDs = map[enrich.WorkloadKind]string{}
		}
		o.ownerUIDs[enrich.WorkloadKind(strings.ToLower(ref.Kind))] = string(ref.UID)
	}

	statuses := map[string]*kubetypes.ContainerStatus{}
	for _, sts := range [][]kubetypes.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for i := range sts {
			statuses[sts[i].Name] = &sts[i]
		}
	}
	for li, list := range [][]kubetypes.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range list {
			img := parseImage(c.Image)
			ct := enrich.Container{
				Name: c.Name, ImageName: img.name, ImageTag: img.tag, ImageVersion: img.version,
				Init: li == 0, Sidecar: li == 0 && c.RestartPolicy == "Always",
			}
			if s := statuses[c.Name]; s != nil {
				for _, raw := range []string{s.ContainerID, lastID(*s)} {
					if id := trimRuntime(raw); id != "" {
						ct.IDs = append(ct.IDs, id)
					}
				}
				ct.RestartCount = int(s.RestartCount)
				ct.RepoDigest = repoDigest(s.ImageID)
			}
			ep.Containers = append(ep.Containers, ct)
		}
	}
	o.pod = ep
	return o
}

// lastApplied is kubectl's copy of the whole manifest: never stamped, often
// the largest thing in a pod's metadata.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

func stripAnnotations(a map[string]string) map[string]string {
	if _, ok := a[lastApplied]; !ok {
		return a
	}
	out := make(map[string]string, len(a)-1)
	for k, v := range a {
		if k != lastApplied {
			out[k] = v
		}
	}
	return out
}

func lastID(s kubetypes.ContainerStatus) string {
	if t := s.LastTerminationState.Terminated; t != nil {
		return t.ContainerID
	}
	return ""
}

// podIPs returns every entry of status.podIPs (status.podIP when the list is
// empty), IPv4 addresses in their 4-byte form, without duplicates.
func podIPs(p *kubetypes.Pod) []netip.Addr {
	raw := make([]string, 0, len(p.Status.PodIPs)+1)
	for _, ip := range p.Status.PodIPs {
		raw = append(raw, ip.IP)
	}
	if len(raw) == 0 && p.Status.PodIP != "" {
		raw = append(raw, p.Status.PodIP)
	}
	var out []netip.Addr
	for _, s := range raw {
		a, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		a = a.Unmap().WithZone("")
		dup := false
		for _, b := range out {
			dup = dup || a == b
		}
		if !dup {
			out = append(out, a)
		}
	}
	return out
}

// deploymentName derives the Deployment of a ReplicaSet: its name minus
// "-<pod-template-hash>". "" when the ReplicaSet does not look like one a
// Deployment made.
func deploymentName(rs, hash string) string {
	if hash == "" || !strings.HasSuffix(rs, "-"+hash) || len(rs) == len(hash)+1 {
		return ""
	}
	return strings.TrimSuffix(rs, "-"+hash)
}

// cronJobName derives the CronJob of a Job named <cronjob>-<digits> (the
// scheduled time in minutes). "" when the name has no such suffix.
func cronJobName(job string) string {
	i := strings.LastIndexByte(job, '-')
	if i <= 0 || i == len(job)-1 {
		return ""
	}
	for _, r := range job[i+1:] {
		if r < '0' || r > '9' {
			return ""
		}
	}
	return job[:i]
}

// trimRuntime strips "containerd://" and the like from a container ID.
func trimRuntime(id string) string {
	if i := strings.Index(id, "://"); i >= 0 {
		return id[i+3:]
	}
	return id
}

// image is what podstamp stamps of an image reference.
type image struct {
	name    string // the repository as written (container.image.name)
	tag     string // the tag; "latest" when the reference has neither tag nor digest
	version string // tag, tag@digest or digest: the version the reference pins
}

// parseImage parses registry/repo[:tag][@digest] with the library the
// semantic conventions point at (as the k8sattributes processor does); the
// name is kept as written, not normalized.
func parseImage(s string) image {
	ref, err := reference.Parse(s)
	named, ok := ref.(reference.Named)
	if err != nil || !ok {
		// Not a reference the library accepts (the processor stamps
		// nothing): keep what can be read of it rather than lose it.
		name, tag := splitImage(s)
		return image{name: name, tag: tag, version: tag}
	}
	img := image{name: named.Name()}
	var digest string
	if d, ok := named.(reference.Digested); ok {
		digest = d.Digest().String()
	}
	if t, ok := named.(reference.Tagged); ok {
		img.tag = t.Tag()
	} else if digest == "" {
		img.tag = "latest"
	}
	switch {
	case digest != "" && img.tag != "":
		img.version = img.tag + "@" + digest
	case digest != "":
		img.version = digest
	case img.tag != "latest" || strings.Contains(s, ":latest"):
		img.version = img.tag // an implicit latest pins nothing
	}
	return img
}

// splitImage splits registry/repo[:tag][@digest] by hand, for references
// the library rejects. The tag is "latest" when there is neither tag nor
// digest.
func splitImage(ref string) (name, tag string) {
	digest := ""
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref, digest = ref[:i], ref[i+1:]
	}
	slash := strings.LastIndexByte(ref, '/')
	if i := strings.LastIndexByte(ref, ':'); i > slash {
		return ref[:i], ref[i+1:]
	}
	if digest != "" {
		return ref, ""
	}
	return ref, "latest"
}

// repoDigest is the canonical repo@digest of a container status's imageID,
// "" when it is not one (e.g. a bare sha256:... or a runtime prefix).
func repoDigest(imageID string) string {
	ref, err := reference.ParseAnyReference(imageID)
	if err != nil {
		return ""
	}
	if c, ok := ref.(reference.Canonical); ok {
		return c.String()
	}
	return ""
}

// podFromEvent is the podObj of a watched pod, or the cache's own podObj
// (a pod a relist found gone).
func podFromEvent(obj any) *podObj {
	switch o := obj.(type) {
	case *podObj:
		return o
	case *kubetypes.Pod:
		if o == nil {
			return nil
		}
		return toPodObj(o)
	}
	return nil
}
