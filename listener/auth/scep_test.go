package auth

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/socket-warp/socket-warp/shared/logging"
	"github.com/socket-warp/socket-warp/shared/pki"
	"github.com/socket-warp/socket-warp/shared/testutil"
)

// fakeSCEP answers /api/cert/verify as procube-open/scep does: it decodes the
// header with url.PathUnescape and the PEM with pem.Decode, answers 500 when
// that fails, and otherwise lets answer decide.
type fakeSCEP struct {
	URL      string
	requests atomic.Int64

	mu     sync.Mutex // guards the following fields
	answer func(w http.ResponseWriter, r *http.Request, cert *x509.Certificate)
	header string // the last X-Mtls-Clientcert received
}

func newFakeSCEP(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, cert *x509.Certificate)) *fakeSCEP {
	t.Helper()
	f := &fakeSCEP{answer: answer}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

func (f *fakeSCEP) setAnswer(answer func(w http.ResponseWriter, r *http.Request, cert *x509.Certificate)) {
	f.mu.Lock()
	f.answer = answer
	f.mu.Unlock()
}

func (f *fakeSCEP) lastHeader() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.header
}

func (f *fakeSCEP) serve(w http.ResponseWriter, r *http.Request) {
	f.requests.Add(1)
	fail := func(msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, `{"message":%q}`, msg)
	}
	if r.Method != http.MethodGet || r.URL.Path != SCEPVerifyPath {
		http.NotFound(w, r)
		return
	}
	enc := r.Header["X-Mtls-Clientcert"]
	if len(enc) != 1 {
		fail("No Certificate")
		return
	}
	f.mu.Lock()
	f.header = enc[0]
	answer := f.answer
	f.mu.Unlock()
	dec, err := url.PathUnescape(enc[0])
	if err != nil {
		fail("Decode header failed")
		return
	}
	block, _ := pem.Decode([]byte(dec))
	if block == nil {
		fail("Parse Certificate failed")
		return
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		fail("Parse Certificate failed")
		return
	}
	answer(w, r, cert)
}

// reply answers with a fixed code and body, as JSON.
func reply(code int, body string) func(http.ResponseWriter, *http.Request, *x509.Certificate) {
	return func(w http.ResponseWriter, _ *http.Request, _ *x509.Certificate) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprint(w, body)
	}
}

// issued answers 200 with the certificate's CN and status.
func issued(status string) func(http.ResponseWriter, *http.Request, *x509.Certificate) {
	return func(w http.ResponseWriter, _ *http.Request, cert *x509.Certificate) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"uid": cert.Subject.CommonName, "status": status, "attributes": map[string]any{},
		})
	}
}

