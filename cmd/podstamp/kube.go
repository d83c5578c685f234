package main

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/podstamp/podstamp/informer"
	"github.com/prometheus/client_golang/prometheus"
)

// newCache builds the pod cache, or returns nil (pass-through) when there is
// neither a node name nor any Kubernetes configuration.
func newCache(cfg Config, set settings, log *slog.Logger, reg prometheus.Registerer) (*informer.Cache, error) {
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
		NodeIPs:         set.nodeIPs,
		HoldTimeout:     cfg.HoldTimeout,
		HoldMaxBytes:    cfg.HoldMaxBytes,
		HoldNegativeTTL: cfg.HoldNegativeTTL,
		PodDeleteGrace:  cfg.PodDeleteGrace,
		MetadataTTL:     cfg.MetadataTTL,
		Needs:           set.rules.Needs(),

		HoldMaxPerPeerRequests: cfg.HoldMaxPeerRequests,
		HoldMaxPerPeerBytes:    cfg.HoldMaxPeerBytes,
	}, log.With("component", "informer"), reg)
	if err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	return cache, nil
}
