package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestWritePKI(t *testing.T) {
	dir := t.TempDir()
	p, err := WritePKI(dir, "test-ca", net.ParseIP("127.0.0.1"), net.ParseIP("10.77.0.2"))
	if err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{"ca.crt": p.CAFile, "apiserver.crt": p.CertFile, "apiserver.key": p.KeyFile, "sa.key": p.SAKeyFile, "sa.pub": p.SAPubKeyFile} {
		if path != filepath.Join(dir, name) {
			t.Errorf("%s is at %s", name, path)
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, st.Mode().Perm())
		}
	}
	if b, err := os.ReadFile(p.CAFile); err != nil || string(b) != string(p.CAPEM) {
		t.Errorf("ca.crt is not CAPEM (%v)", err)
	}

	pair, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(pair.Certificate) != 2 {
		t.Fatalf("apiserver.crt holds %d certificates, want the serving one and the CA", len(pair.Certificate))
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(pair.Certificate[1])
	if err != nil {
		t.Fatal(err)
	}
	if ca.Subject.CommonName != "test-ca" || !ca.IsCA || leaf.Subject.CommonName != "kube-apiserver" || leaf.IsCA {
		t.Errorf("CA %q (IsCA %v), serving %q (IsCA %v)", ca.Subject.CommonName, ca.IsCA, leaf.Subject.CommonName, leaf.IsCA)
	}
	if !reflect.DeepEqual(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) || leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("serving certificate usages %v %v, want server auth and digital signature only", leaf.ExtKeyUsage, leaf.KeyUsage)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(p.CAPEM)
	for _, name := range []string{"localhost", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "127.0.0.1", "10.77.0.2"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err != nil {
			t.Errorf("serving certificate for %s: %v", name, err)
		}
	}
	for _, name := range []string{"::1", "10.77.0.3", "example.com"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err == nil {
			t.Errorf("serving certificate is valid for %s, which it was not written for", name)
		}
	}

	saKey, err := x509.ParsePKCS1PrivateKey(pemBlock(t, p.SAKeyFile, "RSA PRIVATE KEY"))
	if err != nil {
		t.Fatal(err)
	}
	saPub, err := x509.ParsePKIXPublicKey(pemBlock(t, p.SAPubKeyFile, "PUBLIC KEY"))
	if err != nil {
		t.Fatal(err)
	}
	if !saKey.PublicKey.Equal(saPub) || saKey.N.BitLen() != 2048 {
		t.Errorf("sa.pub does not match sa.key, or the key is not RSA 2048 (%d bits)", saKey.N.BitLen())
	}
}

// pemBlock is the bytes of the one PEM block of type typ in file.
func pemBlock(t *testing.T, file, typ string) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(b)
	if block == nil || block.Type != typ || len(rest) != 0 {
		t.Fatalf("%s is not one PEM block of type %s", file, typ)
	}
	return block.Bytes
}
