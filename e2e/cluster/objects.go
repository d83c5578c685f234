package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// CreateNamespace creates a namespace (labels optional) and its "default"
// ServiceAccount, which a controller-manager would otherwise create and which
// the ServiceAccount admission plugin requires before pods can be created.
func (c *Cluster) CreateNamespace(ctx context.Context, name string, labels map[string]string) error {
	_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return c.CreateServiceAccount(ctx, name, "default")
}

// CreateServiceAccount creates a ServiceAccount (no error if it exists).
func (c *Cluster) CreateServiceAccount(ctx context.Context, namespace, name string) error {
	_, err := c.Client.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: name},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create serviceaccount %s/%s: %w", namespace, name, err)
	}
	return nil
}

// DeleteNamespace deletes every pod of the namespace, then the namespace.
// Without a namespace controller the namespace itself stays Terminating; its
// pods are gone, which is what watchers see.
func (c *Cluster) DeleteNamespace(ctx context.Context, name string) error {
	zero := int64(0)
	err := c.Client.CoreV1().Pods(name).DeleteCollection(ctx,
		metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete pods of %s: %w", name, err)
	}
	err = c.Client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete namespace %s: %w", name, err)
	}
	return nil
}

// ServiceAccountToken returns a token for the ServiceAccount from the
// TokenRequest API, valid for ttl (at least 10 minutes, the API's minimum).
func (c *Cluster) ServiceAccountToken(ctx context.Context, namespace, name string, ttl time.Duration) (string, error) {
	if ttl < 10*time.Minute {
		ttl = 10 * time.Minute
	}
	tr, err := c.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(ttl / time.Second))},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token request for %s/%s: %w", namespace, name, err)
	}
	return tr.Status.Token, nil
}

// Node describes a Node object.
type Node struct {
	Name string
	// InternalIPs become status.addresses of type InternalIP.
	InternalIPs []netip.Addr
	PodCIDRs    []netip.Prefix
	Labels      map[string]string
}

// CreateNode creates a Node and sets its addresses through the status subresource.
func (c *Cluster) CreateNode(ctx context.Context, n Node) (*corev1.Node, error) {
	obj := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.Labels}}
	for i, p := range n.PodCIDRs {
		if i == 0 {
			obj.Spec.PodCIDR = p.String()
		}
		obj.Spec.PodCIDRs = append(obj.Spec.PodCIDRs, p.String())
	}
	created, err := c.Client.CoreV1().Nodes().Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create node %s: %w", n.Name, err)
	}
	created.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: n.Name}}
	for _, ip := range n.InternalIPs {
		created.Status.Addresses = append(created.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip.String()})
	}
	created.Status.Conditions = []corev1.NodeCondition{{
		Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
		LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(),
	}}
	updated, err := c.Client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("node %s status: %w", n.Name, err)
	}
	return updated, nil
}

// DeleteNode deletes a Node (no error if it is gone).
func (c *Cluster) DeleteNode(ctx context.Context, name string) error {
	err := c.Client.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

// Deployment is a Deployment and the ReplicaSet that owns its pods, created
// as a controller-manager would have left them (replicas 0: nothing reconciles).
type Deployment struct {
	Namespace string
	Name      string
	// Hash is the pod-template-hash; the ReplicaSet is "<Name>-<Hash>".
	Hash            string
	DeploymentUID   types.UID
	ReplicaSetName  string
	ReplicaSetUID   types.UID
	Labels          map[string]string // pod template labels, without the hash
	PodTemplateHash string
}

// CreateDeployment creates a Deployment and its ReplicaSet "<name>-<hash>",
// the ReplicaSet owned by the Deployment.
func (c *Cluster) CreateDeployment(ctx context.Context, namespace, name, hash string) (*Deployment, error) {
	labels := map[string]string{"app.kubernetes.io/name": name}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(0)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/" + name + ":1.0.0"}}},
			},
		},
	}
	d, err := c.Client.AppsV1().Deployments(namespace).Create(ctx, dep, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create deployment %s/%s: %w", namespace, name, err)
	}
	rsLabels := map[string]string{"app.kubernetes.io/name": name, "pod-template-hash": hash}
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name: name + "-" + hash, Namespace: namespace, Labels: rsLabels,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "Deployment", Name: name, UID: d.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr.To(int32(0)),
			Selector: &metav1.LabelSelector{MatchLabels: rsLabels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: rsLabels},
				Spec:       dep.Spec.Template.Spec,
			},
		},
	}
	r, err := c.Client.AppsV1().ReplicaSets(namespace).Create(ctx, rs, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create replicaset %s/%s: %w", namespace, rs.Name, err)
	}
	return &Deployment{
		Namespace: namespace, Name: name, Hash: hash, DeploymentUID: d.UID,
		ReplicaSetName: r.Name, ReplicaSetUID: r.UID, Labels: labels, PodTemplateHash: hash,
	}, nil
}

// Pod describes a pod to create.
type Pod struct {
	Namespace string
	// Name of the pod; "" derives "<ReplicaSetName>-<5 random chars>" when
	// Owner is set.
	Name     string
	NodeName string
	// Owner makes the pod one of the Deployment's (ownerReference to its
	// ReplicaSet, pod-template-hash label).
	Owner       *Deployment
	Labels      map[string]string
	Annotations map[string]string
	HostNetwork bool
	// Containers: name and image; defaults to one container "app".
	Containers []Container
}

