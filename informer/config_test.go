package informer

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/podstamp/podstamp/enrich"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	err := Config{HoldTimeout: -1, HoldMaxBytes: -1, NodeIPs: []netip.Addr{{}}}.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"node name", "hold timeout", "hold max bytes", "node IP #0"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := New(directClient, Config{}, nil, nil); err == nil {
		t.Error("New accepted a config without node name")
	}
	if _, err := New(nil, Config{NodeName: "n"}, nil, nil); err == nil {
		t.Error("New accepted a nil API")
	}
	d := Config{NodeName: "n"}.withDefaults()
	if d.HoldTimeout != 3*time.Second || d.HoldMaxBytes != 64<<20 || d.HoldNegativeTTL != time.Minute ||
		d.PodDeleteGrace != 2*time.Minute || d.MetadataTTL != 5*time.Minute {
		t.Errorf("defaults %+v", d)
	}
}

func TestRunTwiceAndStop(t *testing.T) {
	t.Parallel()
	c, err := New(NewFakeAPI(), Config{NodeName: testNode}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ready(); err == nil || !strings.Contains(err.Error(), "not started") {
		t.Errorf("Ready before Run: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	<-c.syncDone
	if err := c.Run(ctx); err == nil {
		t.Error("second Run accepted")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func TestInvalidPeerNotHeld(t *testing.T) {
	t.Parallel()
	c, _ := newDirect(t, time.Minute)
	p, res, err := c.ResolvePeer(context.Background(), enrich.Peer{Addr: netip.Addr{}}, 10)
	if p != nil || res != enrich.ResultUnknown || err != nil {
		t.Fatalf("%v %v %v", p, res, err)
	}
}

func TestLastAppliedConfigurationDropped(t *testing.T) {
	t.Parallel()
	p := mkPod(podSpec{name: "a"})
	p.Annotations = map[string]string{lastApplied: strings.Repeat("x", 1000), "keep": "1"}
	o := toPodObj(p)
	if _, ok := o.pod.Annotations[lastApplied]; ok || o.pod.Annotations["keep"] != "1" {
		t.Fatalf("annotations %v", o.pod.Annotations)
	}
}
