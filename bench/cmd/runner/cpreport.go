package main

import (
	"fmt"
	"math"
	"strings"
)

// The control-plane part of the report: what each fleet asked of the API
// server, per node, and that extrapolated to a large cluster.

const (
	bigNodes       = 5000
	bigPodsPerNode = 110
)

// cpFleetOnly returns the fleet's windows minus the baseline's.
func (cp *controlPlane) cpFleetOnly(f *cpFleetResult) map[string]*cpDelta {
	base := cp.fleet("none")
	out := map[string]*cpDelta{}
	for _, w := range cpWindows {
		d := f.Windows[w]
		if d == nil {
			continue
		}
		var b *cpDelta
		if base != nil {
			b = base.Windows[w]
		}
		out[w] = fleetOnly(d, b)
	}
	return out
}

// cpTotals sums reads and bytes over every window.
func cpTotals(ws map[string]*cpDelta) (reads, bytes float64) {
	for _, d := range ws {
		reads += d.reads()
		bytes += d.bytes()
	}
	return
}

// fanOut is, for each resource, watch events sent during the churn per
// object change the churn made and per watch each node holds on that
// resource: about 1 when each change goes to the one node it concerns,
// about the node count when every agent watches every object of the
// cluster.
func fanOut(d *cpDelta, nodes int) map[string]float64 {
	out := map[string]float64{}
	for res, ev := range d.WatchEv {
		if c := d.Changes[res]; c > 0 && ev > 0.5 {
			perNode := math.Max(1, math.Round(d.OpenWatch[res]/float64(nodes)))
			out[res] = ev / float64(c) / perNode
		}
	}
	return out
}

func (r *runner) cpChecks() []check {
	cp := r.cp
	if cp == nil {
		return nil
	}
	P, C := cp.fleet("podstamp"), cp.fleet("collector")
	g := "control plane"
	var cs []check
	if P != nil && C != nil {
		pr, pb := cpTotals(cp.cpFleetOnly(P))
		cr, cb := cpTotals(cp.cpFleetOnly(C))
		n := float64(cp.Nodes)
		cs = append(cs, ratioCheck(g, "API requests per node", pr/n, cr/n, 0.2, "requests", "the Collector agent's"))
		cs = append(cs, ratioCheck(g, "API server bytes per node", pb/n, cb/n, 0.2, "bytes", "the Collector agent's"))
		if K := cp.fleet("podstamp-kubelet"); K != nil {
			kr, kb := cpTotals(cp.cpFleetOnly(K))
			cs = append(cs, atMostCheck(g, "API requests per node, --pod-source kubelet", kr/n, cr/n, 0.2, "requests", "the Collector agent's"))
			cs = append(cs, atMostCheck(g, "API server bytes per node, --pod-source kubelet", kb/n, cb/n, 0.2, "bytes", "the Collector agent's"))
		}
	}
	if P != nil {
		ws := cp.cpFleetOnly(P)
		var wide []string
		if ch := ws["churn"]; ch != nil {
			for res, f := range fanOut(ch, cp.Nodes) {
				if f > 2 {
					wide = append(wide, fmt.Sprintf("%s (%.1f events per change and watch)", res, f))
				}
			}
		}
		measured := "every watch is node-scoped"
		if ch := ws["churn"]; ch != nil {
			fo := fanOut(ch, cp.Nodes)
			if f, ok := fo["pods"]; ok {
				measured = fmt.Sprintf("pods: %.2f watch events per pod change", f)
				if len(fo) == 1 {
					measured += "; no other resource watched"
				}
			}
		}
		if len(wide) > 0 {
			measured = "cluster-wide: " + strings.Join(wide, ", ")
		}
		cs = append(cs, check{Group: g, Name: "No cluster-wide watch", Required: "none (no rule needs one)", Measured: measured,
			Known: true, Met: len(wide) == 0, Miss: ifs(len(wide) > 0, "a watch is cluster-wide")})
	}
	return cs
}

// atMostCheck is ratioCheck where podstamp's figure may be nothing at all
// (net of the baseline, at or below zero): that meets the target.
func atMostCheck(group, name string, b, c, limit float64, unit, of string) check {
	if b <= 0 && c > 0 {
		return check{Group: group, Name: name, Required: fmt.Sprintf("≤ %s of %s", frac(limit), of), Known: true, Met: true,
			Measured: fmt.Sprintf("none measurable (%.3g, net of the baseline) vs %.3g %s", b, c, unit)}
	}
	return ratioCheck(group, name, b, c, limit, unit, of)
}

