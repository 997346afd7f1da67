package devca

import (
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smallstep/scep"
)

func TestGetCACaps(t *testing.T) {
	e := newEnv(t, InitOptions{})
	status, h, body := e.get("/scep?operation=GetCACaps")
	if status != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Fatalf("GetCACaps: %d %q", status, h.Get("Content-Type"))
	}
	got := strings.Fields(string(body))
	want := []string{"Renewal", "SHA-1", "SHA-256", "AES", "DES3", "SCEPStandard", "POSTPKIOperation"}
	if !slices.Equal(got, want) {
		t.Fatalf("GetCACaps = %q, want %q", got, want)
	}
}

func TestGetCACert(t *testing.T) {
	e := newEnv(t, InitOptions{CommonName: "test CA"})
	status, h, body := e.get("/scep?operation=GetCACert")
	if status != http.StatusOK || h.Get("Content-Type") != "application/x-x509-ca-cert" {
		t.Fatalf("GetCACert: %d %q", status, h.Get("Content-Type"))
	}
	cert, err := x509.ParseCertificate(body)
	if err != nil {
		t.Fatalf("GetCACert is not one DER certificate: %v", err)
	}
	if !cert.Equal(e.ca.CACert()) || cert.Subject.CommonName != "test CA" {
		t.Fatalf("GetCACert returned %v", cert.Subject)
	}
	wantKU := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	if cert.KeyUsage != wantKU || !cert.IsCA {
		t.Fatalf("CA key usage %b IsCA %v, want %b and a CA", cert.KeyUsage, cert.IsCA, wantKU)
	}
	// A client picking recipients by keyEncipherment finds the CA.
	if got := scep.EnciphermentCertsSelector().SelectCerts([]*x509.Certificate{cert}); len(got) != 1 {
		t.Fatal("EnciphermentCertsSelector drops the CA")
	}
}

func TestSCEPBadRequests(t *testing.T) {
	e := newEnv(t, InitOptions{})
	for _, path := range []string{
		"/scep",
		"/scep?operation=Nope",
		"/scep?operation=PKIOperation",
		"/scep?operation=PKIOperation&message=%25%25not-base64",
		"/scep?operation=PKIOperation&message=" + url.QueryEscape(base64.StdEncoding.EncodeToString([]byte("not a PKI message"))),
	} {
		if status, _, _ := e.get(path); status != http.StatusBadRequest {
			t.Errorf("GET %s: %d, want 400", path, status)
		}
	}
	req, _ := http.NewRequest(http.MethodDelete, e.pub.URL+"/scep?operation=GetCACaps", nil)
	resp, err := e.pub.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("DELETE /scep: %d, want 405", resp.StatusCode)
	}
}

func TestEnrollPOST(t *testing.T) {
	e := newEnv(t, InitOptions{})
	secret := e.register("swc-1")
	if info, _ := e.ca.Client("swc-1"); info.Status != StatusIssuable {
		t.Fatalf("status before enrolment %q, want ISSUABLE", info.Status)
	}
	cert := e.mustEnroll("swc-1", secret, request{})

	if cert.Subject.CommonName != "swc-1" {
		t.Errorf("CN %q", cert.Subject.CommonName)
	}
	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("EKU %v, want clientAuth only", cert.ExtKeyUsage)
	}
	if cert.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("key usage %b, want digitalSignature", cert.KeyUsage)
	}
	if d := cert.NotAfter.Sub(e.clock.Now()); d < 364*24*time.Hour || d > 366*24*time.Hour {
		t.Errorf("validity ends in %v, want about 365 days", d)
	}
	if !clientKey1().PublicKey.Equal(cert.PublicKey) {
		t.Error("certificate is not for the CSR's key")
	}
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.CACert())
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: e.clock.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("certificate does not chain to the CA: %v", err)
	}
	if info, _ := e.ca.Client("swc-1"); info.Status != StatusIssued {
		t.Errorf("status after enrolment %q, want ISSUED", info.Status)
	}
	e.wantVerifyOK(cert, "swc-1", StatusIssued)
	e.assertSecretsNotLogged(secret)
}

func TestEnrollGET(t *testing.T) {
	e := newEnv(t, InitOptions{})
	secret := e.register("swc-get")
	cert := e.mustEnroll("swc-get", secret, request{get: true})
	if cert.Subject.CommonName != "swc-get" {
		t.Fatalf("CN %q", cert.Subject.CommonName)
	}
}

func TestEnrollGETURLSafeBase64(t *testing.T) {
	e := newEnv(t, InitOptions{})
	secret := e.register("swc-urlsafe")
	raw, _, _ := e.buildPKIMessage("swc-urlsafe", secret, request{})
	status, ctype, _ := e.get("/scep?operation=PKIOperation&message=" + base64.RawURLEncoding.EncodeToString(raw))
	if status != http.StatusOK || ctype.Get("Content-Type") != contentTypePKIMessage {
		t.Fatalf("URL-safe base64: %d %q", status, ctype.Get("Content-Type"))
	}
}

