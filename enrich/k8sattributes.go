package enrich

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// This file reads the k8sattributes processor's configuration block (the
// processor's layout of a rule file) into a Config, and holds what that
// layout brought to podstamp's rule set: pod filters and exclusions,
// labels and annotations of workloads, and the processor's two attribute
// naming schemes.

// Attribute keys the processor's layout added.
const (
	AttrPodHostname = "k8s.pod.hostname"
	AttrClusterUID  = "k8s.cluster.uid"
	AttrImageTags   = "container.image.tags"
	AttrRepoDigests = "container.image.repo_digests"
	// AttrRestartCount picks the run of a container whose container.id is
	// stamped (the resource's own k8s.container.restart_count).
	AttrRestartCount = "k8s.container.restart_count"
)

// listKeys are attributes whose value is an array of strings (one here).
var listKeys = map[string]bool{AttrImageTags: true, AttrRepoDigests: true}

// The processor's feature gates that choose its attribute names.
const (
	gateEmitV1     = "processor.k8sattributes.EmitV1K8sConventions"
	gateDontEmitV0 = "processor.k8sattributes.DontEmitV0K8sConventions"
)

// PodFilter chooses the pods that are stamped at all, like the
// processor's filter block. podstamp always watches only the pods of its
// node (--node-name): node and node_from_env_var may name only that node.
type PodFilter struct {
	Node           string       `json:"node,omitempty"`
	NodeFromEnvVar string       `json:"node_from_env_var,omitempty"`
	Namespace      string       `json:"namespace,omitempty"`
	Labels         []FilterRule `json:"labels,omitempty"`
	Fields         []FilterRule `json:"fields,omitempty"`
}

// NodeName is the node the filter names ("" when it names none): filter.node,
// or the value of the variable filter.node_from_env_var names.
func (f PodFilter) NodeName() string {
	if f.Node != "" {
		return f.Node
	}
	if f.NodeFromEnvVar != "" {
		return os.Getenv(f.NodeFromEnvVar)
	}
	return ""
}

// FilterRule is one label or field filter: op is equals (default),
// not-equals, exists or does-not-exist (the last two for labels only).
type FilterRule struct {
	Key   string `json:"key"`
	Value string `json:"value,omitempty"`
	Op    string `json:"op,omitempty"`
}

// ExcludeConfig lists pods never stamped, by name: each name is a regular
// expression matched anywhere in the pod's name, as the processor does.
type ExcludeConfig struct {
	Pods []ExcludePod `json:"pods,omitempty"`
}

// ExcludePod is one exclusion.
type ExcludePod struct {
	Name string `json:"name"`
}

// Conventions chooses the attribute names of label/annotation rules and the
// image tag, as the processor's two feature gates do: V1 is
// k8s.<from>.label.<key> and container.image.tags, V0 is
// k8s.<from>.labels.<key> and container.image.tag. Both may be on.
//
// StartTimeFromCreation stamps the pod's creation time as
// k8s.pod.start_time, as the processor does, rather than status.startTime.
// (The processor also skips pods annotated
// opentelemetry.io/k8s-processor/ignore; the API server refuses that key, two
// slashes, so no pod can carry it and podstamp does not look for it.)
//
// ServiceKeys, when set, are the service.* attributes derived (the
// processor's extract.metadata lists them one by one); ServiceAnnotations
// off ignores the pod's resource.opentelemetry.io/service.* annotations when
// deriving (the processor reads them only with otel_annotations).
type Conventions struct {
	V0                    bool
	V1                    bool
	StartTimeFromCreation bool
	ServiceKeys           []string
	ServiceAnnotations    bool
}

// processorDefaultMetadata is the processor's default extract.metadata with
// its default feature gates (v1 names on, v0 names off).
var processorDefaultMetadata = []string{
	AttrImageName, AttrImageTags, "k8s.deployment.name",
	AttrNamespaceName, AttrNodeName, AttrPodName, AttrPodStartTime, AttrPodUID,
}

// processorDefaultExclude is the processor's default exclude block.
var processorDefaultExclude = []ExcludePod{{Name: "jaeger-agent"}, {Name: "jaeger-collector"}}

