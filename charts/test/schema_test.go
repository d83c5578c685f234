package charttest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"sigs.k8s.io/yaml"
)

// passThrough are the values that carry Kubernetes objects unchanged (the API
// server validates them); every other object in the schema must be closed.
var passThrough = []string{
	"/properties/global",
	"/definitions/k8sObject",
	"/definitions/k8sObjectList/items",
}

// TestSchemaStrict: additionalProperties is false on every object the chart defines,
// and every key of values.yaml is described by the schema.
func TestSchemaStrict(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chartDir(t), "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	var objects int
	var walk func(path string, n any)
	walk = func(path string, n any) {
		switch n := n.(type) {
		case map[string]any:
			if n["type"] == "object" {
				objects++
				_, hasProps := n["properties"]
				_, hasPattern := n["patternProperties"]
				ap, hasAP := n["additionalProperties"]
				switch {
				case slices.Contains(passThrough, path):
				case hasAP && ap == false:
				case hasAP && !hasProps && !hasPattern:
					// a map whose values are typed (e.g. labels: string -> string)
					if _, ok := ap.(map[string]any); !ok {
						t.Errorf("%s: additionalProperties must be false or a schema, got %v", path, ap)
					}
				default:
					t.Errorf("%s: object without additionalProperties: false", path)
				}
			}
			for k, v := range n {
				walk(path+"/"+k, v)
			}
		case []any:
			for i, v := range n {
				walk(path+"/"+itoa(i), v)
			}
		}
	}
	walk("", schema)
	if objects < 20 {
		t.Fatalf("only %d objects in the schema: the walk is broken", objects)
	}

	// Every key in values.yaml must be a schema property (the schema rejects
	// unknown keys, so a missing one would make the defaults invalid).
	vb, err := os.ReadFile(filepath.Join(chartDir(t), "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var vals map[string]any
	if err := yaml.Unmarshal(vb, &vals); err != nil {
		t.Fatal(err)
	}
	props := schema["properties"].(map[string]any)
	for k := range vals {
		if _, ok := props[k]; !ok {
			t.Errorf("values.yaml key %q has no schema property", k)
		}
	}
	for k := range props {
		if _, ok := vals[k]; !ok && k != "global" {
			t.Errorf("schema property %q has no default in values.yaml", k)
		}
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}
