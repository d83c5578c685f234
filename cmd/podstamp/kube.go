package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"

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
	icfg := informer.Config{
		NodeName:        cfg.NodeName,
		NodeIPs:         set.nodeIPs,
		HoldTimeout:     cfg.HoldTimeout,
		HoldMaxBytes:    cfg.HoldMaxBytes,
		HoldNegativeTTL: cfg.HoldNegativeTTL,
		PodDeleteGrace:  cfg.PodDeleteGrace,
		MetadataTTL:     cfg.MetadataTTL,
		Needs:           set.rules.Needs(),
		SkipNodeRead:    !cfg.ReadNode,

		HoldMaxPerPeerRequests: cfg.HoldMaxPeerRequests,
		HoldMaxPerPeerBytes:    cfg.HoldMaxPeerBytes,
	}
	if cfg.PodSource == podSourceKubelet {
		kc, err := kubeletConfig(cfg, set, restCfg)
		if err != nil {
			return nil, err
		}
		if icfg.Kubelet, err = informer.NewKubelet(kc); err != nil {
			return nil, fmt.Errorf("invalid configuration: --kubelet-url: %w", err)
		}
		icfg.KubeletPollInterval = cfg.KubeletPollInterval
		if cfg.KubeletInsecure {
			log.Warn("the kubelet's serving certificate is not verified (--kubelet-insecure-skip-tls-verify): podstamp's credentials go to whoever answers", "kubelet", kc.Host)
		}
	}
	cache, err := informer.New(client, icfg, log.With("component", "informer"), reg)
	if err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	return cache, nil
}

// kubeletConfig is how podstamp reaches the kubelet for --pod-source
// kubelet: the API server's credentials (the service account token or the
// kubeconfig's user), the kubelet's address, and --kubelet-ca, else the API
// server's CA, else no verification when --kubelet-insecure-skip-tls-verify
// says so.
func kubeletConfig(cfg Config, set settings, api *informer.RESTConfig) (*informer.RESTConfig, error) {
	if api.Impersonate.UserName != "" {
		// The kubelet does not impersonate: its requests would act as the
		// kubeconfig's own, more privileged, user.
		return nil, errors.New("invalid configuration: --pod-source kubelet: the kubeconfig impersonates a user (as), which the kubelet does not honour")
	}
	kc := *api
	kc.Host = cfg.KubeletURL
	if kc.Host == "" {
		kc.Host = "https://" + net.JoinHostPort(set.nodeIPs[0].String(), strconv.Itoa(informer.DefaultKubeletPort))
	}
	kc.ServerName = ""
	kc.QPS, kc.Burst = 0, 0 // the poll loop paces itself
	kc.Insecure = false     // only --kubelet-insecure-skip-tls-verify skips verifying the kubelet
	switch {
	case cfg.KubeletInsecure:
		kc.CAData, kc.Insecure = nil, true
	case cfg.KubeletCA != "":
		ca, err := os.ReadFile(cfg.KubeletCA)
		if err != nil {
			return nil, fmt.Errorf("invalid configuration: --kubelet-ca: %w", err)
		}
		kc.CAData, kc.Insecure = ca, false
	}
	return &kc, nil
}
