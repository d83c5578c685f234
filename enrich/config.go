package enrich

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// Attribute keys podstamp reads or writes.
const (
	AttrNamespaceName  = "k8s.namespace.name"
	AttrPodName        = "k8s.pod.name"
	AttrPodUID         = "k8s.pod.uid"
	AttrPodStartTime   = "k8s.pod.start_time"
	AttrPodIP          = "k8s.pod.ip"
	AttrNodeName       = "k8s.node.name"
	AttrNodeUID        = "k8s.node.uid"
	AttrContainerName  = "k8s.container.name"
	AttrImageName      = "container.image.name"
	AttrImageTag       = "container.image.tag"
	AttrContainerID    = "container.id"
	AttrClusterName    = "k8s.cluster.name"
	AttrServiceName    = "service.name"
	AttrServiceNS      = "service.namespace"
	AttrServiceVersion = "service.version"
	AttrServiceInst    = "service.instance.id"

	// AssociationConnection is the association source "the connection's peer".
	AssociationConnection = "connection"

	// OtelAnnotationPrefix is the pod annotation prefix whose suffix becomes
	// an attribute key when otel_annotations is on.
	OtelAnnotationPrefix = "resource.opentelemetry.io/"
)

// workloadOrder is the order workload attributes are emitted in.
var workloadOrder = [...]WorkloadKind{Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob}

// defaultMetadata is the default value of Config.Metadata.
var defaultMetadata = []string{
	AttrNamespaceName, AttrPodName, AttrPodUID, AttrPodStartTime, AttrNodeName, AttrPodIP,
	"k8s.deployment.name", "k8s.replicaset.name", "k8s.statefulset.name", "k8s.daemonset.name",
	"k8s.job.name", "k8s.cronjob.name", AttrContainerName, AttrImageName,
	AttrImageTag, AttrContainerID,
}

// allowedMetadata is every key Config.Metadata may list.
var allowedMetadata = func() map[string]bool {
	m := map[string]bool{AttrNodeUID: true}
	for _, k := range defaultMetadata {
		m[k] = true
	}
	for _, w := range workloadOrder {
		m["k8s."+string(w)+".uid"] = true
	}
	return m
}()

// defaultAssociation is the default value of Config.Association.
var defaultAssociation = []string{AttrPodUID, AttrPodIP, AttrPodName, AttrContainerID, AssociationConnection}

// Config is the rule set: what podstamp stamps, how it finds the pod of a
// resource, and when it may replace what the client sent. Its YAML form is
// the --config file (and the Helm chart's config value).
type Config struct {
	// ClusterName, when set, is stamped as k8s.cluster.name.
	ClusterName string `json:"cluster_name,omitempty"`
	// Metadata lists the pod, workload, node and container attributes to stamp.
	Metadata []string `json:"metadata"`
	// OtelAnnotations turns pod annotations resource.opentelemetry.io/<key>
	// into attribute <key>.
	OtelAnnotations bool `json:"otel_annotations"`
	// Labels and Annotations extract label / annotation values of the pod,
	// its namespace or its node.
	Labels      []FieldRule `json:"labels,omitempty"`
	Annotations []FieldRule `json:"annotations,omitempty"`
	// Service derives service.* attributes.
	Service ServiceConfig `json:"service"`
	// Association lists, in order, how a resource from a trusted relay finds
	// its pod: by its k8s.pod.uid, k8s.pod.ip, k8s.pod.name
	// (+k8s.namespace.name) or container.id attribute, or by the connection's
	// peer address. It applies to trusted relays only: every other sender's
	// resources are the connection's pod.
	Association []string `json:"association"`
	// TrustedRelays are the senders (collectors, agents) whose resources may
	// name any pod of this node. Empty by default: no sender is trusted.
	TrustedRelays []TrustedRelay `json:"trusted_relays,omitempty"`
	// Overwrite says when a client's non-empty value may be replaced.
	Overwrite OverwriteConfig `json:"overwrite"`
	// Filter and Exclude choose the pods that are stamped at all, as the
	// k8sattributes processor's blocks of these names do (k8sattributes.go).
	Filter  PodFilter     `json:"filter,omitzero"`
	Exclude ExcludeConfig `json:"exclude,omitzero"`
	// Conventions chooses label/annotation and image tag attribute names;
	// nil is the v1 names only. Set by the processor's layout.
	Conventions *Conventions `json:"-"`
	// AuthType is the processor block's auth_type, set by its layout.
	AuthType string `json:"-"`
}

