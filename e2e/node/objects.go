package node

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Namespaces of the cluster's workloads.
const (
	ObsNamespace  = "observability"
	DemoNamespace = "demo"
)

var never = corev1.PullNever

func nonRootContext() *corev1.SecurityContext {
	t, f := true, false
	return &corev1.SecurityContext{
		RunAsNonRoot: &t, ReadOnlyRootFilesystem: &t, AllowPrivilegeEscalation: &f,
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
}

// SinkObjects are the sink's Deployment and Service.
func SinkObjects() (*appsv1.Deployment, *corev1.Service) {
	labels := map[string]string{"app": "sink"}
	one := int32(1)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "sink", Namespace: ObsNamespace},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "sink", Image: SinkImage, ImagePullPolicy: never,
					Ports:           []corev1.ContainerPort{{Name: "otlp-grpc", ContainerPort: 4317}, {Name: "results", ContainerPort: 8080}},
					SecurityContext: nonRootContext(),
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
						Path: "/healthz", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1},
				}}},
			},
		},
	}
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "sink", Namespace: ObsNamespace},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "otlp-grpc", Port: 4317, TargetPort: intstr.FromInt32(4317)}}},
	}
	return d, s
}

// CollectorConfig is the Collector's configuration: the OTLP receiver, the
// k8sattributes processor associating by k8s.pod.uid and then by the
// connection's address (which it also writes to k8s.pod.ip), and the OTLP
// exporter to the sink.
func CollectorConfig(sink string) string {
	return fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317
      http:
        endpoint: 0.0.0.0:4318
processors:
  k8sattributes:
    auth_type: serviceAccount
    passthrough: false
    filter:
      node_from_env_var: K8S_NODE_NAME
    extract:
      metadata: [k8s.namespace.name, k8s.pod.name, k8s.pod.uid, k8s.node.name, k8s.deployment.name]
    pod_association:
      - sources: [{from: resource_attribute, name: k8s.pod.uid}]
      - sources: [{from: connection}]
exporters:
  otlp_grpc:
    endpoint: %s
    tls:
      insecure: true
service:
  telemetry:
    logs:
      level: info
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      processors: [k8sattributes]
      exporters: [otlp_grpc]
    metrics:
      receivers: [otlp]
      processors: [k8sattributes]
      exporters: [otlp_grpc]
    logs:
      receivers: [otlp]
      processors: [k8sattributes]
      exporters: [otlp_grpc]
`, sink)
}

// CollectorObjects are the Collector's RBAC, ConfigMap, Service and
// DaemonSet; hostPort gives the DaemonSet hostPorts 4317 and 4318, as the
// Collector's DaemonSet examples do.
func CollectorObjects(sink string, hostPort bool) (*corev1.ServiceAccount, *rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding, *corev1.ConfigMap, *corev1.Service, *appsv1.DaemonSet) {
	labels := map[string]string{"app": "otelcol"}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "otelcol", Namespace: ObsNamespace}}
	cr := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "otelcol"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods", "namespaces", "nodes"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"apps"}, Resources: []string{"replicasets"}, Verbs: []string{"get", "list", "watch"}},
		},
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "otelcol"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "otelcol"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "otelcol", Namespace: ObsNamespace}},
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "otelcol", Namespace: ObsNamespace},
		Data: map[string]string{"config.yaml": CollectorConfig(sink)}}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "otelcol", Namespace: ObsNamespace},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{
			{Name: "otlp-grpc", Port: 4317, TargetPort: intstr.FromInt32(4317)},
			{Name: "otlp-http", Port: 4318, TargetPort: intstr.FromInt32(4318)},
		}},
	}
	ports := []corev1.ContainerPort{{Name: "otlp-grpc", ContainerPort: 4317}, {Name: "otlp-http", ContainerPort: 4318}}
	if hostPort {
		ports[0].HostPort, ports[1].HostPort = 4317, 4318
	}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "otelcol", Namespace: ObsNamespace},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName: "otelcol",
					Containers: []corev1.Container{{
						Name: "otelcol", Image: CollectorImage, ImagePullPolicy: never,
						Args:  []string{"--config=file:/conf/config.yaml"},
						Ports: ports,
						Env: []corev1.EnvVar{{Name: "K8S_NODE_NAME", ValueFrom: &corev1.EnvVarSource{
							FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}}},
						VolumeMounts:    []corev1.VolumeMount{{Name: "conf", MountPath: "/conf"}},
						SecurityContext: nonRootContext(),
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{
							Port: intstr.FromInt32(4317)}}, PeriodSeconds: 1},
					}},
					Volumes: []corev1.Volume{{Name: "conf", VolumeSource: corev1.VolumeSource{
						ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "otelcol"}}}}},
				},
			},
		},
	}
	return sa, cr, crb, cm, svc, ds
}

// DemoPod is an application pod sending to endpoint over protocol (grpc or
// http/protobuf); "$(HOST_IP)" in endpoint is the node address. It names
// itself in the resource attributes demo.pod.name and demo.pod.ip, which is
// how the sink tells who really sent a resource.
func DemoPod(name, protocol, endpoint string) *corev1.Pod {
	field := func(env, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: env, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: DemoNamespace, Labels: map[string]string{"app": "demoapp"}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{
				Name: "demoapp", Image: DemoAppImage, ImagePullPolicy: never,
				Ports: []corev1.ContainerPort{{Name: "stats", ContainerPort: 8080}},
				Env: []corev1.EnvVar{
					field("HOST_IP", "status.hostIP"),
					field("POD_NAME", "metadata.name"),
					field("POD_IP", "status.podIP"),
					{Name: "DEMO_PROTOCOL", Value: protocol},
					{Name: "OTEL_EXPORTER_OTLP_ENDPOINT", Value: endpoint},
					{Name: "OTEL_SERVICE_NAME", Value: "demoapp"},
					{Name: "OTEL_RESOURCE_ATTRIBUTES", Value: "demo.pod.name=$(POD_NAME),demo.pod.ip=$(POD_IP)"},
				},
				SecurityContext: nonRootContext(),
			}},
		},
	}
}
