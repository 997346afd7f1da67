package devca

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestStateSurvivesReopen(t *testing.T) {
	e := newEnv(t, InitOptions{})
	secret := e.register("swc-1")
	cert := e.mustEnroll("swc-1", secret, request{})
	e.register("swc-2")
	if _, err := e.ca.CreateSecret("swc-2", 0); !errors.Is(err, ErrClientState) {
		t.Fatalf("second secret for an ISSUABLE client: %v, want ErrClientState", err)
	}
	if err := e.ca.AddClient("swc-3", nil); err != nil {
		t.Fatal(err)
	}
	secret3, err := e.ca.CreateSecret("swc-3", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ca.Revoke("swc-1"); err != nil {
		t.Fatal(err)
	}
	caCert := e.ca.CACert()
	srvCert, srvKey := e.ca.ServerCertPEM()
	if err := e.ca.Close(); err != nil {
		t.Fatal(err)
	}

	if runtime.GOOS != "windows" {
		fi, err := os.Stat(e.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("state file mode %v, want 0600", fi.Mode().Perm())
		}
	}
	raw, err := os.ReadFile(e.path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{secret, secret3} {
		if strings.Contains(string(raw), s) {
			t.Fatal("a plain secret is in the state file")
		}
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(e.path), ".*tmp*"))
	if len(leftovers) != 0 {
		t.Fatalf("temporary files left behind: %v", leftovers)
	}

	clock := e.clock
	ca, err := Open(e.path, WithClock(clock.Now))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if !ca.CACert().Equal(caCert) {
		t.Fatal("CA certificate changed")
	}
	if c, k := ca.ServerCertPEM(); string(c) != string(srvCert) || string(k) != string(srvKey) {
		t.Fatal("server certificate changed")
	}
	for uid, want := range map[string]string{"swc-1": StatusInactive, "swc-2": StatusIssuable, "swc-3": StatusIssuable} {
		info, err := ca.Client(uid)
		if err != nil || info.Status != want {
			t.Fatalf("%s after reopen: %+v %v, want %s", uid, info, err, want)
		}
	}
	// The revocation and the persisted secret hash survived.
	e.ca = ca
	e.pub.Close()
	e.pub = httptest.NewServer(ca.Handler())
	e.wantVerifyErr(e.verify(cert), 401, MsgRevoked)
	cert3 := e.mustEnroll("swc-3", secret3, request{key: clientKey2()})
	if cert3.SerialNumber.Cmp(cert.SerialNumber) <= 0 {
		t.Fatal("serial numbers went backwards after reopen")
	}
}

func TestInitRefusesExistingState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	ca, err := Init(path, InitOptions{CAKeyBits: 2048}, withCAKey(caKeyA()))
	if err != nil {
		t.Fatal(err)
	}
	ca.Close()
	before, _ := os.ReadFile(path)
	if _, err := Init(path, InitOptions{CAKeyBits: 2048}, withCAKey(caKeyB())); !errors.Is(err, ErrStateExists) {
		t.Fatalf("second Init: %v, want ErrStateExists", err)
	}
	after, _ := os.ReadFile(path)
	if string(before) != string(after) {
		t.Fatal("second Init changed the state file")
	}
}

func TestOpenErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"missing.json": "",
		"garbage.json": "{not json",
		"empty.json":   "{}",
		"badkey.json":  `{"version":1,"ca":{"cert_pem":"x","key_pem":"y"}}`,
	} {
		path := filepath.Join(dir, name)
		if content != "" {
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		_, err := Open(path)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("Open(%s) = %v, want an error naming the file", name, err)
		}
	}
}

func TestServerCertificate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	ca, err := Init(path, InitOptions{CAKeyBits: 2048}, withCAKey(caKeyA()))
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	certPEM, keyPEM := ca.ServerCertPEM()
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("server certificate and key do not pair: %v", err)
	}
	cert := pair.Leaf
	if !slices.Equal(cert.DNSNames, []string{"hostname.example.com", "localhost"}) ||
		len(cert.IPAddresses) != 1 || !cert.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("SANs %v %v", cert.DNSNames, cert.IPAddresses)
	}
	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Fatalf("EKU %v", cert.ExtKeyUsage)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.CACert())
	for _, name := range []string{"hostname.example.com", "localhost", "127.0.0.1"} {
		if _, err := cert.Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err != nil {
			t.Errorf("server certificate for %s: %v", name, err)
		}
	}

	// Custom SANs.
	path2 := filepath.Join(t.TempDir(), "state.json")
	ca2, err := Init(path2, InitOptions{CAKeyBits: 2048, DNSNames: []string{"listener.test"},
		IPs: []net.IP{net.ParseIP("::1")}, ServerCertValidity: 24 * time.Hour}, withCAKey(caKeyA()))
	if err != nil {
		t.Fatal(err)
	}
	defer ca2.Close()
	c2, _ := ca2.ServerCertPEM()
	leaf, err := parseCertPEM(c2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(leaf.DNSNames, []string{"listener.test"}) || !leaf.IPAddresses[0].Equal(net.ParseIP("::1")) {
		t.Fatalf("custom SANs %v %v", leaf.DNSNames, leaf.IPAddresses)
	}
}

func TestInitOptionsValidation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	_, err := Init(path, InitOptions{CAKeyBits: 1024, CertValidity: -1})
	if err == nil || !errors.Is(err, ErrInvalidPeriod) || !strings.Contains(err.Error(), "CAKeyBits") {
		t.Fatalf("Init with bad options: %v, want both problems reported", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a refused Init left a state file")
	}
}
