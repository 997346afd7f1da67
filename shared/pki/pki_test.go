package pki_test

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/shared/pki"
	"github.com/socket-warp/socket-warp/shared/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }

func newCA(t *testing.T) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA("pki test CA")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issue(t *testing.T, ca *pki.CA, opts pki.LeafOptions) *pki.Leaf {
	t.Helper()
	leaf, err := ca.Issue(opts)
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

func checkPerm(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS == "windows" {
		return // no Unix permission bits
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s has mode %v, want %v", path, got, want)
	}
}

// dirNames lists dir, hidden files included.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteFiles(t *testing.T) {
	ca := newCA(t)
	leaf := issue(t, ca, pki.LeafOptions{CommonName: "uid-1", Usage: pki.Client})
	dir := t.TempDir()

	certPath, keyPath, err := leaf.WriteFiles(dir, "uid-1")
	if err != nil {
		t.Fatal(err)
	}
	if certPath != filepath.Join(dir, "uid-1.crt") || keyPath != filepath.Join(dir, "uid-1.key") {
		t.Errorf("WriteFiles wrote %s and %s", certPath, keyPath)
	}
	checkPerm(t, keyPath, 0o600)
	checkPerm(t, certPath, 0o644)
	if names := dirNames(t, dir); !slices.Equal(names, []string{"uid-1.crt", "uid-1.key"}) {
		t.Errorf("dir holds %q, want just the two files", names)
	}

	// The files are a usable key pair for exactly this leaf.
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatalf("written files are not a key pair: %v", err)
	}
	if !bytes.Equal(pair.Certificate[0], leaf.Cert.Raw) {
		t.Error("written certificate is not the leaf's")
	}

	// Rewriting over files with loose permissions tightens the key again.
	if err := os.Chmod(keyPath, 0o644); err != nil {
		t.Fatal(err)
	}
	other := issue(t, ca, pki.LeafOptions{CommonName: "uid-1", Usage: pki.Client})
	if _, _, err := other.WriteFiles(dir, "uid-1"); err != nil {
		t.Fatal(err)
	}
	checkPerm(t, keyPath, 0o600)
	if pair, err := tls.LoadX509KeyPair(certPath, keyPath); err != nil || !bytes.Equal(pair.Certificate[0], other.Cert.Raw) {
		t.Errorf("rewritten files are not the new leaf's key pair (err %v)", err)
	}
}

func TestWriteCert(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	path, err := ca.WriteCert(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, "ca.crt") {
		t.Errorf("WriteCert wrote %s", path)
	}
	checkPerm(t, path, 0o644)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" || !bytes.Equal(block.Bytes, ca.Cert.Raw) || len(bytes.TrimSpace(rest)) != 0 {
		t.Error("CA file is not exactly the CA certificate in PEM")
	}
}

func TestWriteFileAtomicReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "file")
	for _, step := range []struct {
		data string
		mode os.FileMode
	}{
		{"first version, longer than the second\n", 0o644},
		{"second\n", 0o600},
		{"", 0o640},
	} {
		if err := pki.WriteFileAtomic(path, []byte(step.data), step.mode); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != step.data {
			t.Errorf("file holds %q, want %q", got, step.data)
		}
		checkPerm(t, path, step.mode)
		if names := dirNames(t, dir); !slices.Equal(names, []string{"file"}) {
			t.Errorf("dir holds %q, want only the file: a temp file was left behind", names)
		}
	}
}

func TestWriteFileAtomicFailureLeavesNoTempFile(t *testing.T) {
	dir := t.TempDir()

	// The rename fails: a non-empty directory is in the way.
	blocked := filepath.Join(dir, "blocked")
	if err := os.MkdirAll(filepath.Join(blocked, "inside"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := pki.WriteFileAtomic(blocked, []byte("data"), 0o600)
	if err == nil {
		t.Fatal("WriteFileAtomic over a non-empty directory succeeded")
	}
	if !strings.Contains(err.Error(), blocked) {
		t.Errorf("error %q does not name %s", err, blocked)
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"blocked"}) {
		t.Errorf("dir holds %q after a failed write, want no temp file", names)
	}

	// The directory does not exist.
	missing := filepath.Join(dir, "no-such-dir", "file")
	err = pki.WriteFileAtomic(missing, []byte("data"), 0o600)
	if err == nil {
		t.Fatal("WriteFileAtomic into a missing directory succeeded")
	}
	if !strings.Contains(err.Error(), missing) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error %q does not name %s or does not wrap ErrNotExist", err, missing)
	}
}

func TestCA(t *testing.T) {
	ca := newCA(t)
	c := ca.Cert
	if !c.IsCA || !c.BasicConstraintsValid || c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA certificate: IsCA %v, basic constraints %v, key usage %b", c.IsCA, c.BasicConstraintsValid, c.KeyUsage)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("CA certificate is not self-signed: %v", err)
	}
	if c.Subject.CommonName != "pki test CA" {
		t.Errorf("CA CN %q", c.Subject.CommonName)
	}
	if now := time.Now(); now.Before(c.NotBefore) || now.After(c.NotAfter) {
		t.Errorf("CA not valid now: %v to %v", c.NotBefore, c.NotAfter)
	}
}