// FieldRule extracts labels or annotations into attributes, in the spirit of
// the k8sattributes processor's extract.labels / extract.annotations.
type FieldRule struct {
	// From is pod (default), namespace, node, or the pod's deployment,
	// replicaset, statefulset, daemonset, job or cronjob.
	From string `json:"from,omitempty"`
	// Key is an exact label/annotation key. KeyRegex is an anchored regular
	// expression matched against every key. Exactly one of them is set.
	Key      string `json:"key,omitempty"`
	KeyRegex string `json:"key_regex,omitempty"`
	// TagName is the attribute key; with KeyRegex it may use $1 etc.
	// Default: k8s.<from>.label.<key> (annotation: k8s.<from>.annotation.<key>).
	TagName string `json:"tag_name,omitempty"`
}

// ServiceConfig controls service.* derivation.
type ServiceConfig struct {
	// Derive stamps service.name, service.namespace, service.version and
	// service.instance.id in the order of the semantic conventions.
	Derive bool `json:"derive"`
	// WellKnownLabels also uses app.kubernetes.io/{instance,name,version}.
	WellKnownLabels bool `json:"well_known_labels"`
}

// OverwriteConfig lists when a client's value is replaced.
type OverwriteConfig struct {
	// Keys are attribute keys whose client value podstamp replaces.
	Keys []string `json:"keys,omitempty"`
	// UnknownService replaces a service.name that starts with "unknown_service"
	// (the SDK default).
	UnknownService bool `json:"unknown_service"`
}

// Needs tells the pod cache what it must fetch besides the pod itself.
type Needs struct {
	NamespaceMetadata bool // labels/annotations of the pod's namespace
	NodeMetadata      bool // labels/annotations/UID of the pod's node
	WorkloadUIDs      bool // UIDs of the owning workloads
	WorkloadMetadata  bool // labels/annotations of the owning workloads
	ClusterUID        bool // the UID of namespace kube-system (k8s.cluster.uid)
}

// DefaultConfig returns the defaults: the pod, workload and container
// attributes of the default metadata list, otel_annotations on, no
// label/annotation rules, no service derivation, no trusted relays
// (association, by k8s.pod.uid, k8s.pod.ip, k8s.pod.name, container.id, then
// connection, applies to trusted relays only), and no overwriting.
func DefaultConfig() Config {
	return Config{
		Metadata:        append([]string(nil), defaultMetadata...),
		OtelAnnotations: true,
		Association:     append([]string(nil), defaultAssociation...),
	}
}

// Rules is a compiled Config: what a Stamper applies. Compile (or Load)
// makes it once; it is read-only and shared by every request.
type Rules struct {
	r     *rules
	needs Needs
}

// Compile checks every rule of c and compiles it. The error names each bad
// rule by its path (e.g. "labels[2].key_regex: ..."), all of them.
func Compile(c Config) (*Rules, error) {
	r, err := compile(c)
	if err != nil {
		return nil, err
	}
	return &Rules{r: r, needs: c.Needs()}, nil
}

// Needs reports what the pod cache must fetch for these rules.
func (r *Rules) Needs() Needs { return r.needs }

// Load reads and compiles a rule file. An empty path gives the defaults.
func Load(path string) (*Rules, error) {
	cfg, err := LoadConfig(path)
	if err != nil {
		return nil, err
	}
	r, err := Compile(cfg)
	if err != nil {
		return nil, fmt.Errorf("enrich config %s: %w", path, err)
	}
	return r, nil
}

