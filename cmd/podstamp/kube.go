package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"

	"github.com/podstamp/podstamp/enrich"
	"github.com/podstamp/podstamp/informer"
	"github.com/prometheus/client_golang/prometheus"
)

// kube is the pod cache and what the rest of podstamp needs from it.
type kube struct {
	resolver enrich.Resolver
	ready    func() error
	live     func() error // fails when the cache is wedged
	run      func(context.Context) error
	debug    http.Handler
	local    localChecker                 // senders on this node, for admission
	byIP     func(netip.Addr) *enrich.Pod // the pod behind an address, for identity headers
}

// newKube builds the pod cache, or returns nil (pass-through) when there is
// neither a node name nor any Kubernetes configuration.
func newKube(cfg Config, rules *enrich.Rules, log *slog.Logger, reg prometheus.Registerer) (*kube, error) {
	var restCfg *informer.RESTConfig
	var err error
	switch {
	case cfg.Kubeconfig != "":
		restCfg, err = informer.LoadKubeconfig(cfg.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("invalid configuration: --kubeconfig: %w", err)
		}
	default:
		restCfg, err = informer.InClusterConfig()
		if errors.Is(err, informer.ErrNotInCluster) {
			if cfg.NodeName == "" {
				return nil, nil
			}
			return nil, errors.New("invalid configuration: --kubeconfig: required outside a cluster when --node-name is set")
		}
		if err != nil {
			return nil, fmt.Errorf("in-cluster Kubernetes configuration: %w", err)
		}
	}
	if cfg.NodeName == "" {
		return nil, errors.New("invalid configuration: --node-name: required to watch this node's pods (set K8S_NODE_NAME from spec.nodeName)")
	}
	restCfg.UserAgent = "podstamp/" + version
	restCfg.QPS, restCfg.Burst = 20, 40
	client, err := informer.NewAPI(restCfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	cache, err := informer.New(client, informer.Config{
		NodeName:        cfg.NodeName,
		NodeIPs:         nodeIPs(cfg.NodeIPs),
		HoldTimeout:     cfg.HoldTimeout,
		HoldMaxBytes:    cfg.HoldMaxBytes,
		HoldNegativeTTL: cfg.HoldNegativeTTL,
		PodDeleteGrace:  cfg.PodDeleteGrace,
		MetadataTTL:     cfg.MetadataTTL,
		Needs:           rules.Needs(),

		HoldMaxPerPeerRequests: cfg.HoldMaxPeerRequests,
		HoldMaxPerPeerBytes:    cfg.HoldMaxPeerBytes,
	}, log.With("component", "informer"), reg)
	if err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	return &kube{resolver: cache, ready: cache.Ready, live: cache.Live, run: cache.Run, debug: cache.DebugHandler(),
		local: cache, byIP: cache.ByIP}, nil
}
