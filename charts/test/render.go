package charttest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"
	kubefake "helm.sh/helm/v3/pkg/kube/fake"
	"helm.sh/helm/v3/pkg/storage"
	"helm.sh/helm/v3/pkg/storage/driver"
)

// DefaultKubeVersion is the Kubernetes version the chart is rendered for
// unless Options.KubeVersion says otherwise. Pinned so rendered output is
// stable whatever client-go version Helm was built with.
const DefaultKubeVersion = "v1.34.0"

// Options selects the chart, the values and the release identity.
type Options struct {
	ChartDir    string   // default: FindChart(".")
	ValueFiles  []string // like helm -f, merged in order
	Set         []string // like helm --set, applied after the files
	SetString   []string // like helm --set-string
	ReleaseName string   // default "podstamp"
	Namespace   string   // default "podstamp"
	KubeVersion string   // default DefaultKubeVersion
}

// Output is one rendering of the chart.
type Output struct {
	Manifest string // every rendered object, "---"-separated, with "# Source:" comments
	Notes    string // rendered NOTES.txt
}

// FindChart walks up from dir to the directory holding charts/podstamp/Chart.yaml.
func FindChart(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := abs; ; d = filepath.Dir(d) {
		c := filepath.Join(d, "charts", "podstamp")
		if _, err := os.Stat(filepath.Join(c, "Chart.yaml")); err == nil {
			return c, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no charts/podstamp/Chart.yaml above %s", abs)
		}
	}
}

// Values merges value files and --set style assignments like the helm CLI.
func Values(files, set, setString []string) (map[string]any, error) {
	opts := values.Options{ValueFiles: files, Values: set, StringValues: setString}
	return opts.MergeValues(getter.Providers{})
}

// Render renders the chart like `helm template` (client only, no cluster).
func Render(o Options) (*Output, error) {
	if o.ChartDir == "" {
		d, err := FindChart(".")
		if err != nil {
			return nil, err
		}
		o.ChartDir = d
	}
	if o.ReleaseName == "" {
		o.ReleaseName = "podstamp"
	}
	if o.Namespace == "" {
		o.Namespace = "podstamp"
	}
	if o.KubeVersion == "" {
		o.KubeVersion = DefaultKubeVersion
	}
	kv, err := chartutil.ParseKubeVersion(o.KubeVersion)
	if err != nil {
		return nil, fmt.Errorf("kube version %q: %w", o.KubeVersion, err)
	}
	chrt, err := loader.Load(o.ChartDir)
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", o.ChartDir, err)
	}
	vals, err := Values(o.ValueFiles, o.Set, o.SetString)
	if err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}

	cfg := &action.Configuration{
		Releases:     storage.Init(driver.NewMemory()),
		KubeClient:   &kubefake.PrintingKubeClient{Out: io.Discard},
		Capabilities: chartutil.DefaultCapabilities.Copy(),
		Log:          func(string, ...any) {},
	}
	inst := action.NewInstall(cfg)
	inst.DryRun = true
	inst.ClientOnly = true
	inst.Replace = true
	inst.DisableHooks = true
	inst.ReleaseName = o.ReleaseName
	inst.Namespace = o.Namespace
	inst.KubeVersion = kv
	rel, err := inst.Run(chrt, vals)
	if err != nil {
		return nil, err
	}
	if rel == nil {
		return nil, errors.New("render: no release")
	}
	return &Output{Manifest: strings.TrimLeft(rel.Manifest, "\n"), Notes: rel.Info.Notes}, nil
}
