package informer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podstamp/podstamp/enrich"
	"github.com/podstamp/podstamp/informer/kubetypes"
)

// testKubelet is a kubelet's /pods on a real TLS listener: it answers with
// the pods it holds, or with the refusal it is told to give, and records
// each request's path and Authorization header.
type testKubelet struct {
	t   *testing.T
	srv *httptest.Server

	mu      sync.Mutex
	pods    []kubetypes.Pod
	refuse  int    // HTTP status to answer with; 0: the pods
	body    string // the refusal's body
	reqs    []string
	reads   chan struct{} // one per answered read
	nextAdd []kubetypes.Pod
	addAt   int // add nextAdd to pods before the addAt-th read
}

func newTestKubelet(t *testing.T, pods ...*kubetypes.Pod) *testKubelet {
	k := &testKubelet{t: t, reads: make(chan struct{}, 1024)}
	for _, p := range pods {
		k.pods = append(k.pods, *p)
	}
	k.srv = httptest.NewTLSServer(k)
	t.Cleanup(k.srv.Close)
	return k
}

func (k *testKubelet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	k.reqs = append(k.reqs, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
	if k.addAt > 0 && len(k.reqs) >= k.addAt {
		k.pods, k.nextAdd, k.addAt = append(k.pods, k.nextAdd...), nil, 0
	}
	refuse, body := k.refuse, k.body
	b, err := json.Marshal(kubetypes.PodList{Items: k.pods})
	k.mu.Unlock()
	defer func() { k.reads <- struct{}{} }()
	if err != nil {
		k.t.Error(err)
		return
	}
	if refuse != 0 {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(refuse)
		_, _ = w.Write([]byte(body))
		return
	}
	if r.URL.Path != "/pods" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

func (k *testKubelet) set(pods ...*kubetypes.Pod) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.pods = k.pods[:0]
	for _, p := range pods {
		k.pods = append(k.pods, *p)
	}
}

func (k *testKubelet) setRefusal(code int, body string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.refuse, k.body = code, body
}

func (k *testKubelet) requests() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.reqs...)
}

// waitReads waits until the kubelet answered n more reads.
func (k *testKubelet) waitReads(n int) {
	k.t.Helper()
	for range n {
		select {
		case <-k.reads:
		case <-time.After(10 * time.Second):
			k.t.Fatal("the kubelet was not read")
		}
	}
}

// config is a RESTConfig that trusts the kubelet's certificate and sends
// a bearer token.
func (k *testKubelet) config() *RESTConfig {
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.srv.Certificate().Raw})
	return &RESTConfig{Host: k.srv.URL, CAData: ca, BearerToken: "kubelet-token"}
}

// failedReads reports the failed reads of the harness's kubelet source; call
// it before the harness starts.
func failedReads(h *harness) <-chan error {
	ch := make(chan error, 1024)
	h.c.afterPoll = func(err error) {
		if err != nil {
			select {
			case ch <- err:
			default:
			}
		}
	}
	return ch
}

// nextFailure waits for the next failed read of the kubelet.
func nextFailure(t *testing.T, failed <-chan error) error {
	t.Helper()
	select {
	case err := <-failed:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no failed read of the kubelet")
		return nil
	}
}

func newKubeletHarness(t *testing.T, k *testKubelet, rc *RESTConfig, cfg Config) *harness {
	t.Helper()
	src, err := NewKubelet(rc)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Kubelet = src
	// The API server holds no pods: only the kubelet may bring them.
	return newHarness(t, cfg, testNodeObj())
}

func TestKubeletSourceReadsPodsNotTheAPIServer(t *testing.T) {
	k := newTestKubelet(t, mkPod(podSpec{name: "web", ips: []string{"10.1.0.5"}}))
	h := newKubeletHarness(t, k, k.config(), Config{KubeletPollInterval: time.Hour})
	h.start()

	p, res, err := h.c.ResolvePeer(context.Background(), enrich.Peer{Addr: netip.MustParseAddr("10.1.0.5")}, 10)
	if err != nil || res != enrich.ResultHit || p == nil || p.Name != "web" {
		t.Fatalf("resolve 10.1.0.5: %v %v %v, want hit default/web", p, res, err)
	}
	reqs := k.requests()
	if len(reqs) != 1 || reqs[0] != "GET /pods Bearer kubelet-token" {
		t.Errorf("kubelet requests = %q, want one GET /pods with the bearer token", reqs)
	}
	if n := len(h.api.Calls("list", "pods")) + len(h.api.Calls("watch", "pods")); n != 0 {
		t.Errorf("the API server was asked for pods %d times, want 0", n)
	}
	if n := len(h.api.Calls("get", "nodes")); n != 1 {
		t.Errorf("node reads = %d, want 1 (node addresses still come from the API server)", n)
	}
}

