package informer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"time"

	"github.com/podstamp/podstamp/informer/kubetypes"
)

// KubeletPods reads the pods one kubelet runs: the pod source of
// Config.Kubelet, in place of a list and watch of the node's pods on the
// API server.
type KubeletPods interface {
	// Pods returns every pod bound to the kubelet's node, as the kubelet
	// holds them (its copy of the API server's objects, static pods
	// included).
	Pods(ctx context.Context) (*kubetypes.PodList, error)
}

// DefaultKubeletPort is the kubelet's authenticated HTTPS port.
const DefaultKubeletPort = 10250

// Defaults of the kubelet pod source (Config.Kubelet).
const (
	DefaultKubeletPollInterval = 10 * time.Second
	DefaultKubeletRefreshGap   = 200 * time.Millisecond
)

// NewKubelet returns the KubeletPods of the kubelet cfg points to (Host:
// https://<node address>:10250): GET /pods, with cfg's credentials and TLS
// settings, through the same client as NewAPI (credentials read again on
// 401, Retry-After honoured, answers capped in size). The kubelet
// authorizes /pods as get on nodes/pods when its fine-grained authorization
// is on (Kubernetes 1.33 and later), else as nodes/proxy.
func NewKubelet(cfg *RESTConfig) (KubeletPods, error) {
	a, err := newRESTAPI(cfg, "kubelet")
	if err != nil {
		return nil, err
	}
	return &kubeletAPI{a: a}, nil
}

type kubeletAPI struct{ a *restAPI }

func (k *kubeletAPI) Pods(ctx context.Context) (*kubetypes.PodList, error) {
	l := &kubetypes.PodList{}
	if err := k.a.getJSON(ctx, "/pods", nil, "application/json", l, k.a.maxList); err != nil {
		return nil, err
	}
	return l, nil
}

// kubeletLoop keeps the cache equal to the kubelet's pods until ctx ends.
// The kubelet is asked, not told: the pods are read every
// KubeletPollInterval, and again at most KubeletRefreshGap after the last
// read while a request is held for an address the cache does not know
// (ResolvePeer asks for it through podsWanted). A failed read keeps the
// cached pods, is counted and logged like a failed watch, and is retried
// with backoff (or after the Retry-After the kubelet asked for).
func (c *Cache) kubeletLoop(ctx context.Context) {
	bo := backoff{initial: c.lw.backoffInitial, next: c.lw.backoffInitial}
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, listTimeout)
		list, err := c.cfg.Kubelet.Pods(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.onKubeletError(err)
			if c.afterPoll != nil {
				c.afterPoll(err)
			}
			if !bo.wait(ctx, retryAfterOf(err)) {
				return
			}
			continue
		}
		bo.reset()
		c.applyKubelet(list.Items)
		c.markSynced()
		if c.afterPoll != nil {
			c.afterPoll(nil)
		}
		if !c.waitKubelet(ctx) {
			return
		}
	}
}

// applyKubelet applies one read of the kubelet's pods, as a relist does:
// every pod is upserted, and every cached pod the kubelet no longer lists
// is deleted (kept resolvable for PodDeleteGrace). Every pod, even at a
// resource version the cache has: the kubelet copies a newer status (the
// pod's address) into its copy of a pod without its resource version.
func (c *Cache) applyKubelet(items []kubetypes.Pod) {
	c.replace(items)
}

// waitKubelet waits until the next read of the kubelet is due: after
// KubeletPollInterval, or KubeletRefreshGap when a request waits for an
// unknown address (now or while waiting). It is false when ctx ended.
func (c *Cache) waitKubelet(ctx context.Context) bool {
	if !c.holding() {
		t := time.NewTimer(c.cfg.KubeletPollInterval)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-c.podsWanted:
		}
	}
	return sleepCtx(ctx, c.cfg.KubeletRefreshGap) == nil
}

// holding reports whether a request waits for an address.
func (c *Cache) holding() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.waiters) > 0
}

// wantPods asks the kubelet loop for a read now (a request started waiting
// for an address); without a kubelet source it does nothing.
func (c *Cache) wantPods() {
	select {
	case c.podsWanted <- struct{}{}:
	default:
	}
}

// onKubeletError counts and logs (rate-limited) a failed read of the
// kubelet's pods, with what usually fixes it.
func (c *Cache) onKubeletError(err error) {
	c.m.watchErrors.Inc()
	if !c.warnWatch.allow(c.clock.Now(), watchWarnEvery) {
		return
	}
	c.log.Warn("reading the kubelet's pods failed; serving the cached pods and retrying", "node", c.cfg.NodeName, "err", err, "hint", kubeletHint(err))
}

// kubeletHint says what most often causes err.
func kubeletHint(err error) string {
	var ue x509.UnknownAuthorityError
	var he x509.HostnameError
	var ce *tls.CertificateVerificationError
	var oe *net.OpError
	switch {
	case IsForbidden(err):
		return "grant get on nodes/pods (the kubelet's fine-grained authorization, Kubernetes 1.33 and later); older kubelets authorize /pods as nodes/proxy"
	case isUnauthorized(err):
		return "the kubelet does not accept podstamp's credentials: it needs webhook authentication (authentication.webhook.enabled) for a service account token"
	case errors.As(err, &ue), errors.As(err, &he), errors.As(err, &ce):
		return "the kubelet's serving certificate is not signed by the CA podstamp trusts or does not name the address: set --kubelet-ca to the CA that signs it (or explicitly --kubelet-insecure-skip-tls-verify)"
	case errors.As(err, &oe):
		return "is the kubelet's address right (--kubelet-url), and may podstamp reach it?"
	}
	return ""
}

func isUnauthorized(err error) bool {
	st, ok := statusOf(err)
	return ok && st.Code == 401
}
