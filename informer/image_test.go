package informer

import "testing"

// Image references as the k8sattributes processor reads them (with
// github.com/distribution/reference, names as written), digests kept.
func TestParseImage(t *testing.T) {
	t.Parallel()
	d := "sha256:" + "ab" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"
	for _, tc := range []struct {
		ref  string
		want image
	}{
		{"busybox", image{"busybox", "latest", ""}},
		{"busybox:latest", image{"busybox", "latest", "latest"}},
		{"postgres:16.4", image{"postgres", "16.4", "16.4"}},
		{"registry.example:5000/team/app:1.2", image{"registry.example:5000/team/app", "1.2", "1.2"}},
		{"registry.example/team/pinned@" + d, image{"registry.example/team/pinned", "", d}},
		{"registry.example/team/both:2.5.0@" + d, image{"registry.example/team/both", "2.5.0", "2.5.0@" + d}},
		// Not a reference the library accepts: what can be read is kept.
		{"ghcr.io/x/side@sha256:abc", image{"ghcr.io/x/side", "", ""}},
	} {
		if got := parseImage(tc.ref); got != tc.want {
			t.Errorf("parseImage(%q) = %+v, want %+v", tc.ref, got, tc.want)
		}
	}
	for _, tc := range []struct{ id, want string }{
		{"docker.io/library/postgres@" + d, "docker.io/library/postgres@" + d},
		{d, ""},
		{"docker-pullable://postgres@" + d, ""},
		{"", ""},
	} {
		if got := repoDigest(tc.id); got != tc.want {
			t.Errorf("repoDigest(%q) = %q, want %q", tc.id, got, tc.want)
		}
	}
}