type fakeClock struct {
	mu sync.Mutex // guards the following field
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
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newCA(t testing.TB, name string) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issue(t testing.TB, ca *pki.CA, cn string) *x509.Certificate {
	t.Helper()
	leaf, err := ca.Issue(pki.LeafOptions{CommonName: cn, Usage: pki.Client})
	if err != nil {
		t.Fatal(err)
	}
	return leaf.Cert
}

func stateOf(certs ...*x509.Certificate) tls.ConnectionState {
	return tls.ConnectionState{PeerCertificates: certs}
}

func newSCEP(t testing.TB, base string, opts SCEPOptions) *SCEP {
	t.Helper()
	s, err := NewSCEP(base, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// wantRefusal checks a refusal's exact text and whether it is definitive.
func wantRefusal(t testing.TB, err error, msg string, unavailable bool) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %q", msg)
	}
	if !errors.Is(err, ErrRefused) {
		t.Errorf("error %q does not wrap ErrRefused", err)
	}
	if got := errors.Is(err, ErrUnavailable); got != unavailable {
		t.Errorf("error %q: ErrUnavailable = %v, want %v", err, got, unavailable)
	}
	if !strings.HasPrefix(err.Error(), msg) {
		t.Errorf("error %q, want it to start with %q", err, msg)
	}
}

func TestSCEPAnswers(t *testing.T) {
	ca := newCA(t, "scep test CA")
	cert := issue(t, ca, "swc-1")
	huge := `{"uid":"swc-1","status":"ISSUED","attributes":{"pad":"` + strings.Repeat("x", 70<<10) + `"}}`
	for _, tc := range []struct {
		name        string
		answer      func(http.ResponseWriter, *http.Request, *x509.Certificate)
		want        string // the uid, or the start of the error
		ok          bool
		unavailable bool
	}{
		{name: "issued", answer: issued("ISSUED"), want: "swc-1", ok: true},
		{name: "pending", answer: issued("PENDING"), want: "swc-1", ok: true},
		{name: "updatable", answer: issued("UPDATABLE"), want: "swc-1", ok: true},
		{name: "other status", answer: issued("INACTIVE"),
			want: "scep verify: uid swc-1 has status INACTIVE (200)"},

		// The 401 bodies of the reference server, extra fields included.
		{name: "not verified", answer: reply(401, `{"message":"Failed to verify certificate","certificate":"-----BEGIN…","cacert":"-----BEGIN…"}`),
			want: "scep verify: Failed to verify certificate (401)"},
		{name: "expired", answer: reply(401, `{"message":"Certificate is expired","notBefore":"2025-01-01 00:00:00 +0000 UTC","notAfter":"2026-01-01 00:00:00 +0000 UTC","Date":"2026-06-01 00:00:00 +0000 UTC"}`),
			want: "scep verify: Certificate is expired (401)"},
		{name: "revoked", answer: reply(401, `{"message":"Certificate is revoked"}`),
			want: "scep verify: Certificate is revoked (401)"},
		{name: "unknown user", answer: reply(401, `{"message":"User Not Found","user":"swc-1"}`),
			want: "scep verify: User Not Found (401)"},
		{name: "uid is not the CN", answer: reply(200, `{"uid":"swc-2","status":"ISSUED","attributes":{}}`),
			want: `scep verify: server names uid swc-2 for certificate CN "swc-1" (200)`},
		{name: "empty uid", answer: reply(200, `{"uid":"","status":"ISSUED"}`),
			want: "scep verify: unusable uid: uid is empty (200)"},

		// No verdict: the server failed, or something else answered.
		{name: "server error", answer: reply(500, `{"message":"Failed to get RCs"}`),
			want: "scep verify: Failed to get RCs (500)", unavailable: true},
		{name: "401 from a proxy", answer: reply(401, "Unauthorized\n"),
			want: "scep verify: unexpected answer (401): Unauthorized", unavailable: true},
		{name: "bad gateway", answer: reply(502, "<html>\n<h1>502 Bad Gateway</h1>\n</html>"),
			want: "scep verify: unexpected answer (502): <html> <h1>502 Bad Gateway</h1> </html>", unavailable: true},
		{name: "empty 404", answer: reply(404, ""),
			want: "scep verify: unexpected answer (404): empty body", unavailable: true},
		{name: "html with 200", answer: reply(200, "<html><body>Welcome to nginx!</body></html>"),
			want: "scep verify: unreadable answer (200): <html><body>Welcome to nginx!</body></html>", unavailable: true},
		{name: "truncated json", answer: reply(200, `{"uid":"swc-1","sta`),
			want: `scep verify: unreadable answer (200): {"uid":"swc-1","sta`, unavailable: true},
		{name: "no uid", answer: reply(200, `{"status":"ISSUED","attributes":{}}`),
			want: "scep verify: answer without a uid (200)", unavailable: true},
		{name: "no status", answer: reply(200, `{"uid":"swc-1","attributes":{}}`),
			want: "scep verify: answer without a status (200)", unavailable: true},
		{name: "too large", answer: reply(200, huge),
			want: "scep verify: answer larger than 64 KiB (200)", unavailable: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeSCEP(t, tc.answer)
			s := newSCEP(t, srv.URL, SCEPOptions{})
			uid, err := s.Verify(context.Background(), stateOf(cert))
			if tc.ok {
				if err != nil || uid != tc.want {
					t.Fatalf("Verify = %q, %v; want %q", uid, err, tc.want)
				}
				return
			}
			if uid != "" {
				t.Errorf("uid %q with a refusal", uid)
			}
			wantRefusal(t, err, tc.want, tc.unavailable)
			if len(err.Error()) > 200 {
				t.Errorf("refusal of %d bytes is too long for a close reason: %q", len(err.Error()), err)
			}
		})
	}
}

func TestSCEPNoCertificate(t *testing.T) {
	srv := newFakeSCEP(t, issued("ISSUED"))
	s := newSCEP(t, srv.URL, SCEPOptions{})
	_, err := s.Verify(context.Background(), tls.ConnectionState{})
	wantRefusal(t, err, "scep verify: no client certificate", false)
	if n := srv.requests.Load(); n != 0 {
		t.Errorf("%d requests for no certificate", n)
	}
}

