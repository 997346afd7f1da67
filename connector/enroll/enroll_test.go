package enroll

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/smallstep/pkcs7"
	"github.com/smallstep/scep"
	"github.com/smallstep/scep/x509util"
	"github.com/socket-warp/socket-warp/shared/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }

const (
	testUID    = "conn-1"
	testSecret = "s3cret"
)

// setup starts a responder on loopback and returns options pointing at it.
func setup(t *testing.T) (*responder, Options) {
	t.Helper()
	rs := newResponder(testUID + `\` + testSecret)
	srv := rs.start(t)
	log, _ := testutil.Logger(t, "enroll")
	return rs, Options{URL: srv.URL + "/scep", UID: testUID, Secret: testSecret, HTTPClient: srv.Client(), Log: log}
}

// inMemory returns options for a responder reached without sockets, for
// synctest.
func inMemory(t *testing.T, rs *responder) Options {
	log, _ := testutil.Logger(t, "enroll")
	return Options{URL: "http://ca.test/scep", UID: testUID, Secret: testSecret, HTTPClient: rs.inMemory(), Log: log}
}

// checkResult checks the certificate is for the key, has CN=uid and was
// issued by the responder's CA.
func checkResult(t *testing.T, res *Result, uid string) {
	t.Helper()
	if res.Cert.Subject.CommonName != uid {
		t.Errorf("CN %q, want %q", res.Cert.Subject.CommonName, uid)
	}
	if !publicKeysEqual(res.Key.Public(), res.Cert.PublicKey) {
		t.Error("the certificate is not for the result's key")
	}
	if k, ok := res.Key.(*rsa.PrivateKey); !ok || k.N.BitLen() != DefaultKeyBits {
		t.Errorf("key %T, want %d-bit RSA", res.Key, DefaultKeyBits)
	}
	if err := res.Cert.CheckSignatureFrom(fixtures().ca.cert); err != nil {
		t.Errorf("not issued by the CA: %v", err)
	}
	if len(res.CA) == 0 || !res.CA[0].Equal(fixtures().ca.cert) {
		t.Errorf("CA %v, want the test CA first", res.CA)
	}
}

func TestEnrollByPOST(t *testing.T) {
	rs, o := setup(t)
	o.DNSNames = []string{"conn-1.example"}
	res, err := Enroll(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, res, testUID)
	if !slices.Equal(res.Cert.DNSNames, o.DNSNames) {
		t.Errorf("SANs %v, want %v", res.Cert.DNSNames, o.DNSNames)
	}
	if got := rs.seen(); !slices.Equal(got, []string{"GetCACaps", "GetCACert", "PKIOperation POST"}) {
		t.Errorf("operations %v", got)
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.msgTypes[0] != scep.PKCSReq {
		t.Errorf("message type %q, want PKCSReq", rs.msgTypes[0])
	}
	// The PKCSReq is signed by a throw-away certificate for the new key.
	if s := rs.signers[0]; !publicKeysEqual(res.Key.Public(), s.PublicKey) || !bytes.Equal(s.RawIssuer, s.RawSubject) {
		t.Errorf("signer %s is not self-signed for the new key", s.Subject)
	}
	cp, err := x509util.ParseChallengePassword(rs.csrs[0].Raw)
	if err != nil || cp != testUID+`\`+testSecret {
		t.Errorf("challenge in the CSR %q, %v", cp, err)
	}
}

func TestEnrollByGET(t *testing.T) {
	rs, o := setup(t)
	rs.caps = "Renewal\nSHA-256\nAES\n" // neither POSTPKIOperation nor SCEPStandard
	res, err := Enroll(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, res, testUID)
	if n := rs.count("PKIOperation GET"); n != 1 {
		t.Errorf("operations %v, want one PKIOperation by GET", rs.seen())
	}
}

func TestEnrollDefaultClient(t *testing.T) {
	// Its own client and transport, whose idle connections it must close
	// before it returns: the server is still up, so nothing else would.
	_, o := setup(t)
	o.HTTPClient = nil
	before := goleak.IgnoreCurrent()
	res, err := Enroll(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, res, testUID)
	goleak.VerifyNone(t, before)
}

func TestEnrollReferenceStyleReply(t *testing.T) {
	// The reference signs every CertRep with SHA-1 whatever the request used.
	rs, o := setup(t)
	rs.sha1 = true
	res, err := Enroll(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, res, testUID)
}

func TestEnrollRefused(t *testing.T) {
	for _, sha1 := range []bool{false, true} {
		t.Run(fmt.Sprint("sha1=", sha1), func(t *testing.T) {
			rs, o := setup(t)
			rs.sha1 = sha1
			o.Secret = "wrong"
			_, err := Enroll(t.Context(), o)
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("err %v, want ErrRefused", err)
			}
			const want = "PKIOperation: the SCEP server refused the request (badRequest): wrong or already used secret, uid not registered or already enrolled, or a renewal without an update secret"
			if err.Error() != want {
				t.Errorf("err\n%q, want\n%q", err, want)
			}
		})
	}
}

func TestEnrollPendingThenSuccess(t *testing.T) {
	rs := newResponder(testUID + `\` + testSecret)
	rs.pending = 3
	synctest.Test(t, func(t *testing.T) {
		res, err := Enroll(t.Context(), inMemory(t, rs))
		if err != nil {
			t.Fatal(err)
		}
		checkResult(t, res, testUID)
		if n := rs.count("PKIOperation POST"); n != 4 {
			t.Errorf("%d PKIOperations, want 4", n)
		}
		rs.mu.Lock()
		defer rs.mu.Unlock()
		// Every poll carries the same CSR, so the same transaction.
		for _, c := range rs.csrs[1:] {
			if !bytes.Equal(c.Raw, rs.csrs[0].Raw) {
				t.Error("a poll sent another CSR")
			}
		}
	})
}

func TestEnrollPendingForever(t *testing.T) {
	rs := newResponder(testUID + `\` + testSecret)
	rs.pending = -1
	synctest.Test(t, func(t *testing.T) {
		o := inMemory(t, rs)
		o.PollInterval, o.PollTimeout = time.Second, 10*time.Second
		_, err := Enroll(t.Context(), o)
		t.Log(err)
		if !errors.Is(err, ErrPendingTimeout) {
			t.Fatalf("err %v, want ErrPendingTimeout", err)
		}
		if n := rs.count("PKIOperation POST"); n != 11 {
			t.Errorf("%d PKIOperations, want 11 (one a second for 10s)", n)
		}
	})
}

func TestEnrollPendingCancelled(t *testing.T) {
	rs := newResponder(testUID + `\` + testSecret)
	rs.pending = -1
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 12*time.Second)
		defer cancel()
		_, err := Enroll(ctx, inMemory(t, rs)) // default 5s interval, 5m bound
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v, want the context's deadline", err)
		}
	})
}

func TestEnrollDegenerateCACert(t *testing.T) {
	rs, o := setup(t)
	f := fixtures()
	rs.caCerts = []*x509.Certificate{f.ca.cert, f.ra.cert}
	res, err := Enroll(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, res, testUID)
	if len(res.CA) != 2 || !res.CA[1].Equal(f.ra.cert) {
		t.Errorf("CA has %d certificates, want the CA and the RA", len(res.CA))
	}
}

func colonHex(b []byte) string {
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = fmt.Sprintf("%02X", c)
	}
	return strings.Join(parts, ":")
}

func TestFingerprintPin(t *testing.T) {
	f := fixtures()
	caSum := sha256.Sum256(f.ca.cert.Raw)

	t.Run("match", func(t *testing.T) {
		rs, o := setup(t)
		// The stranger is not signed by the pinned CA: the request, which
		// carries the secret, must not be encrypted to it.
		rs.caCerts = []*x509.Certificate{f.stranger.cert, f.ca.cert, f.ra.cert}
		o.CAFingerprint = colonHex(caSum[:])
		res, err := Enroll(t.Context(), o)
		if err != nil {
			t.Fatal(err)
		}
		checkResult(t, res, testUID)
		if len(res.CA) != 2 || !res.CA[1].Equal(f.ra.cert) {
			t.Errorf("CA has %d certificates, want the pinned CA and its RA", len(res.CA))
		}
	})
	t.Run("mismatch", func(t *testing.T) {
		rs, o := setup(t)
		other := sha256.Sum256(f.stranger.cert.Raw)
		o.CAFingerprint = fmt.Sprintf("%x", other)
		_, err := Enroll(t.Context(), o)
		if !errors.Is(err, ErrFingerprintMismatch) || !strings.HasPrefix(err.Error(), "GetCACert: ") {
			t.Fatalf("err %v, want GetCACert: ErrFingerprintMismatch", err)
		}
		if n := rs.count("PKIOperation POST"); n != 0 {
			t.Errorf("sent %d PKIOperations to an unpinned CA", n)
		}
	})
	t.Run("malformed", func(t *testing.T) {
		rs, o := setup(t)
		o.CAFingerprint = "ab:cd"
		if _, err := Enroll(t.Context(), o); !errors.Is(err, ErrInvalidOptions) {
			t.Fatalf("err %v, want ErrInvalidOptions", err)
		}
		if ops := rs.seen(); len(ops) != 0 {
			t.Errorf("sent %v", ops)
		}
	})
}

func TestRenew(t *testing.T) {
	rs, o := setup(t)
	first, err := Enroll(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	rs.mu.Lock()
	rs.challenge = testUID + `\update`
	rs.wantSigner = first.Cert // the responder refuses any other signer
	rs.mu.Unlock()

	o.UID, o.Secret = "", "update" // the uid comes from the certificate
	for _, newKey := range []bool{false, true} {
		t.Run(fmt.Sprint("newKey=", newKey), func(t *testing.T) {
			res, err := Renew(t.Context(), o, first.Cert, first.Key, newKey)
			if err != nil {
				t.Fatal(err)
			}
			checkResult(t, res, testUID)
			if same := publicKeysEqual(res.Key.Public(), first.Key.Public()); same == newKey {
				t.Errorf("same key %v with newKey %v", same, newKey)
			}
			if res.Cert.Equal(first.Cert) {
				t.Error("no new certificate")
			}
			rs.mu.Lock()
			defer rs.mu.Unlock()
			if mt := rs.msgTypes[len(rs.msgTypes)-1]; mt != scep.RenewalReq {
				t.Errorf("message type %q, want RenewalReq", mt)
			}
		})
	}

	t.Run("signed by another certificate", func(t *testing.T) {
		rs.mu.Lock()
		rs.wantSigner = fixtures().ra.cert
		rs.mu.Unlock()
		_, err := Renew(t.Context(), o, first.Cert, first.Key, false)
		if !errors.Is(err, ErrRefused) {
			t.Fatalf("err %v, want ErrRefused", err)
		}
	})
	t.Run("server CA did not issue the current certificate", func(t *testing.T) {
		stranger := makeCA("stranger", nil) // RSA, like a real SCEP CA
		rs.mu.Lock()
		saved := rs.caCerts
		rs.caCerts = []*x509.Certificate{stranger.cert}
		before := len(rs.msgTypes)
		rs.mu.Unlock()
		defer func() { rs.mu.Lock(); rs.caCerts = saved; rs.mu.Unlock() }()
		_, err := Renew(t.Context(), o, first.Cert, first.Key, false)
		if !errors.Is(err, ErrFingerprintMismatch) {
			t.Fatalf("err %v, want ErrFingerprintMismatch", err)
		}
		rs.mu.Lock()
		defer rs.mu.Unlock()
		if len(rs.msgTypes) != before {
			t.Fatal("the renewal request (and its secret) was sent to a CA that did not issue the certificate")
		}
	})
	t.Run("uid differs from the certificate", func(t *testing.T) {
		o := o
		o.UID = "someone-else"
		if _, err := Renew(t.Context(), o, first.Cert, first.Key, false); !errors.Is(err, ErrInvalidOptions) {
			t.Fatalf("err %v, want ErrInvalidOptions", err)
		}
	})
	t.Run("key of another certificate", func(t *testing.T) {
		if _, err := Renew(t.Context(), o, first.Cert, fixtures().ra.key, false); !errors.Is(err, ErrInvalidOptions) {
			t.Fatalf("err %v, want ErrInvalidOptions", err)
		}
	})
}

func TestInvalidOptions(t *testing.T) {
	for name, tc := range map[string]struct {
		mutate func(*Options)
		want   string
	}{
		"backslash in secret": {func(o *Options) { o.Secret = `a\b` }, "secret contains a backslash"},
		"backslash in uid":    {func(o *Options) { o.UID = `a\b` }, "contains a backslash"},
		"empty secret":        {func(o *Options) { o.Secret = "" }, "secret is empty"},
		"empty uid":           {func(o *Options) { o.UID = "" }, "uid is empty"},
		"not http":            {func(o *Options) { o.URL = "ftp://ca/scep" }, "not an http(s) URL"},
		"small key":           {func(o *Options) { o.KeyBits = 1024 }, "key bits 1024"},
		"negative poll":       {func(o *Options) { o.PollTimeout = -1 }, "must not be negative"},
	} {
		t.Run(name, func(t *testing.T) {
			rs, o := setup(t)
			tc.mutate(&o)
			_, err := Enroll(t.Context(), o)
			t.Log(err)
			if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want ErrInvalidOptions with %q", err, tc.want)
			}
			if ops := rs.seen(); len(ops) != 0 {
				t.Errorf("sent %v before checking the options", ops)
			}
		})
	}
}

// answer returns an override that answers op with status, content type and
// body.
func answer(op string, status int, contentType string, body []byte) func(string, http.ResponseWriter, *http.Request) bool {
	return func(o string, w http.ResponseWriter, _ *http.Request) bool {
		if o != op {
			return false
		}
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		w.Write(body)
		return true
	}
}

// truncated returns an override that answers op with the start of what the
// responder would have sent.
func truncated(rs *responder, op string) func(string, http.ResponseWriter, *http.Request) bool {
	return func(o string, w http.ResponseWriter, r *http.Request) bool {
		if o != op {
			return false
		}
		rec := &bodyRecorder{header: http.Header{}}
		rs.answer(op, rec, r)
		w.Header().Set("Content-Type", rec.header.Get("Content-Type"))
		w.Write(rec.body.Bytes()[:rec.body.Len()/2])
		return true
	}
}

type bodyRecorder struct {
	header http.Header
	body   bytes.Buffer
}

func (b *bodyRecorder) Header() http.Header         { return b.header }
func (b *bodyRecorder) Write(p []byte) (int, error) { return b.body.Write(p) }
func (b *bodyRecorder) WriteHeader(int)             {}

func TestGarbageResponses(t *testing.T) {
	html := []byte("<!DOCTYPE html><html><body><h1>Welcome</h1></body></html>")
	f := fixtures()
	deg, err := scep.DegenerateCertificates([]*x509.Certificate{f.ca.cert, f.ra.cert})
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		override func(rs *responder) func(string, http.ResponseWriter, *http.Request) bool
		kind     error
		want     string // prefix of the error
	}{
		"GetCACaps 404": {
			func(*responder) func(string, http.ResponseWriter, *http.Request) bool {
				return answer("GetCACaps", 404, "text/plain", []byte("404 page not found\n"))
			}, ErrBadResponse, "GetCACaps: HTTP 404: 404 page not found"},
		"GetCACaps HTML": {
			func(*responder) func(string, http.ResponseWriter, *http.Request) bool {
				return answer("GetCACaps", 200, "text/html", html)
			}, ErrBadResponse, "GetCACaps: the server answered text/html"},
		"GetCACert HTML": {
			func(*responder) func(string, http.ResponseWriter, *http.Request) bool {
				return answer("GetCACert", 200, "text/html; charset=utf-8", html)
			}, ErrBadResponse, "GetCACert: the server answered text/html, not application/x-x509-ca-cert or application/x-x509-ca-ra-cert: <!DOCTYPE html>"},
		"GetCACert wrong content type": {
			func(*responder) func(string, http.ResponseWriter, *http.Request) bool {
				return answer("GetCACert", 200, "application/json", f.ca.cert.Raw)
			}, ErrBadResponse, "GetCACert: the server answered application/json"},
		"GetCACert garbage DER": {
			func(*responder) func(string, http.ResponseWriter, *http.Request) bool {
				return answer("GetCACert", 200, typeCACert, []byte("not a certificate"))
			}, ErrBadResponse, "GetCACert: unreadable application/x-x509-ca-cert"},
		"GetCACert truncated PKCS#7": {
			func(*responder) func(string, http.ResponseWriter, *http.Request) bool {
				return answer("GetCACert", 200, typeCARACert, deg[:len(deg)/2])
			}, ErrBadResponse, "GetCACert: unreadable application/x-x509-ca-ra-cert"},
		"GetCACert empty": {
			func(*responder) func(string, http.ResponseWriter, *http.Request) bool {
				return answer("GetCACert", 200, typeCACert, nil)
			}, ErrBadResponse, "GetCACert: empty answer"},
		"PKIOperation HTTP 500": {
			func(*responder) func(string, http.ResponseWriter, *http.Request) bool {
				return answer("PKIOperation", 500, "text/plain", []byte("scep: no recipient\n\tfor this CA"))
			}, ErrBadResponse, "PKIOperation: HTTP 500: scep: no recipient for this CA"},
		"PKIOperation HTML": {
			func(*responder) func(string, http.ResponseWriter, *http.Request) bool {
				return answer("PKIOperation", 200, "text/html", html)
			}, ErrBadResponse, "PKIOperation: the server answered text/html, not application/x-pki-message: <!DOCTYPE html>"},
		"PKIOperation truncated PKCS#7": {
			func(rs *responder) func(string, http.ResponseWriter, *http.Request) bool {
				return truncated(rs, "PKIOperation")
			}, ErrBadResponse, "PKIOperation: the answer is not a valid PKI message"},
		"PKIOperation empty": {
			func(*responder) func(string, http.ResponseWriter, *http.Request) bool {
				return answer("PKIOperation", 200, typePKIMsg, nil)
			}, ErrBadResponse, "PKIOperation: empty answer"},
		"PKIOperation too large": {
			func(*responder) func(string, http.ResponseWriter, *http.Request) bool {
				return answer("PKIOperation", 200, typePKIMsg, make([]byte, maxResponse+1))
			}, ErrBadResponse, "PKIOperation: HTTP 200 with a body larger than"},
		"PKIOperation connection dropped": {
			func(*responder) func(string, http.ResponseWriter, *http.Request) bool {
				return func(op string, _ http.ResponseWriter, _ *http.Request) bool {
					if op == "PKIOperation" {
						panic(http.ErrAbortHandler) // what the reference does for an unknown uid
					}
					return false
				}
			}, ErrNoResponse, "PKIOperation: no response from the SCEP server — is the uid registered?"},
	} {
		t.Run(name, func(t *testing.T) {
			rs, o := setup(t)
			rs.override = tc.override(rs)
			_, err := Enroll(t.Context(), o)
			t.Log(err)
			if !errors.Is(err, tc.kind) || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("err\n%v\nwant %v starting\n%s", err, tc.kind, tc.want)
			}
		})
	}
}

func TestTamperedReplies(t *testing.T) {
	for name, tc := range map[string]struct {
		tamper func(*repSpec)
		kind   error
		want   string
	}{
		"another transaction": {func(s *repSpec) { s.txID = "someone else's" }, ErrBadResponse, "not ours"},
		"replayed nonce":      {func(s *repSpec) { s.recipientNonce = make([]byte, 16) }, ErrBadResponse, "recipient nonce"},
		"unknown status":      {func(s *repSpec) { s.status = "9" }, ErrBadResponse, "pkiStatus"},
		"unknown failInfo": {func(s *repSpec) { s.status, s.envelope, s.failInfo = scep.FAILURE, nil, "7" }, ErrRefused,
			`the SCEP server refused the request (failInfo "7")`},
		"SUCCESS without an envelope": {func(s *repSpec) { s.envelope = nil }, ErrBadResponse, "decrypt the issued certificate"},
		"SUCCESS without a certificate": {func(s *repSpec) {
			// DecryptPKIEnvelope indexes the first certificate unchecked.
			deg, err := scep.DegenerateCertificates(nil)
			if err != nil {
				panic(err)
			}
			if s.envelope, err = pkcs7.Encrypt(deg, []*x509.Certificate{s.signer}); err != nil {
				panic(err)
			}
		}, ErrBadResponse, "parser panic"},
	} {
		t.Run(name, func(t *testing.T) {
			rs, o := setup(t)
			rs.tamper = tc.tamper
			_, err := Enroll(t.Context(), o)
			t.Log(err)
			if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %v with %q", err, tc.kind, tc.want)
			}
		})
	}
}

func TestIssuedCertificateChecked(t *testing.T) {
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		issue func(*x509.Certificate, *crypto.PublicKey)
		want  string
	}{
		"another key": {func(_ *x509.Certificate, pub *crypto.PublicKey) { *pub = other.Public() }, "is not for our key"},
		"another CN":  {func(tmpl *x509.Certificate, _ *crypto.PublicKey) { tmpl.Subject.CommonName = "conn-2" }, `CN is "conn-2"`},
	} {
		t.Run(name, func(t *testing.T) {
			rs, o := setup(t)
			rs.issue = tc.issue
			_, err := Enroll(t.Context(), o)
			if !errors.Is(err, ErrBadResponse) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want ErrBadResponse with %q", err, tc.want)
			}
		})
	}
}

func TestSnippet(t *testing.T) {
	for in, want := range map[string]string{
		"":                       "(empty body)",
		" \n\t ":                 "(4 bytes of white space)",
		"a\r\nb\x00c":            "a b c",
		"\xff\xfe\x00binary":     "(9 bytes of binary data)",
		strings.Repeat("é", 900): strings.Repeat("é", 200) + "…",
	} {
		if got := snippet([]byte(in)); got != want {
			t.Errorf("snippet(%.20q) = %.40q, want %.40q", in, got, want)
		}
	}
}
