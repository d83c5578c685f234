package kubetypes

import (
	"encoding/json"
	"time"
)

// TypeMeta is an object's kind and apiVersion.
type TypeMeta struct {
	Kind       string `json:"kind,omitempty"`
	APIVersion string `json:"apiVersion,omitempty"`
}

// ObjectMeta is the part of an object's metadata podstamp reads.
type ObjectMeta struct {
	Name              string            `json:"name,omitempty"`
	Namespace         string            `json:"namespace,omitempty"`
	UID               string            `json:"uid,omitempty"`
	ResourceVersion   string            `json:"resourceVersion,omitempty"`
	CreationTimestamp Time              `json:"creationTimestamp,omitzero"`
	DeletionTimestamp *Time             `json:"deletionTimestamp,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
	OwnerReferences   []OwnerReference  `json:"ownerReferences,omitempty"`
}

// OwnerReference is one entry of metadata.ownerReferences.
type OwnerReference struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	UID        string `json:"uid"`
	Controller *bool  `json:"controller,omitempty"`
}

// ListMeta is a list's metadata: the resource version to watch from and the
// token of the next page.
type ListMeta struct {
	ResourceVersion string `json:"resourceVersion,omitempty"`
	Continue        string `json:"continue,omitempty"`
}

// PartialObjectMetadata is an object read as metadata only (the API server's
// meta.k8s.io/v1 PartialObjectMetadata), or the metadata of a whole object.
type PartialObjectMetadata struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata,omitempty"`
}

// Time is a timestamp in the API's JSON form (RFC 3339, seconds; null or
// absent is the zero time).
type Time struct {
	time.Time
}

// IsZero reports whether the time is unset (also for a nil *Time).
func (t *Time) IsZero() bool { return t == nil || t.Time.IsZero() }

// MarshalJSON writes RFC 3339 in UTC, or null for the zero time.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.Time.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(t.UTC().Format(time.RFC3339))
}

// UnmarshalJSON reads RFC 3339 (with or without fractional seconds) or null.
func (t *Time) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		t.Time = time.Time{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	if s == "" {
		t.Time = time.Time{}
		return nil
	}
	pt, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return err
	}
	t.Time = pt.Local()
	return nil
}

// Status is the API server's answer to a failed request (meta.k8s.io/v1
// Status), also the object of a watch ERROR event.
type Status struct {
	TypeMeta `json:",inline"`
	Status   string `json:"status,omitempty"`
	Message  string `json:"message,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Code     int32  `json:"code,omitempty"`
}

// Status reasons podstamp acts on.
const (
	StatusReasonNotFound  = "NotFound"
	StatusReasonForbidden = "Forbidden"
	StatusReasonExpired   = "Expired"
	StatusReasonGone      = "Gone"
)

// WatchEvent is one event of a watch stream as the API server sends it; the
// object is decoded by the reader once the type is known.
type WatchEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

// Watch event types.
const (
	Added    = "ADDED"
	Modified = "MODIFIED"
	Deleted  = "DELETED"
	Bookmark = "BOOKMARK"
	Error    = "ERROR"
)
