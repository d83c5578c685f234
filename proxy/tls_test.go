package proxy

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podstamp/podstamp/enrich"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, written as PEM files.
type testPKI struct {
	caFile, certFile, keyFile string // client side
	server                    tls.Certificate
	pool                      *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "podstamp test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(cn string, usage x509.ExtKeyUsage, ips []net.IP) ([]byte, []byte) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips, KeyUsage: x509.KeyUsageDigitalSignature,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	}
	p := &testPKI{pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	scert, skey := issue("upstream", x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	if p.server, err = tls.X509KeyPair(scert, skey); err != nil {
		t.Fatal(err)
	}
	ccert, ckey := issue("podstamp", x509.ExtKeyUsageClientAuth, nil)
	p.caFile, p.certFile, p.keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	for f, b := range map[string][]byte{
		p.caFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), p.certFile: ccert, p.keyFile: ckey,
	} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// serverTLS requires client certificates issued by the CA (mTLS).
func (p *testPKI) serverTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.server}, ClientCAs: p.pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
}

// TestUpstreamTLS: https endpoints are verified against the CA file and
// present the client certificate (mTLS), for gRPC and HTTP upstreams; a
// missing client certificate fails.
func TestUpstreamTLS(t *testing.T) {
	pki := newTestPKI(t)
	for name, mk := range map[string]func(testing.TB, *tls.Config) *upstream{
		"grpc-upstream": newGRPCUpstreamTLS,
		"lean-upstream": func(t testing.TB, tc *tls.Config) *upstream {
			u := newGRPCUpstreamTLS(t, tc)
			u.transport = TransportLean
			return u
		},
		"http-upstream": newHTTPUpstreamTLS,
	} {
		t.Run(name, func(t *testing.T) {
			up := mk(t, pki.serverTLS())
			if !strings.HasPrefix(up.endpoint, "https://") {
				t.Fatalf("endpoint %s", up.endpoint)
			}
			targets := up.targets()
			for i := range targets {
				targets[i].CAFile, targets[i].CertFile, targets[i].KeyFile = pki.caFile, pki.certFile, pki.keyFile
			}
			tp := newTestProxy(t, targets)
			body, _ := payload(t, enrich.Logs, 3)
			if _, err := tp.exportGRPC(context.Background(), enrich.Logs, body); err != nil {
				t.Fatal(err)
			}
			if got := up.next(t); !bytes.Equal(got.body, body) {
				t.Error("body changed over TLS")
			}

			// Without the client certificate the upstream refuses.
			for i := range targets {
				targets[i].CertFile, targets[i].KeyFile = "", ""
			}
			tp2 := newTestProxy(t, targets)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := tp2.exportGRPC(ctx, enrich.Logs, body); err == nil {
				t.Error("export without client certificate succeeded")
			}
			up.none(t)
		})
	}
}

// TestGRPCTargets: endpoint forms map to gRPC targets and TLS choices.
func TestGRPCTargets(t *testing.T) {
	for _, c := range []struct {
		endpoint string
		insecure bool
		target   string
		tls      bool
		err      bool
	}{
		{"http://collector:4317", false, "dns:///collector:4317", false, false},
		{"https://collector:4317", true, "dns:///collector:4317", true, false},
		{"http://collector", false, "dns:///collector:4317", false, false},
		{"http://[::1]:4317/ignored/path", false, "dns:///[::1]:4317", false, false},
		{"dns:///collector.ns.svc:4317", false, "dns:///collector.ns.svc:4317", true, false},
		{"dns:///collector.ns.svc:4317", true, "dns:///collector.ns.svc:4317", false, false},
		{"collector:4317", false, "dns:///collector:4317", true, false},
		{"collector:4317", true, "dns:///collector:4317", false, false},
		{"ftp://collector:21", false, "", false, true},
		{"collector", false, "", false, true},
	} {
		target, useTLS, err := grpcTarget(c.endpoint, c.insecure)
		if (err != nil) != c.err || target != c.target || useTLS != c.tls {
			t.Errorf("grpcTarget(%q, insecure=%v) = %q %v %v, want %q %v err=%v", c.endpoint, c.insecure, target, useTLS, err, c.target, c.tls, c.err)
		}
	}
}

// TestDNSUpstream: a dns:/// target with the insecure flag reaches the
// upstream through gRPC's DNS resolver and the round-robin policy.
func TestDNSUpstream(t *testing.T) {
	up := newGRPCUpstream(t)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(up.endpoint, "http://"))
	tp := newTestProxy(t, SameTarget(Target{Endpoint: "dns:///localhost:" + port, Insecure: true, Timeout: 10 * time.Second}))
	body, _ := payload(t, enrich.Metrics, 2)
	if _, err := tp.exportGRPC(context.Background(), enrich.Metrics, body); err != nil {
		t.Fatal(err)
	}
	up.next(t)
}

// TestRoundRobin: a gRPC upstream target that resolves to several addresses
// spreads requests over all of them (the round_robin policy podstamp sets).
func TestRoundRobin(t *testing.T) {
	a, b := newGRPCUpstream(t), newGRPCUpstream(t)
	r := manual.NewBuilderWithScheme("podstamptest")
	r.InitialState(resolver.State{Addresses: []resolver.Address{
		{Addr: strings.TrimPrefix(a.endpoint, "http://")},
		{Addr: strings.TrimPrefix(b.endpoint, "http://")},
	}})
	resolver.Register(r)
	tp := newTestProxy(t, SameTarget(Target{Endpoint: "podstamptest:///collectors", Insecure: true, Timeout: 10 * time.Second}))
	body, _ := payload(t, enrich.Traces, 1)
	for range 10 {
		if _, err := tp.exportGRPC(context.Background(), enrich.Traces, body); err != nil {
			t.Fatal(err)
		}
	}
	if len(a.got) == 0 || len(b.got) == 0 || len(a.got)+len(b.got) != 10 {
		t.Errorf("requests per upstream: %d and %d, want both used, 10 in all", len(a.got), len(b.got))
	}
}
