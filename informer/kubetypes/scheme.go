package kubetypes

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// AddToScheme registers Pod, PodList and Node as v1 objects, with the
// meta.k8s.io options, Status and WatchEvent of that version.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion, &Pod{}, &PodList{}, &Node{})
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}