// processorBlock is the processor's configuration block, and the podstamp
// keys that may go with it.
type processorBlock struct {
	AuthType        string           `json:"auth_type"`
	Context         string           `json:"context"`
	KubeAPIQPS      *float64         `json:"kube_api_qps"`
	KubeAPIBurst    *int             `json:"kube_api_burst"`
	Passthrough     bool             `json:"passthrough"`
	Extract         processorExtract `json:"extract"`
	Filter          PodFilter        `json:"filter"`
	PodAssociation  []processorAssoc `json:"pod_association"`
	Exclude         *ExcludeConfig   `json:"exclude"`
	WaitForMetadata bool             `json:"wait_for_metadata"`
	WaitTimeout     string           `json:"wait_for_metadata_timeout"`
	WatchSyncPeriod string           `json:"watch_sync_period"`
	DeleteGrace     string           `json:"pod_delete_grace_period"`
	Kubelet         map[string]any   `json:"kubelet"`

	// podstamp's own keys.
	ClusterName   string          `json:"cluster_name"`
	TrustedRelays []TrustedRelay  `json:"trusted_relays"`
	Overwrite     OverwriteConfig `json:"overwrite"`
	FeatureGates  []string        `json:"feature_gates"`
}

type processorExtract struct {
	Metadata        *[]string   `json:"metadata"`
	Labels          []FieldRule `json:"labels"`
	Annotations     []FieldRule `json:"annotations"`
	OtelAnnotations bool        `json:"otel_annotations"`
}

type processorAssoc struct {
	Sources []processorSource `json:"sources"`
}

type processorSource struct {
	From string `json:"from"`
	Name string `json:"name"`
}

var processorSchema = schemaOf(reflect.TypeFor[processorBlock]())

// processorOnlyKeys are keys of the processor's block that podstamp's own
// layout does not have: a file with one of them is in the processor's layout.
var processorOnlyKeys = []string{
	"auth_type", "context", "kube_api_qps", "kube_api_burst", "passthrough", "extract",
	"pod_association", "wait_for_metadata", "wait_for_metadata_timeout", "watch_sync_period",
	"pod_delete_grace_period", "kubelet", "feature_gates",
}

func init() {
	for _, k := range []string{AttrPodHostname, AttrClusterUID, AttrImageTags, AttrRepoDigests} {
		allowedMetadata[k] = true
	}
	layouts = append(layouts, layout{name: "k8sattributes", claims: claimsProcessor, decode: decodeProcessor})
}

// claimsProcessor: the block has a key only the processor has, or is the
// processor's block under its name (k8sattributes: or k8sattributes/<name>:).
func claimsProcessor(top map[string]any) bool {
	if len(top) == 1 {
		for k := range top {
			if k == "k8sattributes" || strings.HasPrefix(k, "k8sattributes/") {
				return true
			}
		}
	}
	for _, k := range processorOnlyKeys {
		if _, ok := top[k]; ok {
			return true
		}
	}
	return false
}