// The reference server decodes the header with url.PathUnescape, which keeps
// a '+': url.QueryEscape's encoding of "BEGIN CERTIFICATE" does not survive
// it. The encoding used must come back intact from either decoder.
func TestSCEPHeaderEncoding(t *testing.T) {
	cert := issue(t, newCA(t, "scep test CA"), "swc-1")
	srv := newFakeSCEP(t, issued("ISSUED"))
	s := newSCEP(t, srv.URL, SCEPOptions{})
	if _, err := s.Verify(context.Background(), stateOf(cert)); err != nil {
		t.Fatal(err)
	}
	want := string(pki.CertPEM(cert))
	h := srv.lastHeader()
	for name, unescape := range map[string]func(string) (string, error){
		"PathUnescape": url.PathUnescape, "QueryUnescape": url.QueryUnescape,
	} {
		if got, err := unescape(h); err != nil || got != want {
			t.Errorf("%s(header) = %q, %v; want the PEM", name, got, err)
		}
	}
	if dec, _ := url.PathUnescape(url.QueryEscape(want)); strings.Contains(dec, "BEGIN CERTIFICATE") {
		t.Error("url.QueryEscape survives url.PathUnescape after all: the comment on escapeAll is wrong")
	}
}

func TestSCEPEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"http://scep.internal:3000":                     "http://scep.internal:3000/api/cert/verify",
		"http://scep.internal:3000/":                    "http://scep.internal:3000/api/cert/verify",
		" https://gw.example/scep-server/ ":             "https://gw.example/scep-server/api/cert/verify",
		"http://127.0.0.1:3000/api/cert/verify":         "http://127.0.0.1:3000/api/cert/verify",
		"http://127.0.0.1:3000/api/cert/verify/":        "http://127.0.0.1:3000/api/cert/verify",
		"https://gw.example/x/api/cert/verify?tenant=a": "https://gw.example/x/api/cert/verify?tenant=a",
	} {
		if got, err := SCEPEndpoint(in); err != nil || got != want {
			t.Errorf("SCEPEndpoint(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "scep.internal:3000", "ftp://scep.internal", "http://", "http://h/#frag", "http://h:bad/"} {
		if _, err := NewSCEP(in, SCEPOptions{}); err == nil {
			t.Errorf("NewSCEP(%q) accepted", in)
		}
	}
	s := newSCEP(t, "https://admin:secret@scep.internal", SCEPOptions{})
	if strings.Contains(s.Endpoint(), "secret") {
		t.Errorf("Endpoint() = %q shows the password", s.Endpoint())
	}
}

func TestSCEPUnreachable(t *testing.T) {
	cert := issue(t, newCA(t, "scep test CA"), "swc-1")
	s := newSCEP(t, fmt.Sprintf("http://127.0.0.1:%d", closedPort(t)), SCEPOptions{})
	_, err := s.Verify(context.Background(), stateOf(cert))
	wantRefusal(t, err, "scep verify: server unreachable: ", true)
	if strings.Contains(err.Error(), "/api/cert/verify") {
		t.Errorf("refusal %q names the request", err)
	}
}

func TestSCEPTimeout(t *testing.T) {
	cert := issue(t, newCA(t, "scep test CA"), "swc-1")
	srv := newFakeSCEP(t, func(_ http.ResponseWriter, r *http.Request, _ *x509.Certificate) {
		<-r.Context().Done() // never answers; the client gives up
	})
	s := newSCEP(t, srv.URL, SCEPOptions{Timeout: 50 * time.Millisecond})
	_, err := s.Verify(context.Background(), stateOf(cert))
	wantRefusal(t, err, "scep verify: server unreachable: no answer within 50ms", true)
}

// A server that sends its headers and then stalls is cut off too.
func TestSCEPStalledBody(t *testing.T) {
	cert := issue(t, newCA(t, "scep test CA"), "swc-1")
	srv := newFakeSCEP(t, func(w http.ResponseWriter, r *http.Request, _ *x509.Certificate) {
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, `{"uid":"swc-1",`)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	s := newSCEP(t, srv.URL, SCEPOptions{Timeout: 50 * time.Millisecond})
	_, err := s.Verify(context.Background(), stateOf(cert))
	wantRefusal(t, err, "scep verify: server unreachable: no complete answer within 50ms (200)", true)
}

func TestSCEPCache(t *testing.T) {
	ca := newCA(t, "scep test CA")
	cert, other := issue(t, ca, "swc-1"), issue(t, ca, "swc-2")
	srv := newFakeSCEP(t, issued("ISSUED"))
	clock := newFakeClock()
	s := newSCEP(t, srv.URL, SCEPOptions{CacheTTL: time.Minute, Now: clock.Now})
	verify := func(c *x509.Certificate, wantRequests int64) {
		t.Helper()
		uid, err := s.Verify(context.Background(), stateOf(c))
		if err != nil || uid != c.Subject.CommonName {
			t.Fatalf("Verify = %q, %v", uid, err)
		}
		if n := srv.requests.Load(); n != wantRequests {
			t.Fatalf("%d requests, want %d", n, wantRequests)
		}
	}
	verify(cert, 1)
	verify(cert, 1) // cached
	clock.Advance(59 * time.Second)
	verify(cert, 1)  // still cached
	verify(other, 2) // another certificate, another entry
	clock.Advance(time.Second)
	verify(cert, 3) // the TTL has passed
	verify(cert, 3)

	// Recheck always asks.
	if uid, err := s.Recheck(context.Background(), stateOf(cert)); err != nil || uid != "swc-1" {
		t.Fatalf("Recheck = %q, %v", uid, err)
	}
	if n := srv.requests.Load(); n != 4 {
		t.Fatalf("%d requests after Recheck, want 4", n)
	}
}

func TestSCEPCacheDisabled(t *testing.T) {
	cert := issue(t, newCA(t, "scep test CA"), "swc-1")
	srv := newFakeSCEP(t, issued("ISSUED"))
	s := newSCEP(t, srv.URL, SCEPOptions{CacheTTL: -1})
	for i := range 3 {
		if _, err := s.Verify(context.Background(), stateOf(cert)); err != nil {
			t.Fatal(err)
		}
		if n := srv.requests.Load(); n != int64(i+1) {
			t.Fatalf("%d requests, want %d", n, i+1)
		}
	}
}

// The cache never outlives the certificate.
func TestSCEPCacheEndsWithCertificate(t *testing.T) {
	ca := newCA(t, "scep test CA")
	leaf, err := ca.Issue(pki.LeafOptions{CommonName: "swc-1", Usage: pki.Client, NotAfter: time.Now().Add(30 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	srv := newFakeSCEP(t, issued("ISSUED"))
	clock := newFakeClock()
	s := newSCEP(t, srv.URL, SCEPOptions{CacheTTL: time.Hour, Now: clock.Now})
	for range 2 {
		if _, err := s.Verify(context.Background(), stateOf(leaf.Cert)); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(time.Minute)
	if _, err := s.Verify(context.Background(), stateOf(leaf.Cert)); err != nil {
		t.Fatal(err)
	}
	if n := srv.requests.Load(); n != 2 {
		t.Errorf("%d requests, want 2 (the entry ends at the certificate's NotAfter)", n)
	}
}

func TestSCEPRefusalsAreNotCached(t *testing.T) {
	cert := issue(t, newCA(t, "scep test CA"), "swc-1")
	srv := newFakeSCEP(t, reply(401, `{"message":"User Not Found","user":"swc-1"}`))
	s := newSCEP(t, srv.URL, SCEPOptions{})
	for i := range 2 {
		_, err := s.Verify(context.Background(), stateOf(cert))
		wantRefusal(t, err, "scep verify: User Not Found (401)", false)
		if n := srv.requests.Load(); n != int64(i+1) {
			t.Fatalf("%d requests, want %d", n, i+1)
		}
	}
	// Once the user exists, the next handshake gets in.
	srv.setAnswer(issued("ISSUED"))
	if uid, err := s.Verify(context.Background(), stateOf(cert)); err != nil || uid != "swc-1" {
		t.Fatalf("Verify = %q, %v", uid, err)
	}
}

// A definitive refusal at Recheck drops the cached answer; a server that is
// merely unavailable does not.
func TestSCEPRecheck(t *testing.T) {
	cert := issue(t, newCA(t, "scep test CA"), "swc-1")
	srv := newFakeSCEP(t, issued("ISSUED"))
	s := newSCEP(t, srv.URL, SCEPOptions{CacheTTL: time.Hour})
	ctx := context.Background()
	if _, err := s.Verify(ctx, stateOf(cert)); err != nil {
		t.Fatal(err)
	}

	srv.setAnswer(reply(500, `{"message":"Failed to get RCs"}`))
	_, err := s.Recheck(ctx, stateOf(cert))
	wantRefusal(t, err, "scep verify: Failed to get RCs (500)", true)
	if _, err := s.Verify(ctx, stateOf(cert)); err != nil {
		t.Fatalf("Verify after an unavailable Recheck: %v (the cached answer should stand)", err)
	}

	srv.setAnswer(reply(401, `{"message":"Certificate is revoked"}`))
	if _, err := s.Verify(ctx, stateOf(cert)); err != nil {
		t.Fatalf("Verify from the cache: %v", err)
	}
	before := srv.requests.Load()
	_, err = s.Recheck(ctx, stateOf(cert))
	wantRefusal(t, err, "scep verify: Certificate is revoked (401)", false)
	_, err = s.Verify(ctx, stateOf(cert))
	wantRefusal(t, err, "scep verify: Certificate is revoked (401)", false)
	if n := srv.requests.Load() - before; n != 2 {
		t.Errorf("%d requests for Recheck and Verify, want 2 (the cached answer dropped)", n)
	}
	if _, err := Recheck(ctx, s, stateOf(cert)); !errors.Is(err, ErrRefused) {
		t.Errorf("auth.Recheck = %v, want the SCEP refusal", err)
	}
}

// TestSCEPOutageAcceptsCachedOnly pins what happens while the server is
// down (README "Verification on the listener"): a certificate it accepted
// less than CacheTTL ago is still accepted from the cache, without a
// request, also after an unanswered Recheck; any other certificate is
// refused; and once the TTL has passed since the last answer, so is the
// cached one.
func TestSCEPOutageAcceptsCachedOnly(t *testing.T) {
	ca := newCA(t, "scep test CA")
	known, unknown := issue(t, ca, "swc-1"), issue(t, ca, "swc-2")
	srv := newFakeSCEP(t, issued("ISSUED"))
	clock := newFakeClock()
	s := newSCEP(t, srv.URL, SCEPOptions{CacheTTL: time.Minute, Now: clock.Now})
	ctx := context.Background()
	if _, err := s.Verify(ctx, stateOf(known)); err != nil {
		t.Fatal(err)
	}

	srv.setAnswer(reply(503, "down for maintenance"))
	clock.Advance(30 * time.Second)
	before := srv.requests.Load()
	if uid, err := s.Verify(ctx, stateOf(known)); err != nil || uid != "swc-1" {
		t.Fatalf("the accepted certificate during the outage: %q, %v; want it accepted from the cache", uid, err)
	}
	if n := srv.requests.Load() - before; n != 0 {
		t.Errorf("%d requests for a cached certificate, want none", n)
	}
	_, err := s.Verify(ctx, stateOf(unknown))
	wantRefusal(t, err, "scep verify: unexpected answer (503): down for maintenance", true)
	_, err = s.Recheck(ctx, stateOf(known))
	wantRefusal(t, err, "scep verify: unexpected answer (503)", true)
	if _, err := s.Verify(ctx, stateOf(known)); err != nil {
		t.Fatalf("after an unanswered Recheck: %v; want the cached answer to stand", err)
	}

	clock.Advance(30 * time.Second) // a TTL since the server last answered
	_, err = s.Verify(ctx, stateOf(known))
	wantRefusal(t, err, "scep verify: unexpected answer (503)", true)
}

// waiters is how many callers wait for the request about cert.
func (s *SCEP) waiters(cert *x509.Certificate) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.flights[sha256.Sum256(cert.Raw)]; f != nil {
		return f.waiters
	}
	return 0
}

// unavailable reports whether s is in a streak of unavailability, the one
// UnavailableMessage starts.
func (s *SCEP) unavailable() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failing
}

func (s *SCEP) inFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.flights)
}

func TestSCEPConcurrentVerifiesShareOneRequest(t *testing.T) {
	cert := issue(t, newCA(t, "scep test CA"), "swc-1")
	release := make(chan struct{})
	srv := newFakeSCEP(t, func(w http.ResponseWriter, r *http.Request, c *x509.Certificate) {
		<-release
		issued("ISSUED")(w, r, c)
	})
	s := newSCEP(t, srv.URL, SCEPOptions{Timeout: time.Minute})
	const n = 10
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			uid, err := s.Verify(context.Background(), stateOf(cert))
			if err == nil && uid != "swc-1" {
				err = fmt.Errorf("uid %q", uid)
			}
			errs <- err
		})
	}
	testutil.Eventually(t, "every verify to wait for the request", func() bool { return s.waiters(cert) == n })
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := srv.requests.Load(); got != 1 {
		t.Errorf("%d requests, want 1", got)
	}
}