func TestKubeletSourceReadsAtOnceForAHeldPeer(t *testing.T) {
	k := newTestKubelet(t)
	// The new pod is in the kubelet's answer from its third read on: the
	// read the held request asks for does not list it yet (the kubelet's
	// copy lags), so the cache must read again while the request waits.
	k.nextAdd, k.addAt = []kubetypes.Pod{*mkPod(podSpec{name: "new", ips: []string{"10.1.0.9"}})}, 3
	h := newKubeletHarness(t, k, k.config(), Config{KubeletPollInterval: time.Hour, KubeletRefreshGap: 20 * time.Millisecond, HoldTimeout: 10 * time.Second})
	h.start()
	k.waitReads(1)

	start := time.Now()
	r := <-h.resolveAsync(context.Background(), "10.1.0.9", 100)
	if r.err != nil || r.res != string(enrich.ResultHoldHit) || r.pod != "default/new" {
		t.Fatalf("held request: %+v, want hold_hit default/new", r)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("released after %v: the hour's poll interval, not the held request, decided", time.Since(start))
	}
	// Start, the held request's read, and at least one more while it
	// waited (one more may follow before the request's waiter is gone).
	if n := len(k.requests()); n < 3 || n > 4 {
		t.Errorf("kubelet reads = %d, want 3 or 4", n)
	}
}

func TestKubeletSourceAppliesChangesAndDeletes(t *testing.T) {
	a := mkPod(podSpec{name: "a", ips: []string{"10.1.0.1"}})
	a.ResourceVersion = "10"
	b := mkPod(podSpec{name: "b", ips: []string{"10.1.0.2"}})
	b.ResourceVersion = "11"
	// c has no address yet, as a pod whose sandbox is not up.
	c := mkPod(podSpec{name: "c"})
	c.ResourceVersion = "12"
	k := newTestKubelet(t, a, b, c)
	h := newKubeletHarness(t, k, k.config(), Config{KubeletPollInterval: 10 * time.Millisecond, PodDeleteGrace: time.Millisecond})
	h.start()

	// b leaves the kubelet's list; a gets a new address with a new
	// resource version; c gets its address at the same resource version,
	// as the kubelet copies a newer status into its copy of a pod.
	a2 := mkPod(podSpec{name: "a", ips: []string{"10.1.0.3"}})
	a2.ResourceVersion = "13"
	c2 := mkPod(podSpec{name: "c", ips: []string{"10.1.0.4"}})
	c2.ResourceVersion = "12"
	k.set(a2, c2)
	h.waitEvent("delete", b.UID)
	for _, want := range []struct{ ip, name string }{{"10.1.0.3", "a"}, {"10.1.0.4", "c"}} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			p, res, _ := h.c.ResolvePeer(context.Background(), enrich.Peer{Addr: netip.MustParseAddr(want.ip)}, 10)
			if p != nil && p.Name == want.name && (res == enrich.ResultHit || res == enrich.ResultHoldHit) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v %v, want default/%s from the kubelet's newer status", want.ip, p, res, want.name)
			}
		}
	}
}

