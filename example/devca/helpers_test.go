package devca

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smallstep/scep"
	"github.com/smallstep/scep/x509util"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// RSA key generation is slow under the race detector: make a few keys once
// and share them. Keys only need to differ where a test says so.
var testKeys = sync.OnceValue(func() []*rsa.PrivateKey {
	keys := make([]*rsa.PrivateKey, 4)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	return keys
})

// Roles of the shared keys.
func caKeyA() *rsa.PrivateKey     { return testKeys()[0] }
func caKeyB() *rsa.PrivateKey     { return testKeys()[1] } // a foreign CA
func clientKey1() *rsa.PrivateKey { return testKeys()[2] }
func clientKey2() *rsa.PrivateKey { return testKeys()[3] }

// fakeClock is a settable clock for WithClock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a CA behind real HTTP servers, with its logs captured.
type env struct {
	t        testing.TB
	ca       *CA
	clock    *fakeClock
	logs     *observer.ObservedLogs
	refusals *refusals
	pub      *httptest.Server
	admin    *httptest.Server
	path     string
}

func newEnv(t *testing.T, opts InitOptions) *env {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	clock := newFakeClock()
	path := filepath.Join(t.TempDir(), "devca.json")
	if opts.CAKeyBits == 0 {
		opts.CAKeyBits = 2048
	}
	refusals := &refusals{}
	ca, err := Init(path, opts, WithLogger(zap.New(core)), WithClock(clock.Now), withCAKey(caKeyA()), withRefusals(refusals.add))
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	e := &env{t: t, ca: ca, clock: clock, logs: logs, refusals: refusals, path: path}
	e.pub = httptest.NewServer(ca.Handler())
	e.admin = httptest.NewServer(ca.AdminHandler())
	t.Cleanup(func() {
		e.pub.Close()
		e.admin.Close()
		if err := ca.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

// refusals counts the enrolments a CA refused and keeps the last reason
// (a fuzz run refuses without end: no list).
type refusals struct {
	mu   sync.Mutex
	n    int
	last string
}

func (r *refusals) add(_, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	r.last = reason
}

func (r *refusals) get() (n int, last string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n, r.last
}

// register adds uid and returns an activation secret.
func (e *env) register(uid string) string {
	e.t.Helper()
	if err := e.ca.AddClient(uid, map[string]any{"role": "test"}); err != nil {
		e.t.Fatalf("AddClient(%q): %v", uid, err)
	}
	secret, err := e.ca.CreateSecret(uid, 0)
	if err != nil {
		e.t.Fatalf("CreateSecret(%q): %v", uid, err)
	}
	return secret
}

// assertSecretsNotLogged fails if any log line mentions one of the secrets.
func (e *env) assertSecretsNotLogged(secrets ...string) {
	e.t.Helper()
	for _, entry := range e.logs.All() {
		line := entry.Message + " " + fmt.Sprint(entry.ContextMap())
		for _, s := range secrets {
			if s != "" && strings.Contains(line, s) {
				e.t.Errorf("secret %q appears in the log line %q", s, line)
			}
		}
	}
}

func (e *env) get(path string) (int, http.Header, []byte) {
	e.t.Helper()
	resp, err := e.pub.Client().Get(e.pub.URL + path)
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("GET %s: read: %v", path, err)
	}
	return resp.StatusCode, resp.Header, body
}

// ---- a SCEP client built from smallstep/scep, as sw-connector does ----

// selfSigned is the throw-away signer certificate of a PKCSReq.
func selfSigned(t testing.TB, key *rsa.PrivateKey, cn string) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func makeCSR(t testing.TB, key *rsa.PrivateKey, cn, challenge string) *x509.CertificateRequest {
	t.Helper()
	der, err := x509util.CreateCertificateRequest(rand.Reader, &x509util.CertificateRequest{
		CertificateRequest: x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}},
		ChallengePassword:  challenge,
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// request describes one PKIOperation.
type request struct {
	typ        scep.MessageType // default PKCSReq
	cn         string           // CSR common name; default uid
	key        *rsa.PrivateKey  // CSR key; default clientKey1
	signerCert *x509.Certificate
	signerKey  *rsa.PrivateKey
	get        bool // send by GET instead of POST
}

// reply is what a PKIOperation brought back.
type reply struct {
	status scep.PKIStatus
	info   scep.FailInfo
	cert   *x509.Certificate
}

// buildPKIMessage makes the DER PKIMessage for uid\secret.
func (e *env) buildPKIMessage(uid, secret string, r request) ([]byte, *x509.Certificate, *rsa.PrivateKey) {
	e.t.Helper()
	if r.typ == "" {
		r.typ = scep.PKCSReq
	}
	if r.key == nil {
		r.key = clientKey1()
	}
	cn := r.cn
	if cn == "" {
		cn = uid
	}
	if r.signerCert == nil {
		r.signerCert, r.signerKey = selfSigned(e.t, r.key, cn), r.key
	}
	csr := makeCSR(e.t, r.key, cn, uid+`\`+secret)
	msg, err := scep.NewCSRRequest(csr, &scep.PKIMessage{
		MessageType: r.typ,
		Recipients:  []*x509.Certificate{e.ca.CACert()},
		SignerCert:  r.signerCert,
		SignerKey:   r.signerKey,
	})
	if err != nil {
		e.t.Fatalf("NewCSRRequest: %v", err)
	}
	return msg.Raw, r.signerCert, r.signerKey
}

// sendPKI posts (or gets) a raw PKIMessage and returns the HTTP answer.
func (e *env) sendPKI(raw []byte, get bool) (int, string, []byte) {
	e.t.Helper()
	var resp *http.Response
	var err error
	if get {
		q := url.Values{"operation": {"PKIOperation"}, "message": {base64.StdEncoding.EncodeToString(raw)}}
		resp, err = e.pub.Client().Get(e.pub.URL + "/scep?" + q.Encode())
	} else {
		resp, err = e.pub.Client().Post(e.pub.URL+"/scep?operation=PKIOperation", "application/x-pki-message", bytes.NewReader(raw))
	}
	if err != nil {
		e.t.Fatalf("PKIOperation: %v", err) // a dropped connection lands here
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("PKIOperation: read: %v", err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), body
}

// enroll runs a full PKIOperation and parses the CertRep as a client would:
// PKIStatus first, then decryption with the signer's certificate and key.
func (e *env) enroll(uid, secret string, r request) reply {
	e.t.Helper()
	raw, signerCert, signerKey := e.buildPKIMessage(uid, secret, r)
	status, ctype, body := e.sendPKI(raw, r.get)
	if status != http.StatusOK || ctype != contentTypePKIMessage {
		e.t.Fatalf("PKIOperation: HTTP %d %q: %s", status, ctype, body)
	}
	msg, err := scep.ParsePKIMessage(body, scep.WithCACerts([]*x509.Certificate{e.ca.CACert()}))
	if err != nil {
		e.t.Fatalf("ParsePKIMessage(reply): %v", err)
	}
	if msg.MessageType != scep.CertRep {
		e.t.Fatalf("reply type %q, want CertRep", msg.MessageType)
	}
	out := reply{status: msg.PKIStatus, info: msg.FailInfo}
	if msg.PKIStatus != scep.SUCCESS {
		return out
	}
	if err := msg.DecryptPKIEnvelope(signerCert, signerKey); err != nil {
		e.t.Fatalf("DecryptPKIEnvelope: %v", err)
	}
	out.cert = msg.CertRepMessage.Certificate
	return out
}

// mustEnroll enrols and fails the test unless it worked.
func (e *env) mustEnroll(uid, secret string, r request) *x509.Certificate {
	e.t.Helper()
	rep := e.enroll(uid, secret, r)
	if rep.status != scep.SUCCESS || rep.cert == nil {
		e.t.Fatalf("enroll %q: status %q failInfo %q, want SUCCESS", uid, rep.status, rep.info)
	}
	return rep.cert
}

// mustFail enrols, wants a FAILURE badRequest CertRep and, if reason is not
// empty, one refusal whose reason contains it.
func (e *env) mustFail(uid, secret string, r request, reason string) {
	e.t.Helper()
	before, _ := e.refusals.get()
	rep := e.enroll(uid, secret, r)
	if rep.status != scep.FAILURE || rep.info != scep.BadRequest {
		e.t.Fatalf("enroll %q: status %q failInfo %q, want FAILURE badRequest", uid, rep.status, rep.info)
	}
	// The CA reports the refusal before it answers.
	n, got := e.refusals.get()
	if n != before+1 {
		e.t.Fatalf("enroll %q: %d refusals, want 1", uid, n-before)
	}
	if !strings.Contains(got, reason) {
		e.t.Fatalf("enroll %q refused because %q, want %q", uid, got, reason)
	}
}

// ---- /api/cert/verify ----

type verifyResult struct {
	status int
	body   map[string]any
}

func (e *env) verifyHeader(values ...string) verifyResult {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.pub.URL+"/api/cert/verify", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, v := range values {
		req.Header.Add(ClientCertHeader, v)
	}
	resp, err := e.pub.Client().Do(req)
	if err != nil {
		e.t.Fatalf("verify: %v", err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		e.t.Errorf("verify: Content-Type %q", ct)
	}
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		e.t.Fatalf("verify: decode: %v", err)
	}
	return verifyResult{resp.StatusCode, body}
}

func (e *env) verify(cert *x509.Certificate) verifyResult {
	e.t.Helper()
	return e.verifyHeader(url.QueryEscape(string(certPEM(cert.Raw))))
}

func (e *env) wantVerifyOK(cert *x509.Certificate, uid, status string) {
	e.t.Helper()
	got := e.verify(cert)
	if got.status != http.StatusOK || got.body["uid"] != uid || got.body["status"] != status {
		e.t.Fatalf("verify: %d %v, want 200 uid %q status %q", got.status, got.body, uid, status)
	}
	if _, ok := got.body["attributes"].(map[string]any); !ok {
		e.t.Fatalf("verify: attributes %v is not an object", got.body["attributes"])
	}
}

func (e *env) wantVerifyErr(got verifyResult, status int, message string) {
	e.t.Helper()
	if got.status != status || got.body["message"] != message {
		e.t.Fatalf("verify: %d %v, want %d %q", got.status, got.body, status, message)
	}
}

// ---- admin API ----

func (e *env) adminDo(method, path, token string, body any) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.admin.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.admin.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, out
}