func TestWrongSecretDoesNotConsume(t *testing.T) {
	e := newEnv(t, InitOptions{})
	secret := e.register("swc-1")
	e.mustFail("swc-1", secret+"x", request{}, "wrong secret")
	e.mustFail("swc-1", "", request{}, "challenge password")
	e.mustEnroll("swc-1", secret, request{})
	e.assertSecretsNotLogged(secret)
}

func TestReusedSecretFails(t *testing.T) {
	e := newEnv(t, InitOptions{})
	secret := e.register("swc-1")
	e.mustEnroll("swc-1", secret, request{})
	e.mustFail("swc-1", secret, request{key: clientKey2()}, "no valid secret")
}

func TestUnknownUIDGetsFailureReply(t *testing.T) {
	e := newEnv(t, InitOptions{})
	// The reference drops the connection here; devca must answer.
	e.mustFail("nobody", "whatever", request{}, "unknown uid")
	e.mustFail("nobody", "whatever", request{get: true}, "unknown uid")
}

func TestCNMustEqualUID(t *testing.T) {
	e := newEnv(t, InitOptions{})
	secret := e.register("swc-1")
	e.register("swc-2")
	e.mustFail("swc-1", secret, request{cn: "swc-2"}, "common name")
	e.mustEnroll("swc-1", secret, request{}) // the secret survived
}

func TestChallengeWithoutBackslashFails(t *testing.T) {
	e := newEnv(t, InitOptions{})
	secret := e.register("swc-1")
	// uid and secret glued without the backslash.
	csr := makeCSR(t, clientKey1(), "swc-1", "swc-1"+secret)
	msg, err := scep.NewCSRRequest(csr, &scep.PKIMessage{MessageType: scep.PKCSReq,
		Recipients: []*x509.Certificate{e.ca.CACert()}, SignerCert: selfSigned(t, clientKey1(), "swc-1"), SignerKey: clientKey1()})
	if err != nil {
		t.Fatal(err)
	}
	status, _, body := e.sendPKI(msg.Raw, false)
	if status != http.StatusOK {
		t.Fatalf("HTTP %d", status)
	}
	rep, err := scep.ParsePKIMessage(body, scep.WithCACerts([]*x509.Certificate{e.ca.CACert()}))
	if err != nil || rep.PKIStatus != scep.FAILURE {
		t.Fatalf("reply %v %v, want FAILURE", rep, err)
	}
	e.assertSecretsNotLogged(secret)
}

