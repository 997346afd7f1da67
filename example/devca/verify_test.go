package devca

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"
	"time"
)

func TestVerifyIssuedAndAttributes(t *testing.T) {
	e := newEnv(t, InitOptions{})
	cert := e.mustEnroll("swc-1", e.register("swc-1"), request{})
	got := e.verify(cert)
	e.wantVerifyOK(cert, "swc-1", StatusIssued)
	if attrs := got.body["attributes"].(map[string]any); attrs["role"] != "test" {
		t.Fatalf("attributes %v", attrs)
	}
	// PathEscape (keeps '+') works as well as QueryEscape.
	got = e.verifyHeader(url.PathEscape(string(certPEM(cert.Raw))))
	if got.status != http.StatusOK {
		t.Fatalf("path-escaped header: %d %v", got.status, got.body)
	}
}

func TestVerifyRevoked(t *testing.T) {
	e := newEnv(t, InitOptions{})
	cert := e.mustEnroll("swc-1", e.register("swc-1"), request{})
	if err := e.ca.Revoke("swc-1"); err != nil {
		t.Fatal(err)
	}
	e.wantVerifyErr(e.verify(cert), http.StatusUnauthorized, MsgRevoked)
	if info, _ := e.ca.Client("swc-1"); info.Status != StatusInactive {
		t.Fatalf("status after revoke %q, want INACTIVE", info.Status)
	}
}

func TestVerifyUserNotFound(t *testing.T) {
	e := newEnv(t, InitOptions{})
	// A certificate of this CA whose uid is not a client.
	cert := signClientCert(t, e.ca.CACert(), e, "ghost", e.clock.Now())
	got := e.verify(cert)
	e.wantVerifyErr(got, http.StatusUnauthorized, MsgUserNotFound)
	if got.body["user"] != "ghost" {
		t.Fatalf("user %v", got.body["user"])
	}
}

func TestVerifyForeignCA(t *testing.T) {
	e := newEnv(t, InitOptions{})
	e.register("swc-1")
	other, err := Init(filepath.Join(t.TempDir(), "other.json"), InitOptions{CAKeyBits: 2048}, withCAKey(caKeyB()))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	foreign := signWith(t, other.CACert(), other.caKey, "swc-1", e.clock.Now(), time.Hour)
	e.wantVerifyErr(e.verify(foreign), http.StatusUnauthorized, MsgVerifyFailed)

	// The listener's server certificate chains to the CA but is not for clientAuth.
	srv, _ := e.ca.ServerCertPEM()
	e.wantVerifyErr(e.verifyHeader(url.QueryEscape(string(srv))), http.StatusUnauthorized, MsgVerifyFailed)
}

func TestVerifyExpired(t *testing.T) {
	e := newEnv(t, InitOptions{CertValidity: time.Hour})
	cert := e.mustEnroll("swc-1", e.register("swc-1"), request{})
	e.clock.Advance(2 * time.Hour)
	got := e.verify(cert)
	e.wantVerifyErr(got, http.StatusUnauthorized, MsgExpired)
	for _, k := range []string{"notBefore", "notAfter", "Date"} {
		if _, ok := got.body[k]; !ok {
			t.Errorf("expired answer lacks %q: %v", k, got.body)
		}
	}
	if info, _ := e.ca.Client("swc-1"); info.Status != StatusInactive {
		t.Fatalf("status with an expired certificate %q, want INACTIVE", info.Status)
	}
}

func TestVerifyBadHeaders(t *testing.T) {
	e := newEnv(t, InitOptions{})
	cert := e.mustEnroll("swc-1", e.register("swc-1"), request{})
	good := url.QueryEscape(string(certPEM(cert.Raw)))

	e.wantVerifyErr(e.verifyHeader(), http.StatusBadRequest, MsgNoCertificate)
	e.wantVerifyErr(e.verifyHeader("%zz%"), http.StatusBadRequest, MsgDecodeFailed)
	e.wantVerifyErr(e.verifyHeader("hello"), http.StatusBadRequest, MsgParseFailed)
	if got := e.verifyHeader(good, good); got.status != http.StatusBadRequest {
		t.Fatalf("two headers: %d %v, want 400", got.status, got.body)
	}
	garbage := url.QueryEscape("-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n")
	e.wantVerifyErr(e.verifyHeader(garbage), http.StatusUnauthorized, MsgVerifyFailed)
}

// signClientCert signs a clientAuth certificate with e's CA key, bypassing SCEP.
func signClientCert(t *testing.T, ca *x509.Certificate, e *env, cn string, now time.Time) *x509.Certificate {
	t.Helper()
	return signWith(t, ca, e.ca.caKey, cn, now, time.Hour)
}

func signWith(t *testing.T, ca *x509.Certificate, caKey any, cn string, now time.Time, validity time.Duration) *x509.Certificate {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, clientKey1().Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
