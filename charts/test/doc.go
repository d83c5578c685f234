// Package charttest renders the podstamp Helm chart (charts/podstamp) with the
// Helm Go SDK exactly as `helm template` would, so that tests, the end-to-end
// suite and cmd/render share one rendering path.
//
// Render validates values against the chart's values.schema.json and fails
// on template errors (including `required` and `fail`), returning the
// manifests in install order plus the rendered NOTES.txt. FindChart locates
// charts/podstamp from any directory inside the repository.
//
// This is a separate Go module so that the Helm SDK's dependency tree never
// enters the podstamp binary's module.
package charttest