func TestPKCSReqWithUpdateSecretFails(t *testing.T) {
	e := newEnv(t, InitOptions{})
	secret := e.register("swc-1")
	e.mustEnroll("swc-1", secret, request{})
	update, err := e.ca.CreateSecret("swc-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// An update secret only renews, with RenewalReq signed by the current certificate.
	e.mustFail("swc-1", update, request{key: clientKey2()}, "update secret")
}

func TestConcurrentEnrollmentsUseSecretOnce(t *testing.T) {
	e := newEnv(t, InitOptions{})
	secret := e.register("swc-1")
	raws := make([][]byte, 4)
	for i := range raws {
		raws[i], _, _ = e.buildPKIMessage("swc-1", secret, request{})
	}
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		successes int
	)
	for _, raw := range raws {
		wg.Go(func() {
			_, _, body := e.sendPKI(raw, false)
			rep, err := scep.ParsePKIMessage(body, scep.WithCACerts([]*x509.Certificate{e.ca.CACert()}))
			if err != nil {
				t.Error(err)
				return
			}
			if rep.PKIStatus == scep.SUCCESS {
				mu.Lock()
				successes++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if successes != 1 {
		t.Fatalf("%d enrolments succeeded with one secret, want 1", successes)
	}
}

func TestExpiredSecretFails(t *testing.T) {
	e := newEnv(t, InitOptions{})
	if err := e.ca.AddClient("swc-1", nil); err != nil {
		t.Fatal(err)
	}
	info, err := e.ca.CreateSecretWith("swc-1", SecretOptions{AvailablePeriod: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Minute)
	e.mustFail("swc-1", info.Secret, request{}, "no valid secret")
	if got, _ := e.ca.Client("swc-1"); got.Status != StatusInactive {
		t.Fatalf("status %q after the secret expired, want INACTIVE", got.Status)
	}
}

func TestRenewal(t *testing.T) {
	e := newEnv(t, InitOptions{})
	secret := e.register("swc-1")
	oldCert := e.mustEnroll("swc-1", secret, request{})

	update, err := e.ca.CreateSecret("swc-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e.wantVerifyOK(oldCert, "swc-1", StatusUpdatable)

	// Wrong signers are refused and leave the update secret usable.
	e.mustFail("swc-1", update, request{typ: scep.RenewalReq, key: clientKey2()}, "not signed by a certificate of this CA")
	other := e.register("swc-2")
	otherCert := e.mustEnroll("swc-2", other, request{key: clientKey2()})
	e.mustFail("swc-1", update, request{typ: scep.RenewalReq, key: clientKey2(),
		signerCert: otherCert, signerKey: clientKey2()}, "another uid")

	newCert := e.mustEnroll("swc-1", update, request{typ: scep.RenewalReq, key: clientKey2(),
		signerCert: oldCert, signerKey: clientKey1()})
	if newCert.SerialNumber.Cmp(oldCert.SerialNumber) == 0 || !clientKey2().PublicKey.Equal(newCert.PublicKey) {
		t.Fatal("renewal did not issue a new certificate for the new key")
	}
	e.wantVerifyOK(newCert, "swc-1", StatusPending)
	e.wantVerifyOK(oldCert, "swc-1", StatusPending)

	// The update secret is used up.
	e.mustFail("swc-1", update, request{typ: scep.RenewalReq, signerCert: newCert, signerKey: clientKey2(), key: clientKey2()}, "no valid secret")

	// After the pending period the old certificate is revoked.
	e.clock.Advance(time.Hour + time.Second)
	e.wantVerifyErr(e.verify(oldCert), http.StatusUnauthorized, MsgRevoked)
	e.wantVerifyOK(newCert, "swc-1", StatusIssued)
	if crl := e.fetchCRL(); !crlLists(crl, oldCert) || crlLists(crl, newCert) {
		t.Fatal("CRL should list the old certificate and not the new one")
	}
	e.assertSecretsNotLogged(secret, update, other)
}

func TestRenewalSameKeyZeroPending(t *testing.T) {
	e := newEnv(t, InitOptions{})
	secret := e.register("swc-1")
	oldCert := e.mustEnroll("swc-1", secret, request{})
	update, err := e.ca.CreateSecret("swc-1", 0)
	if err != nil {
		t.Fatal(err)
	}
	newCert := e.mustEnroll("swc-1", update, request{typ: scep.RenewalReq, signerCert: oldCert, signerKey: clientKey1()})
	e.wantVerifyOK(newCert, "swc-1", StatusIssued)
	e.wantVerifyErr(e.verify(oldCert), http.StatusUnauthorized, MsgRevoked)
}

func TestRenewalWithExpiredSignerFails(t *testing.T) {
	e := newEnv(t, InitOptions{CertValidity: time.Hour})
	cert := e.mustEnroll("swc-1", e.register("swc-1"), request{})
	update, err := e.ca.CreateSecretWith("swc-1", SecretOptions{AvailablePeriod: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Hour)
	e.mustFail("swc-1", update.Secret, request{typ: scep.RenewalReq, signerCert: cert, signerKey: clientKey1()}, "expired")
}

func TestRenewalWithRevokedSignerFails(t *testing.T) {
	e := newEnv(t, InitOptions{})
	first := e.mustEnroll("swc-1", e.register("swc-1"), request{})
	update, err := e.ca.CreateSecret("swc-1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	e.mustEnroll("swc-1", update, request{typ: scep.RenewalReq, key: clientKey2(), signerCert: first, signerKey: clientKey1()})
	e.clock.Advance(2 * time.Minute) // first is now revoked
	update2, err := e.ca.CreateSecret("swc-1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	e.mustFail("swc-1", update2, request{typ: scep.RenewalReq, signerCert: first, signerKey: clientKey1()}, "revoked")
}

func TestRenewalReqWithActivationSecretFails(t *testing.T) {
	e := newEnv(t, InitOptions{})
	secret := e.register("swc-1")
	e.mustFail("swc-1", secret, request{typ: scep.RenewalReq}, "needs an update secret")
	e.mustEnroll("swc-1", secret, request{})
}

func TestShortLivedCertificates(t *testing.T) {
	e := newEnv(t, InitOptions{CertValidity: 90 * time.Minute})
	cert := e.mustEnroll("swc-1", e.register("swc-1"), request{})
	if d := cert.NotAfter.Sub(e.clock.Now()); d > 91*time.Minute || d < 89*time.Minute {
		t.Fatalf("validity ends in %v, want 90m", d)
	}
}

func TestReplaceWaitingSecret(t *testing.T) {
	e := newEnv(t, InitOptions{})
	first := e.register("swc-1")
	second, err := e.ca.CreateSecretWith("swc-1", SecretOptions{Replace: true})
	if err != nil {
		t.Fatalf("replace an activation secret: %v", err)
	}
	if second.Type != SecretActivate {
		t.Fatalf("replacement type %q, want %q", second.Type, SecretActivate)
	}
	e.mustFail("swc-1", first, request{}, "wrong secret")
	e.mustEnroll("swc-1", second.Secret, request{})

	update, err := e.ca.CreateSecretWith("swc-1", SecretOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ca.CreateSecretWith("swc-1", SecretOptions{}); !errors.Is(err, ErrClientState) {
		t.Fatalf("second update secret without Replace: %v, want ErrClientState", err)
	}
	again, err := e.ca.CreateSecretWith("swc-1", SecretOptions{Replace: true})
	if err != nil || again.Type != SecretUpdate {
		t.Fatalf("replace an update secret: %+v, %v", again, err)
	}
	if again.Secret == update.Secret {
		t.Fatal("the replacement is the old secret")
	}
	e.assertSecretsNotLogged(first, second.Secret, update.Secret, again.Secret)
}
