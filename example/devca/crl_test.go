package devca

import (
	"crypto/x509"
	"net/http"
	"testing"
)

func (e *env) fetchCRL() *x509.RevocationList {
	e.t.Helper()
	status, h, body := e.get("/scep?operation=GetCRL")
	if status != http.StatusOK || h.Get("Content-Type") != "application/pkix-crl" {
		e.t.Fatalf("GetCRL: %d %q", status, h.Get("Content-Type"))
	}
	crl, err := x509.ParseRevocationList(body)
	if err != nil {
		e.t.Fatalf("ParseRevocationList: %v", err)
	}
	if err := crl.CheckSignatureFrom(e.ca.CACert()); err != nil {
		e.t.Fatalf("CRL signature: %v", err)
	}
	return crl
}

func crlLists(crl *x509.RevocationList, cert *x509.Certificate) bool {
	for _, entry := range crl.RevokedCertificateEntries {
		if entry.SerialNumber.Cmp(cert.SerialNumber) == 0 {
			return true
		}
	}
	return false
}

func TestRevokeAppearsInCRL(t *testing.T) {
	e := newEnv(t, InitOptions{})
	cert1 := e.mustEnroll("swc-1", e.register("swc-1"), request{})
	cert2 := e.mustEnroll("swc-2", e.register("swc-2"), request{key: clientKey2()})

	before := e.fetchCRL()
	if len(before.RevokedCertificateEntries) != 0 {
		t.Fatalf("fresh CRL lists %d certificates", len(before.RevokedCertificateEntries))
	}
	if again := e.fetchCRL(); again.Number.Cmp(before.Number) != 0 {
		t.Fatal("an unchanged CRL got a new number")
	}

	if err := e.ca.Revoke("swc-1"); err != nil {
		t.Fatal(err)
	}
	after := e.fetchCRL()
	if !crlLists(after, cert1) || crlLists(after, cert2) {
		t.Fatal("CRL should list swc-1's certificate only")
	}
	if after.Number.Cmp(before.Number) <= 0 {
		t.Fatalf("CRL number %v did not grow past %v", after.Number, before.Number)
	}
	if after.Issuer.String() != e.ca.CACert().Subject.String() {
		t.Fatalf("CRL issuer %v", after.Issuer)
	}
}