// decodeProcessor maps the processor's block to a Config. Every default is
// the processor's; a key podstamp cannot honour is an error naming it and
// why.
func decodeProcessor(b []byte) (Config, error) {
	var raw any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return Config{}, err
	}
	if m, ok := raw.(map[string]any); ok && len(m) == 1 {
		for k, v := range m {
			if k == "k8sattributes" || strings.HasPrefix(k, "k8sattributes/") {
				raw = v
				if raw == nil {
					raw = map[string]any{}
				}
				var err error
				if b, err = yaml.Marshal(raw); err != nil {
					return Config{}, err
				}
			}
		}
	}
	if err := unknownFields("", raw, processorSchema); err != nil {
		return Config{}, err
	}
	var p processorBlock
	if err := yaml.Unmarshal(b, &p); err != nil {
		return Config{}, err
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	switch p.AuthType {
	case "", "serviceAccount", "kubeConfig":
		// podstamp's client: in-cluster, or --kubeconfig / KUBECONFIG.
	default:
		bad("auth_type: %q is not supported: podstamp authenticates with its service account or the kubeconfig of --kubeconfig (serviceAccount or kubeConfig)", p.AuthType)
	}
	if p.Context != "" {
		bad("context: podstamp uses the current context of its kubeconfig; choose %q there", p.Context)
	}
	if p.KubeAPIQPS != nil || p.KubeAPIBurst != nil {
		bad("kube_api_qps, kube_api_burst: podstamp's client is not rate-limited client-side (it makes one list, one watch and cached GETs); remove them")
	}
	if p.Passthrough {
		bad("passthrough: true is not supported: podstamp is the agent that stamps; it has no mode that only adds k8s.pod.ip")
	}
	if p.Kubelet != nil {
		if on, _ := p.Kubelet["enabled"].(bool); on {
			bad("kubelet.enabled: podstamp reads pods from the API server only")
		}
	}
	for _, d := range []struct{ key, v string }{{"wait_for_metadata_timeout", p.WaitTimeout}, {"watch_sync_period", p.WatchSyncPeriod}} {
		if d.v == "" {
			continue
		}
		if v, err := time.ParseDuration(d.v); err != nil || v < 0 {
			bad("%s: %q is not a duration", d.key, d.v)
		}
	}
	if p.DeleteGrace != "" {
		bad("pod_delete_grace_period: set podstamp's --pod-delete-grace (default 2m, the processor's 120s) instead")
	}
	if n := p.Filter.NodeFromEnvVar; n != "" {
		if _, ok := os.LookupEnv(n); !ok {
			bad("filter.node_from_env_var: the variable %q is not set", n)
		}
	}

	cfg := Config{
		AuthType:        p.AuthType,
		ClusterName:     p.ClusterName,
		OtelAnnotations: p.Extract.OtelAnnotations,
		Labels:          p.Extract.Labels,
		Annotations:     p.Extract.Annotations,
		TrustedRelays:   p.TrustedRelays,
		Overwrite:       p.Overwrite,
		Filter:          p.Filter,
		Exclude:         ExcludeConfig{Pods: slices.Clone(processorDefaultExclude)},
		Conventions:     &Conventions{V1: true, StartTimeFromCreation: true},
	}
	if p.Exclude != nil && len(p.Exclude.Pods) > 0 {
		// An empty list keeps the defaults, as in the processor.
		cfg.Exclude = *p.Exclude
	}
	for i, g := range p.FeatureGates {
		on := !strings.HasPrefix(g, "-")
		switch strings.TrimLeft(g, "+-") {
		case gateEmitV1:
			cfg.Conventions.V1 = on
		case gateDontEmitV0:
			cfg.Conventions.V0 = !on
		default:
			bad("feature_gates[%d]: %q: podstamp knows %s and %s", i, g, gateEmitV1, gateDontEmitV0)
		}
	}
	cfg.Conventions.ServiceAnnotations = cfg.OtelAnnotations
	if !cfg.Conventions.V1 && !cfg.Conventions.V0 {
		bad("feature_gates: %s cannot be enabled without %s (as in the processor)", gateDontEmitV0, gateEmitV1)
	}

	md := processorDefaultMetadata
	if p.Extract.Metadata != nil {
		md = *p.Extract.Metadata
	}
	for i, m := range md {
		switch {
		case m == AttrServiceName, m == AttrServiceNS, m == AttrServiceVersion, m == AttrServiceInst:
			// The processor's derivation is the semantic conventions'
			// order with the well-known labels.
			cfg.Service = ServiceConfig{Derive: true, WellKnownLabels: true}
			cfg.Conventions.ServiceKeys = append(cfg.Conventions.ServiceKeys, m)
			continue
		case m == AttrImageTag && !cfg.Conventions.V0, m == AttrImageTags && !cfg.Conventions.V1:
			// The processor accepts the key and emits nothing under these gates.
			continue
		case !allowedMetadata[m]:
			bad("extract.metadata[%d]: %q is not a metadata field podstamp or the processor can extract", i, m)
			continue
		}
		if !slices.Contains(cfg.Metadata, m) {
			cfg.Metadata = append(cfg.Metadata, m)
		}
	}
	if cfg.Metadata == nil {
		cfg.Metadata = []string{}
	}
	// The processor stamps k8s.node.uid whenever it reads nodes for a
	// label or annotation rule, listed or not.
	for _, r := range append(slices.Clone(cfg.Labels), cfg.Annotations...) {
		if r.From == "node" && !slices.Contains(cfg.Metadata, AttrNodeUID) {
			cfg.Metadata = append(cfg.Metadata, AttrNodeUID)
		}
	}

	// pod_association: for trusted relays only; every other sender is the
	// connection's pod. Without rules the processor tries k8s.pod.ip, then
	// the connection.
	if len(p.PodAssociation) == 0 {
		cfg.Association = []string{AttrPodIP, AssociationConnection}
	}
	for i, a := range p.PodAssociation {
		src, err := associationOf(a)
		if err != nil {
			bad("pod_association[%d]: %v", i, err)
			continue
		}
		if !slices.Contains(cfg.Association, src) {
			cfg.Association = append(cfg.Association, src)
		}
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return cfg, nil
}

// associationOf maps one pod_association rule to podstamp's source.
func associationOf(a processorAssoc) (string, error) {
	var names []string
	for _, s := range a.Sources {
		switch s.From {
		case "connection":
			names = append(names, AssociationConnection)
		case "resource_attribute":
			names = append(names, s.Name)
		default:
			return "", fmt.Errorf("from: %q: want connection or resource_attribute", s.From)
		}
	}
	sort.Strings(names)
	switch strings.Join(names, "+") {
	case AssociationConnection:
		return AssociationConnection, nil
	case AttrPodUID, AttrPodIP, AttrContainerID:
		return names[0], nil
	case AttrNamespaceName + "+" + AttrPodName:
		return AttrPodName, nil
	}
	return "", fmt.Errorf("sources %v: podstamp associates by k8s.pod.uid, k8s.pod.ip, k8s.pod.name with k8s.namespace.name, container.id or the connection, one rule each", names)
}

// ---------------------------------------------------------------- compiled

// AuthType is the processor block's auth_type ("" when the rules are in
// podstamp's layout or it is not set): serviceAccount or kubeConfig. Callers
// check it against how podstamp is told to reach the API server.
func (r *Rules) AuthType() string {
	if r == nil {
		return ""
	}
	return r.r.ext.authType
}

// FilterNode is the node the rules' filter names (filter.node, or the
// variable filter.node_from_env_var names), "" when none or r is nil.
// podstamp watches one node's pods: callers check that it is that node.
func (r *Rules) FilterNode() string {
	if r == nil {
		return ""
	}
	return r.r.ext.filterNode
}

// ruleExt is what the processor's layout added to a compiled rule set.
type ruleExt struct {
	authType        string
	filterNode      string
	filterNamespace string
	labelFilters    []compiledFilter
	fieldFilters    []compiledFilter
	exclude         []*regexp.Regexp
	conv            Conventions
}

type compiledFilter struct {
	key, value string
	op         string // equals, not-equals, exists, does-not-exist
}

// compileExt compiles c's filter, exclude and naming scheme into r.
func compileExt(c Config, r *rules, bad func(format string, args ...any)) {
	r.ext.conv = Conventions{V1: true, ServiceAnnotations: true}
	if c.Conventions != nil {
		r.ext.conv = *c.Conventions
	}
	r.ext.filterNamespace = c.Filter.Namespace
	r.ext.filterNode = c.Filter.NodeName()
	r.ext.authType = c.AuthType
	for i, f := range c.Filter.Labels {
		op := f.Op
		switch op {
		case "":
			op = "equals"
		case "equals", "not-equals", "exists", "does-not-exist":
		default:
			bad("filter.labels[%d].op: %q: want equals, not-equals, exists or does-not-exist", i, f.Op)
			continue
		}
		if f.Key == "" {
			bad("filter.labels[%d].key: empty", i)
			continue
		}
		r.ext.labelFilters = append(r.ext.labelFilters, compiledFilter{key: f.Key, value: f.Value, op: op})
	}
	for i, f := range c.Filter.Fields {
		op := f.Op
		switch op {
		case "":
			op = "equals"
		case "equals", "not-equals":
		default:
			bad("filter.fields[%d].op: %q: want equals or not-equals", i, f.Op)
			continue
		}
		switch f.Key {
		case "metadata.name", "metadata.namespace", "spec.nodeName", "spec.hostNetwork":
		default:
			bad("filter.fields[%d].key: %q: podstamp filters by metadata.name, metadata.namespace, spec.nodeName or spec.hostNetwork", i, f.Key)
			continue
		}
		r.ext.fieldFilters = append(r.ext.fieldFilters, compiledFilter{key: f.Key, value: f.Value, op: op})
	}
	for i, e := range c.Exclude.Pods {
		re, err := regexp.Compile(e.Name)
		if err != nil {
			bad("exclude.pods[%d].name: %v", i, err)
			continue
		}
		r.ext.exclude = append(r.ext.exclude, re)
	}
}

// admits reports whether pod p passes the filter and is not excluded: a pod
// that does not is never stamped, as the processor never sees it.
func (r *rules) admits(p *Pod) bool {
	x := &r.ext
	if x.filterNamespace != "" && p.Namespace != x.filterNamespace {
		return false
	}
	for _, f := range x.labelFilters {
		v, ok := p.Labels[f.key]
		switch f.op {
		case "equals":
			if !ok || v != f.value {
				return false
			}
		case "not-equals":
			if ok && v == f.value {
				return false
			}
		case "exists":
			if !ok {
				return false
			}
		case "does-not-exist":
			if ok {
				return false
			}
		}
	}
	for _, f := range x.fieldFilters {
		var v string
		switch f.key {
		case "metadata.name":
			v = p.Name
		case "metadata.namespace":
			v = p.Namespace
		case "spec.nodeName":
			v = p.NodeName
		case "spec.hostNetwork":
			v = fmt.Sprint(p.HostNetwork)
		}
		if (v == f.value) != (f.op == "equals") {
			return false
		}
	}
	for _, re := range x.exclude {
		if re.MatchString(p.Name) {
			return false
		}
	}
	return true
}

// workloadSource maps a FieldRule's from: to a workload kind.
func workloadSource(from string) (WorkloadKind, bool) {
	switch k := WorkloadKind(from); k {
	case Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob:
		return k, true
	}
	return "", false
}

// runStride packs the run of a container into a container choice: choice =
// index + run*runStride, run 0 the current run (IDs[0]), 1 the previous one
// (IDs[1]), 2 a run podstamp has no ID of.
const runStride = 1 << 16

// chooseContainer is selectContainer, and the run whose container.id is
// stamped: the one the resource's container.id names, else the one its
// k8s.container.restart_count names (the current run when it has none).
func chooseContainer(p *Pod, k *resKeys) int {
	c := selectContainer(p, k.containerID, k.containerName)
	if c < 0 {
		return c
	}
	ctr := &p.Containers[c]
	switch {
	case k.containerID != "" && len(ctr.IDs) > 1 && ctr.IDs[1] == k.containerID:
		return c + runStride
	case k.containerID != "" && len(ctr.IDs) > 0 && ctr.IDs[0] == k.containerID:
		return c
	case !k.restartSet || k.restart == int64(ctr.RestartCount):
		return c
	case k.restart == int64(ctr.RestartCount)-1 && len(ctr.IDs) > 1:
		return c + runStride
	}
	return c + 2*runStride
}

// containerIDOf is the container.id of container choice c, "" when none.
func containerIDOf(p *Pod, c int) string {
	if c < 0 {
		return ""
	}
	run, i := c/runStride, c%runStride
	if i >= len(p.Containers) || run >= len(p.Containers[i].IDs) {
		return ""
	}
	return p.Containers[i].IDs[run]
}

// restartCount reads k8s.container.restart_count: an int, or a string of
// digits.
func restartCount(cv clientValue) (int64, bool) {
	switch {
	case cv.isInt:
		return cv.i, true
	case cv.isStr && cv.str != "":
		n, err := strconv.ParseInt(cv.str, 10, 64)
		return n, err == nil
	}
	return 0, false
}