func TestKubeletSourceRefusalKeepsTheCache(t *testing.T) {
	k := newTestKubelet(t, mkPod(podSpec{name: "web", ips: []string{"10.1.0.5"}}))
	h := newKubeletHarness(t, k, k.config(), Config{KubeletPollInterval: 10 * time.Millisecond})
	failed := failedReads(h)
	h.start()
	k.setRefusal(http.StatusForbidden, "Forbidden (user=system:serviceaccount:podstamp:podstamp, verb=get, resource=nodes, subresource(s)=[pods])")
	if err := nextFailure(t, failed); !IsForbidden(err) {
		t.Errorf("error = %v, want Forbidden", err)
	}
	if n := h.metric("podstamp_cache_watch_errors_total"); n < 1 {
		t.Errorf("failed reads counted = %v, want at least 1", n)
	}
	logs := h.logs.String()
	for _, want := range []string{"reading the kubelet's pods failed", "subresource(s)=[pods]", "grant get on nodes/pods"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	// Still served from the cache.
	if p, res, _ := h.c.ResolvePeer(context.Background(), enrich.Peer{Addr: netip.MustParseAddr("10.1.0.5")}, 10); p == nil || res != enrich.ResultHit {
		t.Errorf("after the refusals: %v %v, want the cached pod", p, res)
	}
}

func TestKubeletSourceVerifiesTheServingCertificate(t *testing.T) {
	k := newTestKubelet(t, mkPod(podSpec{name: "web", ips: []string{"10.1.0.5"}}))
	rc := k.config()
	rc.CAData = otherCA(t) // a CA that did not sign the kubelet's certificate
	h := newKubeletHarness(t, k, rc, Config{KubeletPollInterval: time.Hour})
	failed := make(chan error, 64)
	h.c.afterPoll = func(err error) { failed <- err }
	h.startNoWait()
	select {
	case err := <-failed:
		if err == nil {
			t.Fatal("a read of the kubelet succeeded with a CA that did not sign its certificate")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the kubelet was not read")
	}
	if n := h.metric("podstamp_cache_watch_errors_total"); n < 1 {
		t.Errorf("failed reads counted = %v, want at least 1", n)
	}
	if err := h.c.Ready(); err == nil {
		t.Error("Ready with a kubelet whose certificate is not trusted")
	}
	if got := k.requests(); len(got) != 0 {
		t.Errorf("the kubelet answered %q over an unverified connection", got)
	}
	if logs := h.logs.String(); !strings.Contains(logs, "--kubelet-ca") {
		t.Errorf("log does not say how to trust the kubelet:\n%s", logs)
	}
}

// otherCA is the PEM of a new self-signed CA certificate.
func otherCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "another CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestNewKubeletRefusesABadAddress(t *testing.T) {
	for _, host := range []string{"", "10.0.0.1:10250", "ftp://10.0.0.1"} {
		if _, err := NewKubelet(&RESTConfig{Host: host}); err == nil || !strings.Contains(err.Error(), "kubelet address") {
			t.Errorf("NewKubelet(%q) = %v, want an error naming the kubelet address", host, err)
		}
	}
}

// TestKubeletSourceWithoutNodeReadAsksTheAPIServerNothing: with the pods
// from the kubelet and no node read, the cache is ready and resolves
// without a single request to the API server.
func TestKubeletSourceWithoutNodeReadAsksTheAPIServerNothing(t *testing.T) {
	k := newTestKubelet(t, mkPod(podSpec{name: "web", ips: []string{"10.1.0.5"}}))
	h := newKubeletHarness(t, k, k.config(), Config{KubeletPollInterval: time.Hour, SkipNodeRead: true})
	h.start()
	if p, res, _ := h.c.ResolvePeer(context.Background(), enrich.Peer{Addr: netip.MustParseAddr("10.1.0.5")}, 10); p == nil || res != enrich.ResultHit {
		t.Errorf("10.1.0.5: %v %v, want hit", p, res)
	}
	h.api.mu.Lock()
	calls := append([]fakeCall(nil), h.api.calls...)
	h.api.mu.Unlock()
	if len(calls) != 0 {
		t.Errorf("the API server was asked %d times (%+v), want never", len(calls), calls)
	}
	if _, err := New(h.api, Config{NodeName: testNode, SkipNodeRead: true, Needs: enrich.Needs{NodeMetadata: true}}, nil, nil); err == nil {
		t.Error("SkipNodeRead with node metadata needed was accepted")
	}
}

// TestKubeletSourceReadRateIsBounded: however many unknown senders are
// held at once, the kubelet is read at most once per KubeletRefreshGap,
// so a pod that sends from many addresses cannot make podstamp flood its
// kubelet.
func TestKubeletSourceReadRateIsBounded(t *testing.T) {
	k := newTestKubelet(t)
	const gap = 50 * time.Millisecond
	h := newKubeletHarness(t, k, k.config(), Config{KubeletPollInterval: time.Hour, KubeletRefreshGap: gap,
		HoldTimeout: 500 * time.Millisecond, HoldMaxPerPeerRequests: 4})
	h.start()
	before := len(k.requests())
	start := time.Now()
	var chans []<-chan resolved
	for i := range 40 {
		chans = append(chans, h.resolveAsync(context.Background(), fmt.Sprintf("10.1.1.%d", i+1), 10))
	}
	for _, ch := range chans {
		if r := <-ch; r.res != string(enrich.ResultHoldTimeout) {
			t.Errorf("an address no pod has: %+v, want hold_timeout", r)
		}
	}
	elapsed := time.Since(start)
	reads := len(k.requests()) - before
	if most := int(elapsed/gap) + 2; reads > most || reads < 2 {
		t.Errorf("%d reads of the kubelet in %v for 40 held senders; want at least 2 and at most %d (one per %v)", reads, elapsed, most, gap)
	}
}

// TestKubeletSourceAnswerTooLarge: an answer over the size cap is an
// error saying so, never a truncated list, and the cached pods stay.
func TestKubeletSourceAnswerTooLarge(t *testing.T) {
	k := newTestKubelet(t, mkPod(podSpec{name: "web", ips: []string{"10.1.0.5"}}))
	src, err := NewKubelet(k.config())
	if err != nil {
		t.Fatal(err)
	}
	src.(*kubeletAPI).a.maxList = 4 << 10 // one pod's answer fits, fifty do not
	h := newHarness(t, Config{Kubelet: src, KubeletPollInterval: 10 * time.Millisecond}, testNodeObj())
	failed := failedReads(h)
	h.start()
	var many []*kubetypes.Pod
	for i := range 50 {
		many = append(many, mkPod(podSpec{name: fmt.Sprintf("p%d", i), ips: []string{fmt.Sprintf("10.1.2.%d", i+1)}}))
	}
	k.set(many...)
	var tl *tooLargeError
	if err := nextFailure(t, failed); !errors.As(err, &tl) {
		t.Errorf("error %v, want one saying the answer is too large", err)
	}
	if p, res, _ := h.c.ResolvePeer(context.Background(), enrich.Peer{Addr: netip.MustParseAddr("10.1.0.5")}, 10); p == nil || res != enrich.ResultHit {
		t.Errorf("after the refused answer: %v %v, want the cached pod", p, res)
	}
}