// LoadConfig reads a rule file without compiling it: Load does both. Fields
// it omits keep their defaults; unknown fields are an error. An empty path
// returns DefaultConfig.
func LoadConfig(path string) (Config, error) {
	if path == "" {
		return DefaultConfig(), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("enrich config: %w", err)
	}
	cfg, err := decode(b)
	if err != nil {
		return Config{}, fmt.Errorf("enrich config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig parses and validates a rule file's contents, starting from the
// defaults.
func ParseConfig(b []byte) (Config, error) {
	cfg, err := decode(b)
	if err != nil {
		return Config{}, err
	}
	return cfg, cfg.Validate()
}

// Validate checks every rule; the error names each bad rule by its path
// (e.g. "labels[2].key_regex: ..."), all of them.
func (c Config) Validate() error {
	_, err := compile(c)
	return err
}

// layout is one form a rule file may take. Every layout decodes into a
// Config, which Compile checks: a layout only translates.
type layout struct {
	name string
	// claims reports whether a file with these top-level keys is in this layout.
	claims func(top map[string]any) bool
	// decode turns the file into a Config, starting from DefaultConfig.
	decode func(b []byte) (Config, error)
}

// layouts are the rule file layouts besides podstamp's own, tried in order;
// a file no layout claims is in podstamp's own layout (decodeOwn).
var layouts []layout

// decode turns a rule file, in any layout podstamp reads, into a Config.
func decode(b []byte) (Config, error) {
	var top map[string]any
	if err := yaml.Unmarshal(b, &top); err != nil {
		return Config{}, err
	}
	for _, l := range layouts {
		if l.claims(top) {
			cfg, err := l.decode(b)
			if err != nil {
				return Config{}, fmt.Errorf("%s layout: %w", l.name, err)
			}
			return cfg, nil
		}
	}
	return decodeOwn(b)
}

// decodeOwn decodes podstamp's own layout (Config's YAML form) over the
// defaults. Unknown fields are an error naming each by its path.
func decodeOwn(b []byte) (Config, error) {
	var raw any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return Config{}, err
	}
	if err := unknownFields("", raw, configSchema); err != nil {
		return Config{}, err
	}
	cfg := DefaultConfig()
	if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// schema lists the keys of each YAML object, to name an unknown field by its
// path. A nil schema is a scalar or a map of free keys.
type schema map[string]schema

// configSchema is Config's keys, read from its json tags.
var configSchema = schemaOf(reflect.TypeFor[Config]())

// schemaOf derives the schema of t from the json tags of its fields.
func schemaOf(t reflect.Type) schema {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	s := schema{}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		s[name] = schemaOf(f.Type)
	}
	return s
}

// unknownFields rejects keys the schema does not know, naming each by its path.
func unknownFields(path string, v any, s schema) error {
	join := func(k string) string {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	var errs []error
	switch v := v.(type) {
	case map[string]any:
		if s == nil {
			return nil // a scalar field given a map: the typed decoder reports it
		}
		for _, k := range sortedKeysAny(v) {
			sub, ok := s[k]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: unknown field %q", join(k), k))
				continue
			}
			errs = append(errs, unknownFields(join(k), v[k], sub))
		}
	case []any:
		for i, e := range v {
			errs = append(errs, unknownFields(fmt.Sprintf("%s[%d]", path, i), e, s))
		}
	}
	return errors.Join(errs...)
}

func sortedKeysAny(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Needs reports what the pod cache must fetch for these rules.
func (c Config) Needs() Needs {
	var n Needs
	for _, m := range c.Metadata {
		switch {
		case m == AttrNodeUID:
			n.NodeMetadata = true
		case m == AttrClusterUID:
			n.ClusterUID = true
		case strings.HasSuffix(m, ".uid") && m != AttrPodUID:
			n.WorkloadUIDs = true
		}
	}
	for _, rules := range [][]FieldRule{c.Labels, c.Annotations} {
		for _, r := range rules {
			switch r.From {
			case "namespace":
				n.NamespaceMetadata = true
			case "node":
				n.NodeMetadata = true
			default:
				if _, ok := workloadSource(r.From); ok {
					n.WorkloadMetadata = true
				}
			}
		}
	}
	return n
}

// source is where a FieldRule reads from.
type source uint8

const (
	fromPod source = iota
	fromNamespace
	fromNode
	fromWorkload
)

// fieldRule is a compiled FieldRule.
type fieldRule struct {
	from       source
	fromName   string
	workload   WorkloadKind // from a workload
	annotation bool
	key        string
	re         *regexp.Regexp
	tagName    string
}

// assocKind is one compiled association source.
type assocKind uint8

const (
	assocUID assocKind = iota
	assocIP
	assocName
	assocContainerID
	assocConnection
)

// rules is a compiled Config.
type rules struct {
	metadata        map[string]bool
	clusterName     string
	otelAnnotations bool
	labels          []fieldRule
	annotations     []fieldRule
	derive          bool
	wellKnown       bool
	association     []assocKind
	trust           []trustRule
	overwrite       map[string]bool
	unknownService  bool
	ext             ruleExt
}

func compile(c Config) (*rules, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	r := &rules{
		metadata:        map[string]bool{},
		clusterName:     c.ClusterName,
		otelAnnotations: c.OtelAnnotations,
		derive:          c.Service.Derive,
		wellKnown:       c.Service.WellKnownLabels,
		overwrite:       map[string]bool{},
		unknownService:  c.Overwrite.UnknownService,
	}
	if c.Service.WellKnownLabels && !c.Service.Derive {
		bad("service.well_known_labels: needs service.derive: true")
	}
	for i, m := range c.Metadata {
		if !allowedMetadata[m] {
			bad("metadata[%d]: unknown attribute %q", i, m)
			continue
		}
		if r.metadata[m] {
			bad("metadata[%d]: %q listed twice", i, m)
		}
		r.metadata[m] = true
	}
	compileRules := func(name string, in []FieldRule, annotation bool) []fieldRule {
		var out []fieldRule
		for i, fr := range in {
			path := fmt.Sprintf("%s[%d]", name, i)
			cr := fieldRule{annotation: annotation, key: fr.Key, tagName: fr.TagName}
			switch fr.From {
			case "", "pod":
				cr.from, cr.fromName = fromPod, "pod"
			case "namespace":
				cr.from, cr.fromName = fromNamespace, "namespace"
			case "node":
				cr.from, cr.fromName = fromNode, "node"
			default:
				k, ok := workloadSource(fr.From)
				if !ok {
					bad("%s.from: unknown source %q (want pod, namespace, node, deployment, replicaset, statefulset, daemonset, job or cronjob)", path, fr.From)
					continue
				}
				cr.from, cr.fromName, cr.workload = fromWorkload, fr.From, k
			}
			switch {
			case fr.Key != "" && fr.KeyRegex != "":
				bad("%s: set key or key_regex, not both", path)
				continue
			case fr.Key == "" && fr.KeyRegex == "":
				bad("%s: set key or key_regex", path)
				continue
			case fr.KeyRegex != "":
				re, err := regexp.Compile("^(?:" + fr.KeyRegex + ")$")
				if err != nil {
					bad("%s.key_regex: %v", path, err)
					continue
				}
				cr.re = re
			default:
				if strings.Contains(fr.TagName, "$") {
					bad("%s.tag_name: $-references need key_regex", path)
					continue
				}
			}
			out = append(out, cr)
		}
		return out
	}
	r.labels = compileRules("labels", c.Labels, false)
	r.annotations = compileRules("annotations", c.Annotations, true)
	seen := map[assocKind]bool{}
	for i, a := range c.Association {
		var k assocKind
		switch a {
		case AttrPodUID:
			k = assocUID
		case AttrPodIP:
			k = assocIP
		case AttrPodName:
			k = assocName
		case AttrContainerID:
			k = assocContainerID
		case AssociationConnection:
			k = assocConnection
		default:
			bad("association[%d]: unknown source %q (want k8s.pod.uid, k8s.pod.ip, k8s.pod.name, container.id or connection)", i, a)
			continue
		}
		if seen[k] {
			bad("association[%d]: %q listed twice", i, a)
			continue
		}
		seen[k] = true
		r.association = append(r.association, k)
	}
	r.trust = compileTrust(c.TrustedRelays, bad)
	compileExt(c, r, bad)
	for i, k := range c.Overwrite.Keys {
		if k == "" {
			bad("overwrite.keys[%d]: empty key", i)
			continue
		}
		r.overwrite[k] = true
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return r, nil
}
