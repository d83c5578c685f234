package informer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"

	"github.com/podstamp/podstamp/informer/kubetypes"
)

// API is what the cache reads from the Kubernetes API server. NewAPI is the
// implementation for a real API server; tests adapt a fake clientset.
//
// Errors keep the semantics of k8s.io/apimachinery/pkg/api/errors: a missing
// object is IsNotFound (cached as absent), a denied read IsForbidden.
type API interface {
	// ListPods lists pods in all namespaces with opts (the cache sets the
	// field selector spec.nodeName=<node>).
	ListPods(ctx context.Context, opts metav1.ListOptions) (*kubetypes.PodList, error)
	// WatchPods watches pods in all namespaces with opts.
	WatchPods(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
	// GetNode reads a node (labels, annotations, UID, addresses, pod CIDRs).
	GetNode(ctx context.Context, name string) (*kubetypes.Node, error)
	// GetNamespaceMetadata reads the metadata of a namespace (labels,
	// annotations, UID).
	GetNamespaceMetadata(ctx context.Context, name string) (*metav1.PartialObjectMetadata, error)
	// GetReplicaSetMetadata reads the metadata of an apps/v1 ReplicaSet (UID
	// and owner references).
	GetReplicaSetMetadata(ctx context.Context, namespace, name string) (*metav1.PartialObjectMetadata, error)
	// GetJobMetadata reads the metadata of a batch/v1 Job (UID and owner
	// references).
	GetJobMetadata(ctx context.Context, namespace, name string) (*metav1.PartialObjectMetadata, error)
}

// Media types NewAPI sends and accepts. Pods and nodes are read as JSON
// only: protobuf would need the generated code of k8s.io/api/core/v1.
const (
	mediaJSON = "application/json"
	// acceptMetadata asks for the object's metadata only; a server that
	// cannot convert answers with the whole object as JSON, whose metadata
	// is read the same way.
	acceptMetadata = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1, application/json"
)

// scheme knows only what NewAPI decodes: the lean v1 Pod, PodList and Node
// of package kubetypes, the meta.k8s.io types (options, Status, WatchEvent,
// PartialObjectMetadata). It is not client-go's scheme of every API group,
// and no k8s.io/api package is linked.
var (
	scheme     = runtime.NewScheme()
	codecs     = serializer.NewCodecFactory(scheme)
	paramCodec = runtime.NewParameterCodec(scheme)
)

func init() {
	if err := kubetypes.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		panic(err)
	}
}

// restAPI is API on a client-go REST client.
type restAPI struct {
	rc *rest.RESTClient
}

// NewAPI returns the API of the server cfg points to. Pods and nodes are
// read as JSON into the lean types of package kubetypes, namespaces,
// ReplicaSets and Jobs as metadata only, so no typed clientset, no scheme of
// every API group and no k8s.io/api package is needed. cfg is copied; its
// QPS, Burst, UserAgent and transport settings apply to every request; its
// content types are replaced by JSON.
func NewAPI(cfg *rest.Config) (API, error) {
	if cfg == nil {
		return nil, errors.New("informer: nil rest config")
	}
	c := rest.CopyConfig(cfg)
	c.APIPath = "/api"
	c.GroupVersion = &kubetypes.SchemeGroupVersion
	c.ContentType = mediaJSON
	c.AcceptContentTypes = mediaJSON
	c.NegotiatedSerializer = codecs.WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("informer: %w", err)
	}
	return &restAPI{rc: rc}, nil
}

func timeoutOf(opts metav1.ListOptions) time.Duration {
	if opts.TimeoutSeconds == nil {
		return 0
	}
	return time.Duration(*opts.TimeoutSeconds) * time.Second
}

func (a *restAPI) ListPods(ctx context.Context, opts metav1.ListOptions) (*kubetypes.PodList, error) {
	l := &kubetypes.PodList{}
	err := a.rc.Get().Resource("pods").VersionedParams(&opts, paramCodec).Timeout(timeoutOf(opts)).Do(ctx).Into(l)
	if err != nil {
		return nil, err
	}
	return l, nil
}

func (a *restAPI) WatchPods(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return a.rc.Get().Resource("pods").VersionedParams(&opts, paramCodec).Timeout(timeoutOf(opts)).Watch(ctx)
}

func (a *restAPI) GetNode(ctx context.Context, name string) (*kubetypes.Node, error) {
	if name == "" {
		return nil, errors.New("informer: node name is required")
	}
	n := &kubetypes.Node{}
	if err := a.rc.Get().Resource("nodes").Name(name).Do(ctx).Into(n); err != nil {
		return nil, err
	}
	return n, nil
}

func (a *restAPI) GetNamespaceMetadata(ctx context.Context, name string) (*metav1.PartialObjectMetadata, error) {
	return a.getMetadata(ctx, "/api", "v1", "", "namespaces", name)
}

func (a *restAPI) GetReplicaSetMetadata(ctx context.Context, namespace, name string) (*metav1.PartialObjectMetadata, error) {
	return a.getMetadata(ctx, "/apis", "apps/v1", namespace, "replicasets", name)
}

func (a *restAPI) GetJobMetadata(ctx context.Context, namespace, name string) (*metav1.PartialObjectMetadata, error) {
	return a.getMetadata(ctx, "/apis", "batch/v1", namespace, "jobs", name)
}

// getMetadata GETs /<prefix>/<groupVersion>/[namespaces/<ns>/]<resource>/<name>
// as PartialObjectMetadata.
func (a *restAPI) getMetadata(ctx context.Context, prefix, groupVersion, ns, resource, name string) (*metav1.PartialObjectMetadata, error) {
	if name == "" {
		return nil, fmt.Errorf("informer: %s name is required", resource)
	}
	segs := []string{prefix, groupVersion}
	if ns != "" {
		segs = append(segs, "namespaces", ns)
	}
	segs = append(segs, resource, name)
	res := a.rc.Get().AbsPath(segs...).SetHeader("Accept", acceptMetadata).Do(ctx)
	if err := res.Error(); err != nil {
		return nil, err // *apierrors.StatusError for answers of the server
	}
	m := &metav1.PartialObjectMetadata{}
	err := res.Into(m)
	if runtime.IsNotRegisteredError(err) {
		// The whole object (an old or aggregated server): its metadata is
		// what PartialObjectMetadata reads from it.
		raw, rerr := res.Raw()
		if rerr != nil {
			return nil, rerr
		}
		m = &metav1.PartialObjectMetadata{}
		if err = json.Unmarshal(raw, m); err == nil && m.UID == "" && m.Name == "" {
			err = fmt.Errorf("no object metadata in the answer for %s %s", resource, name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("decoding %s %s: %w", resource, name, err)
	}
	return m, nil
}