// cpAnalysis explains the control-plane ratios from the requests and
// bytes of each fleet.
func (r *runner) cpAnalysis() string {
	cp := r.cp
	P, C := cp.fleet("podstamp"), cp.fleet("collector")
	if P == nil || C == nil {
		return "**Control plane.** n/a"
	}
	n := float64(cp.Nodes)
	list := func(f *cpFleetResult) string {
		reqs := map[string]float64{}
		for _, d := range cp.cpFleetOnly(f) {
			for k, v := range d.Requests {
				reqs[k] += v
			}
		}
		var parts []string
		for _, k := range sortedKeys(reqs) {
			verb, _, _ := strings.Cut(k, " ")
			if (verb == "GET" || verb == "LIST" || verb == "WATCH") && reqs[k]/n >= 0.5 {
				parts = append(parts, fmt.Sprintf("%.0f %s", reqs[k]/n, k))
			}
		}
		return strings.Join(parts, ", ")
	}
	pc, cc := cp.cpFleetOnly(P)["churn"], cp.cpFleetOnly(C)["churn"]
	perEvent := func(d *cpDelta) float64 {
		if d == nil || sumMap(d.WatchEv) <= 0 {
			return 0
		}
		return d.bytes() / sumMap(d.WatchEv)
	}
	pr, pb := cpTotals(cp.cpFleetOnly(P))
	cr, cb := cpTotals(cp.cpFleetOnly(C))
	pw, cw := 0.0, 0.0
	if pc != nil && cc != nil {
		pw, cw = pc.openWatches()/n, cc.openWatches()/n
	}
	s := fmt.Sprintf("**Control plane.** Both fleets watch only the pods of their node: neither the Collector agent"+
		" (`filter.node`, k8sattributesprocessor v1.4.1, which derives the Deployment from the ReplicaSet's name) nor"+
		" podstamp watches anything cluster-wide here. Per node, podstamp asks %s; the Collector agent %s: one"+
		" `k8sattributes` instance, with its own informer, per pipeline (traces, metrics, logs). Per pod event, podstamp"+
		" reads %.0f bytes, a Collector watch %.0f (both ask for Kubernetes protobuf). Open watches per node at the end:"+
		" podstamp %.1f, the Collector agent %.1f. Each pod change therefore reaches a node once for podstamp and once per"+
		" pipeline for the agent; podstamp's requests are %.2f and its bytes %.2f of the agent's.",
		list(P), list(C), perEvent(pc), perEvent(cc), pw, cw, safeDiv(pr, cr), safeDiv(pb, cb))
	s += " That is the floor against this agent: podstamp cannot hold fewer than one watch of its node's pods, or read" +
		" less than each pod change once, since the API server has no field projection of pods (a metadata-only read drops" +
		" `status.podIPs` and the containers). 1/5 of an agent that streams its lists (client-go's WatchListClient, on by" +
		" default since 1.35) with three pipelines is below one watch per node. Against Debian's etcd 3.4, which cannot" +
		" serve streaming lists, the agent's client-go had each streaming list refused and fell back to a LIST and a WATCH" +
		" (9 requests per node), which is where earlier runs' 3 against 9 came from. The fleets run podstamp as the chart" +
		" does by default, with `--read-node=false` (its ClusterRole grants no get on nodes unless a rule needs the node);" +
		" with the node read, as with `rbac.getNodes`, podstamp adds one GET of its Node at start and hourly (addresses and" +
		" pod CIDRs for the trust rules)."
	if K := cp.fleet("podstamp-kubelet"); K != nil {
		kr, kb := cpTotals(cp.cpFleetOnly(K))
		s += fmt.Sprintf(" With `--pod-source kubelet` podstamp reads its node's pods from the kubelet instead (here a stand-in"+
			" kubelet per node, fed by one watch of all pods that runs through every window, the baseline's included, as a"+
			" real kubelet's own watch of its pods does): per node it asks the API server %s, %.2f of the agent's requests and"+
			" %.2f of its bytes, and no watch at all. The kubelet already holds its node's pods; reading them costs the"+
			" kubelet one JSON encoding of its pods per read (every 10 s, and at once for a sender not yet known), not the"+
			" API server.", list(K), safeDiv(kr, cr), safeDiv(kb, cb))
	}
	return s
}

func sumMap(m map[string]float64) float64 {
	t := 0.0
	for _, v := range m {
		t += v
	}
	return t
}