func TestIssuedLeafChainsToCA(t *testing.T) {
	ca := newCA(t)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	verify := func(c *x509.Certificate, usage x509.ExtKeyUsage, dnsName string) error {
		_, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}, DNSName: dnsName})
		return err
	}

	for _, tc := range []struct {
		name                string
		usage               pki.Usage
		serverAuth, clientA bool
	}{
		{"Server", pki.Server, true, false},
		{"Client", pki.Client, false, true},
		{"Both", pki.Both, true, true},
		{"NoEKU", pki.NoEKU, true, true}, // x509: no EKU means any use
		{"CodeSigning", pki.CodeSigning, false, false},
		{"AnyEKU", pki.AnyEKU, true, true}, // x509: anyExtendedKeyUsage allows every use
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaf := issue(t, ca, pki.LeafOptions{
				CommonName: "leaf", Usage: tc.usage,
				DNSNames: []string{"listener.example"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
			})
			if leaf.Cert.IsCA {
				t.Error("leaf is a CA")
			}
			if err := leaf.Cert.CheckSignatureFrom(ca.Cert); err != nil {
				t.Errorf("leaf not signed by the CA: %v", err)
			}
			if err := verify(leaf.Cert, x509.ExtKeyUsageAny, ""); err != nil {
				t.Errorf("leaf does not chain to the CA: %v", err)
			}
			for _, u := range []struct {
				name string
				eku  x509.ExtKeyUsage
				want bool
			}{{"serverAuth", x509.ExtKeyUsageServerAuth, tc.serverAuth}, {"clientAuth", x509.ExtKeyUsageClientAuth, tc.clientA}} {
				err := verify(leaf.Cert, u.eku, "")
				if (err == nil) != u.want {
					t.Errorf("verify for %s: %v, want ok=%v", u.name, err, u.want)
				}
				var inv x509.CertificateInvalidError
				if err != nil && (!errors.As(err, &inv) || inv.Reason != x509.IncompatibleUsage) {
					t.Errorf("verify for %s failed for the wrong reason: %v", u.name, err)
				}
			}
			if tc.serverAuth {
				if err := verify(leaf.Cert, x509.ExtKeyUsageServerAuth, "listener.example"); err != nil {
					t.Errorf("verify for its DNS name: %v", err)
				}
				if err := verify(leaf.Cert, x509.ExtKeyUsageServerAuth, "127.0.0.1"); err != nil {
					t.Errorf("verify for its IP: %v", err)
				}
				if err := verify(leaf.Cert, x509.ExtKeyUsageServerAuth, "other.example"); err == nil {
					t.Error("verify for a name not in the certificate succeeded")
				}
			}
		})
	}
}

func TestLeafFromAnotherCADoesNotChain(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	leaf := issue(t, other, pki.LeafOptions{CommonName: "uid-1", Usage: pki.Client})
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	_, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	var uae x509.UnknownAuthorityError
	if !errors.As(err, &uae) {
		t.Errorf("verify against a different CA: %v, want an unknown authority error", err)
	}
}

func TestLeafValidity(t *testing.T) {
	ca := newCA(t)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)

	now := time.Now()
	def := issue(t, ca, pki.LeafOptions{CommonName: "default"})
	if now.Before(def.Cert.NotBefore) || now.After(def.Cert.NotAfter) {
		t.Errorf("default validity %v to %v does not cover now", def.Cert.NotBefore, def.Cert.NotAfter)
	}

	notBefore, notAfter := now.Add(-48*time.Hour).Truncate(time.Second), now.Add(-24*time.Hour).Truncate(time.Second)
	expired := issue(t, ca, pki.LeafOptions{CommonName: "expired", Usage: pki.Client, NotBefore: notBefore, NotAfter: notAfter})
	if !expired.Cert.NotBefore.Equal(notBefore) || !expired.Cert.NotAfter.Equal(notAfter) {
		t.Errorf("validity %v to %v, want %v to %v", expired.Cert.NotBefore, expired.Cert.NotAfter, notBefore, notAfter)
	}
	_, err := expired.Cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	var inv x509.CertificateInvalidError
	if !errors.As(err, &inv) || inv.Reason != x509.Expired {
		t.Errorf("verify of an expired leaf: %v, want an expiry error", err)
	}

	if def.Cert.SerialNumber.Cmp(expired.Cert.SerialNumber) == 0 {
		t.Error("two leaves share a serial number")
	}
}

func TestKeyPEM(t *testing.T) {
	leaf := issue(t, newCA(t), pki.LeafOptions{CommonName: "uid-1", Usage: pki.Client})
	keyPEM, err := leaf.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("key PEM block %v, want PRIVATE KEY (PKCS#8)", block)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(leaf.CertPEM(), keyPEM); err != nil {
		t.Errorf("key does not match the certificate: %v", err)
	}
	if k, ok := key.(interface{ Equal(crypto.PrivateKey) bool }); !ok || !k.Equal(leaf.Key) {
		t.Error("parsed key differs from the leaf's key")
	}
}