// Container is one container of a Pod.
type Container struct {
	Name  string
	Image string
}

// CreatePod creates a Pod bound to its node (status still Pending, no IP).
func (c *Cluster) CreatePod(ctx context.Context, p Pod) (*corev1.Pod, error) {
	labels := map[string]string{}
	for k, v := range p.Labels {
		labels[k] = v
	}
	obj := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, Annotations: p.Annotations},
		Spec: corev1.PodSpec{
			NodeName:                     p.NodeName,
			HostNetwork:                  p.HostNetwork,
			AutomountServiceAccountToken: ptr.To(false),
		},
	}
	if p.Owner != nil {
		for k, v := range p.Owner.Labels {
			labels[k] = v
		}
		labels["pod-template-hash"] = p.Owner.Hash
		obj.OwnerReferences = []metav1.OwnerReference{{
			APIVersion: "apps/v1", Kind: "ReplicaSet", Name: p.Owner.ReplicaSetName, UID: p.Owner.ReplicaSetUID,
			Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
		}}
		if p.Name == "" {
			obj.GenerateName = p.Owner.ReplicaSetName + "-"
		}
	}
	obj.Labels = labels
	cs := p.Containers
	if len(cs) == 0 {
		cs = []Container{{Name: "app", Image: "registry.example/app:1.0.0"}}
	}
	for _, ct := range cs {
		obj.Spec.Containers = append(obj.Spec.Containers, corev1.Container{Name: ct.Name, Image: ct.Image})
	}
	created, err := c.Client.CoreV1().Pods(p.Namespace).Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create pod %s/%s: %w", p.Namespace, p.Name+obj.GenerateName, err)
	}
	return created, nil
}

// PodStatus is what a kubelet would report for a started pod.
type PodStatus struct {
	IPs    []netip.Addr
	HostIP netip.Addr
	// Phase defaults to Running.
	Phase corev1.PodPhase
	// StartTime defaults to now.
	StartTime time.Time
}

// SetPodRunning patches the pod's status subresource: phase, podIP/podIPs,
// hostIP, startTime, Ready condition and one running containerStatus per
// container with a fresh containerd:// container ID. It returns the updated pod.
func (c *Cluster) SetPodRunning(ctx context.Context, pod *corev1.Pod, st PodStatus) (*corev1.Pod, error) {
	if st.Phase == "" {
		st.Phase = corev1.PodRunning
	}
	if st.StartTime.IsZero() {
		st.StartTime = time.Now()
	}
	start := metav1.NewTime(st.StartTime.Truncate(time.Second))
	status := corev1.PodStatus{Phase: st.Phase, StartTime: &start}
	if st.HostIP.IsValid() {
		status.HostIP = st.HostIP.String()
		status.HostIPs = []corev1.HostIP{{IP: st.HostIP.String()}}
	}
	for i, ip := range st.IPs {
		if i == 0 {
			status.PodIP = ip.String()
		}
		status.PodIPs = append(status.PodIPs, corev1.PodIP{IP: ip.String()})
	}
	status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: start},
		{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: start},
	}
	for _, ct := range pod.Spec.Containers {
		status.ContainerStatuses = append(status.ContainerStatuses, corev1.ContainerStatus{
			Name:        ct.Name,
			Image:       ct.Image,
			ImageID:     ct.Image + "@sha256:" + randHex(32),
			ContainerID: "containerd://" + randHex(32),
			Ready:       true,
			Started:     ptr.To(true),
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: start}},
		})
	}
	patch, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return nil, err
	}
	updated, err := c.Client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch,
		metav1.PatchOptions{}, "status")
	if err != nil {
		return nil, fmt.Errorf("patch status of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return updated, nil
}

// StartPod creates a pod and sets it running with the given status: the two
// steps a scheduler-bound pod goes through until its IPs are known.
func (c *Cluster) StartPod(ctx context.Context, p Pod, st PodStatus) (*corev1.Pod, error) {
	pod, err := c.CreatePod(ctx, p)
	if err != nil {
		return nil, err
	}
	return c.SetPodRunning(ctx, pod, st)
}

// DeletePod deletes a pod at once (grace period 0); no error if it is gone.
func (c *Cluster) DeletePod(ctx context.Context, namespace, name string) error {
	zero := int64(0)
	err := c.Client.CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete pod %s/%s: %w", namespace, name, err)
	}
	return nil
}

// ContainerIDs returns the pod's container IDs without the runtime prefix.
func ContainerIDs(pod *corev1.Pod) []string {
	var ids []string
	for _, s := range pod.Status.ContainerStatuses {
		id := s.ContainerID
		for i := 0; i+3 <= len(id); i++ {
			if id[i:i+3] == "://" {
				id = id[i+3:]
				break
			}
		}
		ids = append(ids, id)
	}
	return ids
}

var errNoPodIP = errors.New("pod has no IP")

// PodIP returns the pod's first IP from status.
func PodIP(pod *corev1.Pod) (netip.Addr, error) {
	if pod.Status.PodIP == "" {
		return netip.Addr{}, errNoPodIP
	}
	return netip.ParseAddr(pod.Status.PodIP)
}