func (r *runner) reportControlPlane(w func(string, ...any)) {
	cp := r.cp
	if cp == nil {
		return
	}
	w("## Control plane: what each fleet asks of the API server\n\n")
	w("%d simulated nodes (Node objects) carry %d pods (%d per node): per node one pod of each of %d DaemonSets, the rest from\n",
		cp.Nodes, cp.Pods, cp.PodsPerNode, cp.DaemonSets)
	w("%d Deployments (with their ReplicaSets), %d StatefulSets and %d Jobs (%d CronJobs own two of three), spread over %d\n",
		cp.Deployments, cp.StatefulSets, cp.Jobs, cp.CronJobs, cp.Namespaces)
	w("namespaces; every pod is running with an IP (created as its controller would name it, then its status set, as a\n")
	w("kubelet would); created in %.1f s. No controller-manager runs: the churn writes what the controllers would (below).\n\n", cp.CreateSeconds)
	w("Per fleet: one forwarder per node started at once (6 at a time), each with `--node-name`/`filter.node` of its node and\n")
	w("%s; the fleet receives no OTLP (neither asks the API server more when it does, with the default\n", cp.Auth)
	w("attributes). Windows:\n\n")
	w("- **start**: from launching the fleet until every member is ready (podstamp `/readyz` after its first list; the\n")
	w("  Collector's receiver listens after `wait_for_metadata`) and 3 s more;\n")
	w("- **steady**: %s with nothing changing;\n", cp.Steady)
	w("- **churn**: every tenth pod deleted and recreated (a Job's pod as the next run of a new Job, which replaces the\n")
	w("  old Job), with two status updates of its owner (ReplicaSet, StatefulSet, DaemonSet) as its controller makes them,\n")
	w("  then a rollout of every tenth Deployment (a new ReplicaSet, its pods replacing the old one's one by one, a status\n")
	w("  update of the new ReplicaSet per pod, the old one scaled to 0 and kept); then 3 s for the watchers.\n\n")
	w("Figures are the API server's own metrics (`apiserver_request_total` by verb and resource; WATCH counted as opened:\n")
	w("ended plus the change in `apiserver_longrunning_requests`; bytes: `apiserver_response_sizes` of GET/LIST answers plus\n")
	w("`apiserver_watch_events_sizes` of watch events sent), and kube-apiserver's CPU time and VmRSS from /proc, each minus\n")
	w("the same window of the baseline run without a fleet (the server's own work and the churn's writes).\n\n")

	w("| fleet | window | s | read requests (GET, LIST, WATCH) | per node | bytes the fleet read | per node | bytes by the server's metrics | watch events sent | open watches at end | kube-apiserver CPU-s | kube-apiserver RSS Δ MiB | fleet CPU-s |\n")
	w("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	n := float64(cp.Nodes)
	for _, f := range cp.Fleets {
		if f.Err != "" {
			w("| %s | failed: %s ||||||||||||\n", cpFleetNames[f.Fleet], oneLine(f.Err))
			continue
		}
		ws := f.Windows
		if f.Fleet != "none" {
			ws = cp.cpFleetOnly(f)
		}
		for _, win := range cpWindows {
			d := ws[win]
			if d == nil {
				continue
			}
			evs := sumMap(d.WatchEv)
			w("| %s | %s | %.0f | %.0f | %.2f | %s | %s | %s | %.0f | %.0f | %.2f | %+.1f | %.2f |\n", cpFleetNames[f.Fleet], win, d.Seconds,
				d.reads(), d.reads()/n, human(d.bytes()), human(d.bytes()/n), human(d.serverBytes()), evs, d.openWatches(), d.CPU, mib(d.RSSKiB), d.FleetCPU)
		}
	}
	w("\n*Bytes the fleet read* is rchar of the fleet's processes (/proc/<pid>/io), which receive nothing but the API\n")
	w("server's answers here: what the server sent them, as TLS records. *Bytes by the server's metrics* is\n")
	w("`apiserver_response_sizes` (GET/LIST answers) plus `apiserver_watch_events_sizes`, which counts an event's encoding\n")
	w("once however many watchers it is sent to (the encoding is cached), so it undercounts events shared by several\n")
	w("watches. The baseline's rows are its raw figures; the fleets' rows are net of them, so small negative figures are\n")
	w("noise. The server's own requests (`apiserver_selfrequest_total`, e.g. admission's lookups) are left out.\n")
	w("The Collector agent runs one `k8sattributes` instance per pipeline (traces, metrics, logs, as an agent that takes\n")
	w("all three signals is configured); each has its own informers, hence its watches per node.\n\n")

	w("By verb and resource, per node, over all three windows (net of the baseline):\n\n")
	w("| fleet | request | requests per node | bytes per node (server's metrics) |\n|---|---|---|---|\n")
	for _, f := range cp.Fleets {
		if f.Err != "" || f.Fleet == "none" {
			continue
		}
		reqs, byts := map[string]float64{}, map[string]float64{}
		for _, d := range cp.cpFleetOnly(f) {
			for k, v := range d.Requests {
				reqs[k] += v
			}
			for k, v := range d.RespBytes {
				byts[k] += v
			}
			for k, v := range d.WatchB {
				byts["WATCH "+k] += v
			}
		}
		for _, k := range sortedKeys(reqs) {
			verb, _, _ := strings.Cut(k, " ")
			if verb != "GET" && verb != "LIST" && verb != "WATCH" {
				continue
			}
			if math.Abs(reqs[k]/n) < 0.05 && math.Abs(byts[k]/n) < 64 {
				continue
			}
			w("| %s | %s | %.2f | %s |\n", f.Fleet, k, reqs[k]/n, human(byts[k]/n))
		}
	}
	w("\nWatch fan-out during the churn: watch events sent per object change, by resource (about 1: each change goes to the\n")
	w("one node it concerns; about the node count: every agent watches every such object in the cluster):\n\n")
	w("| fleet | resource | changes | watch events sent | watches per node | events per change and watch | bytes the fleet read per event |\n|---|---|---|---|---|---|---|\n")
	for _, f := range cp.Fleets {
		if f.Err != "" || f.Fleet == "none" {
			continue
		}
		ch := cp.cpFleetOnly(f)["churn"]
		if ch == nil {
			continue
		}
		// A resource that did not change and sent fewer events than there
		// are nodes is the server's own noise, not the fleet's watch.
		counted := func(res string) bool {
			ev := ch.WatchEv[res]
			return ev >= 0.5 && (ch.Changes[res] > 0 || ev >= n/2)
		}
		total := 0.0
		for res, ev := range ch.WatchEv {
			if counted(res) {
				total += ev
			}
		}
		for _, res := range sortedKeys(ch.WatchEv) {
			ev := ch.WatchEv[res]
			if !counted(res) {
				continue
			}
			per := "–"
			if v, ok := fanOut(ch, cp.Nodes)[res]; ok {
				per = fmt.Sprintf("%.2f", v)
			}
			// What the fleet read (rchar) over the events it was sent; the
			// server's own event-size metric counts a cached encoding once.
			sz := "–"
			if b := ch.bytes(); b > 0 && total > 0 {
				sz = fmt.Sprintf("%.0f", b/total)
			}
			w("| %s | %s | %d | %.0f | %.1f | %s | %s |\n", f.Fleet, res, ch.Changes[res], ev, ch.OpenWatch[res]/n, per, sz)
		}
	}
	r.reportExtrapolation(w)
}

// reportExtrapolation scales the per-node figures to bigNodes nodes with
// bigPodsPerNode pods each: what a node-scoped watch is sent grows with the
// pods of its node; what a cluster-wide watch is sent grows with the
// objects of the cluster, for every node.
func (r *runner) reportExtrapolation(w func(string, ...any)) {
	cp := r.cp
	podF := float64(bigPodsPerNode) / float64(cp.PodsPerNode)
	clusterF := float64(bigNodes*bigPodsPerNode) / float64(cp.Pods)
	n := float64(cp.Nodes)
	w("\n### Extrapolated to %d nodes × %d pods\n\n", bigNodes, bigPodsPerNode)
	w("On paper, from the figures above: per node, what a resource watched or listed only for the node's own pods costs\n")
	w("grows with the pods per node (×%.2f); what a resource listed or watched for the whole cluster costs grows with the\n", podF)
	w("cluster's objects (×%.0f, assuming the same mix: the ReplicaSets, Jobs and namespaces grow with the pods). A resource\n", clusterF)
	w("is taken as cluster-wide when its churn fan-out above is over 2 events per change and watch; the bytes the fleet read\n")
	w("are split between the two by the server's byte counts per resource. The cluster total is %d times the\n", bigNodes)
	w("per-node figure. *start* is every agent starting once (a DaemonSet rollout of the agent); *churn* is the same churn\n")
	w("(10%% of the pods replaced, 10%% of the Deployments rolled out) in the big cluster.\n\n")
	w("| fleet | window | per node: requests | per node: bytes | cluster: requests | cluster: bytes |\n|---|---|---|---|---|---|\n")
	for _, f := range cp.Fleets {
		if f.Err != "" || f.Fleet == "none" {
			continue
		}
		ws := cp.cpFleetOnly(f)
		wide := map[string]bool{}
		if ch := ws["churn"]; ch != nil {
			for res, fo := range fanOut(ch, cp.Nodes) {
				if fo > 2 {
					wide[res] = true
				}
			}
		}
		for _, win := range cpWindows {
			d := ws[win]
			if d == nil {
				continue
			}
			// What the fleet read, split by the share of cluster-wide
			// resources in the server's byte counts.
			var wideB, allB float64
			for k, v := range d.RespBytes {
				_, res, _ := strings.Cut(k, " ")
				allB += v
				if wide[strings.Split(res, "/")[0]] {
					wideB += v
				}
			}
			for res, v := range d.WatchB {
				allB += v
				if wide[res] {
					wideB += v
				}
			}
			share := 0.0
			if allB > 0 {
				share = math.Max(0, math.Min(1, wideB/allB))
			}
			bytes := d.bytes() / n * (share*clusterF + (1-share)*podF)
			// Requests do not grow with objects (pages of 500 aside), except
			// in the churn, where watch events are not requests.
			reqs := d.reads() / n
			if win == "steady" {
				w("| %s | %s (%s) | %.2f | %s | %.0f | %s |\n", f.Fleet, win, cp.Steady, reqs, human(bytes), reqs*bigNodes, human(bytes*bigNodes))
				continue
			}
			w("| %s | %s | %.2f | %s | %.0f | %s |\n", f.Fleet, win, reqs, human(bytes), reqs*bigNodes, human(bytes*bigNodes))
		}
	}
	w("\nWhat would change it:\n\n")
	w("- **Watch timeouts.** Both fleets hold their watches open and reopen them when the server ends them (after 5-10\n")
	w("  minutes): about %d × (watches per node) × 8 WATCH requests per hour in the big cluster, each resuming from its\n", bigNodes)
	w("  resource version without a new list. The steady window is shorter than a watch's life, so it shows none of them.\n")
	w("- **Metadata TTL.** With the node read (`rbac.getNodes`, or a rule that needs the node; the fleets above run without\n")
	w("  it, as the chart does by default) podstamp reads its Node at start and once an hour after that (addresses and pod\n")
	w("  CIDRs for its trust rules; every `--metadata-ttl` when a rule stamps node labels): one GET of about 0.8 KiB per node per hour,\n")
	w("  %.1f requests/s for %d nodes. With its default\n", float64(bigNodes)/3600, bigNodes)
	w("  attributes it derives the Deployment and CronJob from owner names and makes no other GETs. Asking for namespace labels/annotations, node labels or workload UIDs adds on-demand GETs, each cached for\n")
	w("  `--metadata-ttl` (5 minutes): at most (namespaces + workloads + 1 node with pods on the node) GETs per node per TTL,\n")
	w("  e.g. 12 namespaces and ~80 owners of 110 pods: ~93 GETs per node per 5 minutes, ~1,550 requests/s for %d nodes;\n", bigNodes)
	w("  doubling the TTL halves it. The Collector instead watches namespaces (or nodes) cluster-wide when asked for their\n")
	w("  labels: one more cluster-wide watch per agent.\n")
	w("- **Namespace count.** Namespace GETs grow with the namespaces that have pods on a node, not with the cluster's;\n")
	w("  a cluster-wide namespace watch is sent every namespace change, on every node.\n")
	w("- **Cluster-wide watches.** Neither fleet holds one in this run (see the fan-out above). A rule or attribute that\n")
	w("  needs one (the Collector with namespace or node labels, or with workload UIDs that it reads from ReplicaSets)\n")
	w("  makes every agent receive every change of that resource in the cluster: its start and churn costs then grow with\n")
	w("  the cluster's objects times its nodes, not with the pods of a node.\n")
}

// human renders a byte count.
func human(b float64) string {
	neg := b < 0
	if neg {
		b = -b
	}
	s := ""
	switch {
	case b >= 1<<40:
		s = fmt.Sprintf("%.1f TiB", b/(1<<40))
	case b >= 1<<30:
		s = fmt.Sprintf("%.1f GiB", b/(1<<30))
	case b >= 1<<20:
		s = fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 1<<10:
		s = fmt.Sprintf("%.1f KiB", b/(1<<10))
	default:
		s = fmt.Sprintf("%.0f B", b)
	}
	if neg {
		return "-" + s
	}
	return s
}

// safeDiv is a/b, or 0 when b is 0.
func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
