// Command render prints the podstamp chart's manifests, like `helm template`,
// using the Helm Go SDK (no helm binary needed).
//
//	go run ./cmd/render [--chart DIR] [-f values.yaml]... [--set k=v]... \
//	    [--name RELEASE] [--namespace NS] [--kube-version v1.34.0] [--notes]
//
// Manifests go to stdout, "---"-separated; with --notes the rendered NOTES.txt
// goes to stderr. Value file paths are relative to the working directory.
// The exit status is 1 when the values fail the schema or a template fails,
// 2 on bad usage.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	charttest "github.com/podstamp/podstamp/charts/test"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var o charttest.Options
	var files, set, setString list
	var notes bool
	fs := flag.NewFlagSet("render", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.ChartDir, "chart", "", "chart directory (default: charts/podstamp found above the working directory)")
	fs.Var(&files, "f", "values file (repeatable, merged in order)")
	fs.Var(&files, "values", "same as -f")
	fs.Var(&set, "set", "value assignment like helm --set (repeatable)")
	fs.Var(&setString, "set-string", "string value assignment like helm --set-string (repeatable)")
	fs.StringVar(&o.ReleaseName, "name", "podstamp", "release name")
	fs.StringVar(&o.Namespace, "namespace", "podstamp", "release namespace")
	fs.StringVar(&o.KubeVersion, "kube-version", charttest.DefaultKubeVersion, "Kubernetes version for .Capabilities")
	fs.BoolVar(&notes, "notes", false, "also print the rendered NOTES.txt to stderr")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "render: unexpected arguments %q\n", fs.Args())
		return 2
	}
	o.ValueFiles, o.Set, o.SetString = files, set, setString
	out, err := charttest.Render(o)
	if err != nil {
		fmt.Fprintf(stderr, "render: %v\n", err)
		return 1
	}
	fmt.Fprint(stdout, out.Manifest)
	if notes {
		fmt.Fprint(stderr, out.Notes)
	}
	return 0
}