// A caller whose context ends stops waiting at once; the request goes on
// for the others, and its answer is cached.
func TestSCEPCallerGivesUp(t *testing.T) {
	cert := issue(t, newCA(t, "scep test CA"), "swc-1")
	release := make(chan struct{})
	srv := newFakeSCEP(t, func(w http.ResponseWriter, r *http.Request, c *x509.Certificate) {
		<-release
		issued("ISSUED")(w, r, c)
	})
	s := newSCEP(t, srv.URL, SCEPOptions{Timeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.Verify(ctx, stateOf(cert))
		done <- err
	}()
	testutil.Eventually(t, "the request", func() bool { return srv.requests.Load() == 1 })
	cancel()
	err := <-done
	wantRefusal(t, err, "scep verify: context canceled", true)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %q does not wrap context.Canceled", err)
	}
	close(release)
	testutil.Eventually(t, "the request to finish", func() bool { return s.inFlight() == 0 })
	if uid, err := s.Verify(context.Background(), stateOf(cert)); err != nil || uid != "swc-1" {
		t.Fatalf("Verify = %q, %v", uid, err)
	}
	if n := srv.requests.Load(); n != 1 {
		t.Errorf("%d requests, want 1 (the answer cached)", n)
	}
}

func TestSCEPContextAlreadyDone(t *testing.T) {
	cert := issue(t, newCA(t, "scep test CA"), "swc-1")
	srv := newFakeSCEP(t, issued("ISSUED"))
	s := newSCEP(t, srv.URL, SCEPOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Verify(ctx, stateOf(cert))
	wantRefusal(t, err, "scep verify: context canceled", true)
	if n := srv.requests.Load(); n != 0 {
		t.Errorf("%d requests for a caller already gone", n)
	}
}

func TestSCEPLogsUnavailabilityOncePerStreak(t *testing.T) {
	cert := issue(t, newCA(t, "scep test CA"), "swc-1")
	srv := newFakeSCEP(t, reply(503, "maintenance"))
	log, logs := testutil.Logger(t, "scep")
	s := newSCEP(t, srv.URL, SCEPOptions{Logger: log, CacheTTL: -1})
	for range 3 {
		if _, err := s.Verify(context.Background(), stateOf(cert)); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
	}
	const down = UnavailableMessage
	if n := logs.FilterMessage(down).Len(); n != 1 {
		t.Errorf("%d %q entries, want 1", n, down)
	}
	if !testutil.Logged(logs, down, logging.KeyReason, "unexpected answer (503): maintenance") {
		t.Errorf("the entry does not name the problem: %v", logs.All())
	}
	srv.setAnswer(issued("ISSUED"))
	if _, err := s.Verify(context.Background(), stateOf(cert)); err != nil {
		t.Fatal(err)
	}
	if n := logs.FilterMessage("scep server answers again").Len(); n != 1 {
		t.Errorf("%d recovery entries, want 1", n)
	}
}

// Close ends a request in flight at once, tells its waiter "unavailable",
// takes that for nothing the server said (no streak of unavailability
// begins), and leaves no goroutine behind; afterwards nothing is asked.
func TestSCEPCloseEndsFlights(t *testing.T) {
	cert := issue(t, newCA(t, "scep test CA"), "swc-1")
	srv := newFakeSCEP(t, func(w http.ResponseWriter, r *http.Request, c *x509.Certificate) {
		<-r.Context().Done() // answers only once the client gave up
	})
	log, _ := testutil.Logger(t, "scep")
	s := newSCEP(t, srv.URL, SCEPOptions{Timeout: time.Minute, Logger: log})
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	done := make(chan error, 1)
	go func() {
		_, err := s.Verify(context.Background(), stateOf(cert))
		done <- err
	}()
	testutil.Eventually(t, "the request", func() bool { return srv.requests.Load() == 1 && s.waiters(cert) == 1 })
	s.Close()
	if n := s.inFlight(); n != 0 {
		t.Errorf("%d requests in flight after Close", n)
	}
	select {
	case err := <-done:
		wantRefusal(t, err, "scep verify: verifier closed", true)
	case <-time.After(30 * time.Second):
		t.Fatal("Verify still waits after Close")
	}
	_, err := s.Verify(context.Background(), stateOf(cert))
	wantRefusal(t, err, "scep verify: verifier closed", true)
	if n := srv.requests.Load(); n != 1 {
		t.Errorf("%d requests, want 1 (none after Close)", n)
	}
	if s.unavailable() {
		t.Errorf("Close took the server for unavailable")
	}
	s.Close() // idempotent
}
