package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/socket-warp/socket-warp/shared/logging"
	"github.com/socket-warp/socket-warp/shared/pki"
	"github.com/socket-warp/socket-warp/shared/testutil"
)

// crlOf is a CRL signed by ca: number, thisUpdate, and the certificates it
// revokes; it is valid for a day.
func crlOf(t testing.TB, ca *pki.CA, number int64, thisUpdate time.Time, revoked ...*x509.Certificate) []byte {
	t.Helper()
	return crlWith(t, ca, &x509.RevocationList{
		Number: big.NewInt(number), ThisUpdate: thisUpdate, NextUpdate: thisUpdate.Add(24 * time.Hour),
	}, revoked...)
}

func crlWith(t testing.TB, ca *pki.CA, tmpl *x509.RevocationList, revoked ...*x509.Certificate) []byte {
	t.Helper()
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: tmpl.ThisUpdate})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// fixedCAs is a CA set that never changes.
func fixedCAs(certs ...*x509.Certificate) func() []*x509.Certificate {
	return func() []*x509.Certificate { return certs }
}

func pemCRL(der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}) }

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := pki.WriteFileAtomic(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func newCRL(t testing.TB, opts CRLOptions) *CRL {
	t.Helper()
	c, err := NewCRL(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// runCRL runs c.Run until the test ends, and waits for it to return.
func runCRL(t testing.TB, c *CRL) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// crlServer serves whatever was last set, as the SCEP server's GetCRL does
// (DER, application/pkix-crl), or fails with the code set.
type crlServer struct {
	URL      string
	requests atomic.Int64

	mu   sync.Mutex // guards the following fields
	body []byte
	code int
}

func newCRLServer(t testing.TB, body []byte) *crlServer {
	t.Helper()
	s := &crlServer{body: body, code: http.StatusOK}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.mu.Lock()
		body, code := s.body, s.code
		s.mu.Unlock()
		if r.URL.Query().Get("operation") != "GetCRL" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		w.WriteHeader(code)
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL + "/scep?operation=GetCRL"
	return s
}

func (s *crlServer) set(code int, body []byte) {
	s.mu.Lock()
	s.code, s.body = code, body
	s.mu.Unlock()
}

func TestCRLFromFile(t *testing.T) {
	ca, other := newCA(t, "crl test CA"), newCA(t, "another CA")
	revoked, good := issue(t, ca, "swc-1"), issue(t, ca, "swc-2")
	foreign := issue(t, other, "swc-3")
	now := time.Now()
	der := crlOf(t, ca, 1, now, revoked, foreign) // foreign is not ca's to revoke
	dir := t.TempDir()
	for name, data := range map[string][]byte{"crl.der": der, "crl.pem": pemCRL(der)} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name)
			writeFile(t, path, data)
			c := newCRL(t, CRLOptions{Path: path, CAs: fixedCAs(other.Cert, ca.Cert)})
			if !c.Revoked(revoked) {
				t.Error("a revoked certificate passes")
			}
			if c.Revoked(good) {
				t.Error("a good certificate is revoked")
			}
			if c.Revoked(foreign) {
				t.Error("another CA's certificate is revoked by a serial on this CA's list")
			}
			if c.Revoked(nil) {
				t.Error("nil is revoked")
			}
			if c.Source() != "file "+path {
				t.Errorf("Source() = %q", c.Source())
			}
		})
	}
}

func TestCRLRejectedAtStart(t *testing.T) {
	ca := newCA(t, "crl test CA")
	impostor := newCA(t, "crl test CA") // the same name, another key
	stranger := newCA(t, "stranger CA")
	leaf := issue(t, ca, "swc-1")
	now := time.Now()
	delta := crlWith(t, ca, &x509.RevocationList{
		Number: big.NewInt(2), ThisUpdate: now, NextUpdate: now.Add(time.Hour),
		ExtraExtensions: []pkix.Extension{{Id: oidDeltaCRLIndicator, Critical: true, Value: mustASN1(t, 1)}},
	}, leaf)
	dir := t.TempDir()
	file := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, data)
		return p
	}
	cas := fixedCAs(ca.Cert)
	for _, tc := range []struct {
		name string
		opts CRLOptions
		want []string
	}{
		{"missing file", CRLOptions{Path: filepath.Join(dir, "nope.crl"), CAs: cas},
			[]string{"nope.crl", "no such file"}},
		{"garbage", CRLOptions{Path: file("garbage.crl", []byte("not a CRL")), CAs: cas},
			[]string{"garbage.crl"}},
		{"empty", CRLOptions{Path: file("empty.crl", nil), CAs: cas},
			[]string{"empty.crl", "empty"}},
		{"pem without a CRL", CRLOptions{Path: file("cert.pem", ca.CertPEM()), CAs: cas},
			[]string{"cert.pem", `no "X509 CRL" PEM block`}},
		{"signed by a stranger", CRLOptions{Path: file("stranger.crl", crlOf(t, stranger, 1, now, leaf)), CAs: cas},
			[]string{"stranger.crl", "not signed by a trusted CA", "stranger CA"}},
		{"signed by an impostor", CRLOptions{Path: file("impostor.crl", crlOf(t, impostor, 1, now, leaf)), CAs: cas},
			[]string{"impostor.crl", "not signed by a trusted CA"}},
		{"delta", CRLOptions{Path: file("delta.crl", delta), CAs: cas},
			[]string{"delta.crl", "delta CRL"}},
		{"no CA", CRLOptions{Path: file("ok.crl", crlOf(t, ca, 1, now)), CAs: nil},
			[]string{"ok.crl", "no CA certificate"}},
		{"empty CA set", CRLOptions{Path: file("ok.crl", crlOf(t, ca, 1, now)), CAs: fixedCAs()},
			[]string{"ok.crl", "no CA certificate"}},
		{"both", CRLOptions{Path: "a", URL: "http://b", CAs: cas}, []string{"both"}},
		{"neither", CRLOptions{CAs: cas}, []string{"neither"}},
		{"bad URL", CRLOptions{URL: "ftp://scep.internal/crl", CAs: cas}, []string{"ftp://scep.internal/crl"}},
		{"unreachable URL", CRLOptions{URL: fmt.Sprintf("http://127.0.0.1:%d/scep?operation=GetCRL", closedPort(t)), CAs: cas},
			[]string{"/scep?operation=GetCRL", "connection refused"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewCRL(context.Background(), tc.opts)
			if c != nil {
				t.Error("a CRL with the error")
			}
			testutil.WantErr(t, err, tc.want...)
		})
	}

	srv := newCRLServer(t, []byte("<html>oops</html>"))
	srv.set(http.StatusInternalServerError, []byte("<html>oops</html>"))
	_, err := NewCRL(context.Background(), CRLOptions{URL: srv.URL, CAs: cas})
	testutil.WantErr(t, err, srv.URL, "HTTP 500", "oops")
}

func mustASN1(t testing.TB, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Run looks at the file every Refresh (the default here, on synctest's
// clock): a change is taken at the next look, not before; a file that goes
// away, or is broken, leaves the list as it was; once it is back, Run takes
// it (it retries after a failure).
func TestCRLRunPicksUpFileChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ca := newCA(t, "crl test CA")
		first, second := issue(t, ca, "swc-1"), issue(t, ca, "swc-2")
		path := filepath.Join(t.TempDir(), "ca.crl")
		now := time.Now()
		writeFile(t, path, crlOf(t, ca, 1, now, first))
		var changes atomic.Int64
		c := newCRL(t, CRLOptions{Path: path, CAs: fixedCAs(ca.Cert), OnChange: func() { changes.Add(1) }})
		runCRL(t, c)
		failing := func() bool {
			c.reloadMu.Lock()
			defer c.reloadMu.Unlock()
			return c.failing
		}
		// next lets the clock reach Run's next look, and Run finish it.
		next := func() {
			time.Sleep(DefaultCRLFileRefresh)
			synctest.Wait()
		}

		writeFile(t, path, pemCRL(crlOf(t, ca, 2, now.Add(time.Second), first, second)))
		time.Sleep(DefaultCRLFileRefresh - time.Millisecond)
		synctest.Wait()
		if c.Revoked(second) || changes.Load() != 0 {
			t.Fatal("the new CRL taken before the refresh")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if !c.Revoked(second) || changes.Load() != 1 {
			t.Fatalf("at the refresh: second revoked %v, %d changes; want the new CRL", c.Revoked(second), changes.Load())
		}

		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		next()
		if !failing() {
			t.Fatal("no failed refresh with the file gone")
		}
		if !c.Revoked(first) || !c.Revoked(second) || changes.Load() != 1 {
			t.Fatal("the list changed with the file gone")
		}
		writeFile(t, path, []byte("broken"))
		next()
		if !failing() || !c.Revoked(first) || changes.Load() != 1 {
			t.Fatal("a broken file changed the list, or counted as working")
		}
		writeFile(t, path, crlOf(t, ca, 3, now.Add(2*time.Second), second))
		next()
		if failing() || c.Revoked(first) || changes.Load() != 2 {
			t.Fatalf("after the file came back: failing %v, first revoked %v, %d changes; want the third CRL",
				failing(), c.Revoked(first), changes.Load())
		}
	})
}

// The same content written again is no change.
func TestCRLReloadUnchanged(t *testing.T) {
	ca := newCA(t, "crl test CA")
	path := filepath.Join(t.TempDir(), "ca.crl")
	der := crlOf(t, ca, 1, time.Now(), issue(t, ca, "swc-1"))
	writeFile(t, path, der)
	var changes atomic.Int64
	c := newCRL(t, CRLOptions{Path: path, CAs: fixedCAs(ca.Cert), OnChange: func() { changes.Add(1) }})
	writeFile(t, path, der)
	if err := c.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := changes.Load(); n != 0 {
		t.Errorf("OnChange called %d times for the same CRL", n)
	}
}

func TestCRLRunRefreshesURL(t *testing.T) {
	ca := newCA(t, "crl test CA")
	first, second := issue(t, ca, "swc-1"), issue(t, ca, "swc-2")
	now := time.Now()
	srv := newCRLServer(t, crlOf(t, ca, 1, now, first))
	var changes atomic.Int64
	c := newCRL(t, CRLOptions{
		URL: srv.URL, CAs: fixedCAs(ca.Cert),
		Refresh: 10 * time.Millisecond, OnChange: func() { changes.Add(1) },
	})
	if !c.Revoked(first) || c.Revoked(second) {
		t.Fatal("wrong initial list")
	}
	runCRL(t, c)
	srv.set(http.StatusOK, pemCRL(crlOf(t, ca, 2, now.Add(time.Second), first, second)))
	testutil.Eventually(t, "the new CRL", func() bool { return c.Revoked(second) && changes.Load() == 1 })
	base := srv.requests.Load()
	testutil.Eventually(t, "more fetches", func() bool { return srv.requests.Load() > base+2 })
	if n := changes.Load(); n != 1 {
		t.Errorf("OnChange called %d times, want 1 (the CRL did not change again)", n)
	}
}

func TestCRLFailedRefreshKeepsList(t *testing.T) {
	ca, stranger := newCA(t, "crl test CA"), newCA(t, "stranger CA")
	revoked, other := issue(t, ca, "swc-1"), issue(t, ca, "swc-2")
	now := time.Now()
	srv := newCRLServer(t, crlOf(t, ca, 5, now, revoked))
	log, logs := testutil.Logger(t, "crl")
	var changes atomic.Int64
	c := newCRL(t, CRLOptions{
		URL: srv.URL, CAs: fixedCAs(ca.Cert), Logger: log, OnChange: func() { changes.Add(1) },
	})
	ctx := context.Background()
	for _, tc := range []struct {
		code int
		body []byte
		want string
	}{
		{http.StatusInternalServerError, []byte("down"), "HTTP 500: down"},
		{http.StatusOK, []byte("garbage"), "malformed crl"},
		{http.StatusOK, crlOf(t, stranger, 9, now.Add(time.Hour), other), "not signed by a trusted CA"},
		{http.StatusOK, crlOf(t, ca, 4, now.Add(time.Hour), other), "older than the CRL in use (number 4, in use 5)"},
		{http.StatusOK, crlOf(t, ca, 6, now.Add(-time.Hour), other), "older than the CRL in use (this update"},
	} {
		srv.set(tc.code, tc.body)
		testutil.WantErr(t, c.Reload(ctx), srv.URL, tc.want)
		if !c.Revoked(revoked) || c.Revoked(other) {
			t.Fatalf("after %q: the list changed", tc.want)
		}
	}
	const failed = "crl refresh failed: keeping the list in use"
	if n := logs.FilterMessage(failed).Len(); n != 1 {
		t.Errorf("%d %q entries, want 1 per streak", n, failed)
	}
	if !testutil.Logged(logs, failed, logging.KeyReason, "HTTP 500") {
		t.Error("the entry does not name the first failure")
	}
	if n := changes.Load(); n != 0 {
		t.Errorf("OnChange called %d times", n)
	}

	srv.set(http.StatusOK, crlOf(t, ca, 6, now.Add(time.Minute), other))
	if err := c.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Revoked(revoked) || !c.Revoked(other) || changes.Load() != 1 {
		t.Error("the good CRL was not taken")
	}
	if n := logs.FilterMessage("crl refresh works again").Len(); n != 1 {
		t.Errorf("%d recovery entries, want 1", n)
	}
}

func TestCRLNextDelay(t *testing.T) {
	ca := newCA(t, "crl test CA")
	now := time.Now().Truncate(time.Second) // a CRL's times are in whole seconds
	clock := &fakeClock{t: now}
	srv := newCRLServer(t, nil)
	for _, tc := range []struct {
		name       string
		nextUpdate time.Time
		later      time.Duration // the clock moves on after the load
		want       time.Duration
	}{
		{"next update first", now.Add(10 * time.Second), 0, 10 * time.Second},
		{"refresh first", now.Add(2 * time.Minute), 0, time.Minute},
		{"next update passed", now.Add(-time.Second), 0, time.Minute},
		{"next update imminent", now.Add(time.Second), 900 * time.Millisecond, minCRLURLDelay},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock.mu.Lock()
			clock.t = now
			clock.mu.Unlock()
			srv.set(http.StatusOK, crlWith(t, ca, &x509.RevocationList{
				Number: big.NewInt(1), ThisUpdate: now.Add(-time.Hour), NextUpdate: tc.nextUpdate,
			}))
			c := newCRL(t, CRLOptions{URL: srv.URL, CAs: fixedCAs(ca.Cert), Refresh: time.Minute, Now: clock.Now})
			clock.Advance(tc.later)
			if got := c.nextDelay(); got != tc.want {
				t.Errorf("nextDelay() = %s, want %s", got, tc.want)
			}
		})
	}
	path := filepath.Join(t.TempDir(), "ca.crl")
	writeFile(t, path, crlOf(t, ca, 1, now.Add(-time.Hour)))
	c := newCRL(t, CRLOptions{Path: path, CAs: fixedCAs(ca.Cert), Now: clock.Now})
	if got := c.nextDelay(); got != DefaultCRLFileRefresh {
		t.Errorf("file: nextDelay() = %s, want %s", got, DefaultCRLFileRefresh)
	}
}

func TestCRLStaleIsUsedAndLogged(t *testing.T) {
	ca := newCA(t, "crl test CA")
	leaf := issue(t, ca, "swc-1")
	path := filepath.Join(t.TempDir(), "ca.crl")
	writeFile(t, path, crlOf(t, ca, 1, time.Now().Add(-48*time.Hour), leaf)) // next update a day ago
	log, logs := testutil.Logger(t, "crl")
	c := newCRL(t, CRLOptions{Path: path, CAs: fixedCAs(ca.Cert), Logger: log})
	if !c.Revoked(leaf) {
		t.Error("a stale CRL is not used")
	}
	if err := c.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := logs.FilterMessage("crl is past its next update: still in use, is the CA publishing?").Len(); n != 1 {
		t.Errorf("%d staleness entries, want 1 per CRL", n)
	}
}

// countingVerifier names every peer "counted", counting its calls.
type countingVerifier struct{ verifies, rechecks atomic.Int64 }

func (v *countingVerifier) Verify(context.Context, tls.ConnectionState) (string, error) {
	v.verifies.Add(1)
	return "counted", nil
}

func (v *countingVerifier) Recheck(context.Context, tls.ConnectionState) (string, error) {
	v.rechecks.Add(1)
	return "counted", nil
}

func TestWithCRL(t *testing.T) {
	ca := newCA(t, "crl test CA")
	revoked, good := issue(t, ca, "swc-1"), issue(t, ca, "swc-2")
	path := filepath.Join(t.TempDir(), "ca.crl")
	writeFile(t, path, crlOf(t, ca, 1, time.Now(), revoked))
	crl := newCRL(t, CRLOptions{Path: path, CAs: fixedCAs(ca.Cert)})
	ctx := context.Background()

	if v := WithCRL(CommonName{}, nil); v != (CommonName{}) {
		t.Errorf("WithCRL(next, nil) = %#v, want next", v)
	}
	v := WithCRL(CommonName{}, crl)
	_, err := v.Verify(ctx, stateOf(revoked))
	wantRefusal(t, err, fmt.Sprintf("certificate serial %s is revoked (CRL)", revoked.SerialNumber), false)
	if err.Error() != fmt.Sprintf("certificate serial %s is revoked (CRL)", revoked.SerialNumber) {
		t.Errorf("refusal %q", err)
	}
	if uid, err := v.Verify(ctx, stateOf(good)); err != nil || uid != "swc-2" {
		t.Errorf("Verify(good) = %q, %v", uid, err)
	}
	_, err = v.Verify(ctx, tls.ConnectionState{})
	wantRefusal(t, err, "refused: no client certificate", false)

	// The next verifier is not asked about a revoked certificate; Recheck
	// goes through the CRL to the next verifier's Recheck.
	next := &countingVerifier{}
	v = WithCRL(next, crl)
	if _, err := v.Verify(ctx, stateOf(revoked)); !errors.Is(err, ErrRefused) {
		t.Fatalf("Verify(revoked) = %v", err)
	}
	if _, err := Recheck(ctx, v, stateOf(revoked)); !errors.Is(err, ErrRefused) {
		t.Fatalf("Recheck(revoked) = %v", err)
	}
	if next.verifies.Load()+next.rechecks.Load() != 0 {
		t.Error("the next verifier was asked about a revoked certificate")
	}
	if uid, err := Recheck(ctx, v, stateOf(good)); err != nil || uid != "counted" || next.rechecks.Load() != 1 {
		t.Errorf("Recheck(good) = %q, %v; %d rechecks", uid, err, next.rechecks.Load())
	}
	// Without a Recheck of its own, the next verifier's Verify is used.
	if uid, err := Recheck(ctx, WithCRL(CommonName{}, crl), stateOf(good)); err != nil || uid != "swc-2" {
		t.Errorf("Recheck(good) with CommonName = %q, %v", uid, err)
	}
}

// A revoked intermediate CA refuses every certificate under it.
func TestCRLCheckChain(t *testing.T) {
	root := newCA(t, "crl test root")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(4242), Subject: pkix.Name{CommonName: "crl test intermediate"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root.Cert, key.Public(), root.Key)
	if err != nil {
		t.Fatal(err)
	}
	interCert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	inter := &pki.CA{Cert: interCert, Key: key}
	leaf := issue(t, inter, "swc-1")

	path := filepath.Join(t.TempDir(), "root.crl")
	writeFile(t, path, crlOf(t, root, 1, time.Now(), interCert))
	crl := newCRL(t, CRLOptions{Path: path, CAs: fixedCAs(root.Cert)})
	state := tls.ConnectionState{
		PeerCertificates: []*x509.Certificate{leaf, interCert},
		VerifiedChains:   [][]*x509.Certificate{{leaf, interCert, root.Cert}},
	}
	err = crl.Check(state)
	wantRefusal(t, err, `issuing CA certificate "crl test intermediate" serial 4242 is revoked (CRL)`, false)
	if !errors.Is(err, ErrRevoked) {
		t.Errorf("error %q does not wrap ErrRevoked", err)
	}
	if crl.Revoked(leaf) {
		t.Error("the leaf itself is not on the list")
	}
	// One clean chain is enough (a cross-signed intermediate, say).
	state.VerifiedChains = append(state.VerifiedChains, []*x509.Certificate{leaf, newCA(t, "cross").Cert})
	if err := crl.Check(state); err != nil {
		t.Errorf("Check with a clean chain = %v", err)
	}
}

// rotatingCAs stands in for tlsutil.Reloader.CACerts: the test replaces the
// CA set as a rotation of SWL_CA_PATH would.
type rotatingCAs struct {
	cur atomic.Pointer[[]*x509.Certificate]
}

func newRotatingCAs(certs ...*x509.Certificate) *rotatingCAs {
	r := &rotatingCAs{}
	r.set(certs...)
	return r
}

func (r *rotatingCAs) set(certs ...*x509.Certificate) { r.cur.Store(&certs) }
func (r *rotatingCAs) get() []*x509.Certificate       { return *r.cur.Load() }

// After a CA rotation the old CA's list covers nothing the new CA issues:
// everyone is refused (no verdict) until the new CA's CRL is loaded, which
// is taken although its number is lower; replays stay refused per CA.
func TestCRLFollowsCARotation(t *testing.T) {
	oldCA, nextCA := newCA(t, "crl test CA 1"), newCA(t, "crl test CA 2")
	oldRevoked := issue(t, oldCA, "swc-1")
	newRevoked, newGood := issue(t, nextCA, "swc-2"), issue(t, nextCA, "swc-3")
	now := time.Now()
	path := filepath.Join(t.TempDir(), "ca.crl")
	writeFile(t, path, crlOf(t, oldCA, 7, now, oldRevoked))
	cas := newRotatingCAs(oldCA.Cert)
	log, logs := testutil.Logger(t, "crl")
	var changes atomic.Int64
	c := newCRL(t, CRLOptions{Path: path, CAs: cas.get, Logger: log, OnChange: func() { changes.Add(1) }})
	ctx := context.Background()
	revokedMsg := func(cert *x509.Certificate) string {
		return fmt.Sprintf("certificate serial %s is revoked (CRL)", cert.SerialNumber)
	}
	wantRefusal(t, c.Check(stateOf(oldRevoked)), revokedMsg(oldRevoked), false)
	if err := c.Check(stateOf(oldRevoked)); !errors.Is(err, ErrRevoked) {
		t.Errorf("error %q does not wrap ErrRevoked", err)
	}

	cas.set(nextCA.Cert) // the old CA is gone from the CA file
	for _, cert := range []*x509.Certificate{newGood, newRevoked, oldRevoked} {
		err := c.Check(stateOf(cert))
		wantRefusal(t, err, "no usable CRL: the one in use is not signed by a trusted CA (issuer ", true)
		if !errors.Is(err, errCRLDistrusted) {
			t.Errorf("Check(%s) = %v, want errCRLDistrusted", cert.Subject.CommonName, err)
		}
	}
	// The source still serves the old CA's CRL: no better.
	const distrusted = "crl in use is signed by no current CA: every connector is refused until a CRL signed by one is loaded"
	for range 2 {
		testutil.WantErr(t, c.Reload(ctx), path, "not signed by a trusted CA")
	}
	if n := logs.FilterMessage(distrusted).Len(); n != 1 {
		t.Errorf("%d %q entries, want 1", n, distrusted)
	}

	// The new CA's first CRL: a lower number and an earlier this update
	// than the old CA's last, which says nothing about the new CA's.
	writeFile(t, path, crlOf(t, nextCA, 1, now.Add(-time.Minute), newRevoked))
	if err := c.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if n := changes.Load(); n != 1 {
		t.Errorf("OnChange called %d times, want 1", n)
	}
	wantRefusal(t, c.Check(stateOf(newRevoked)), revokedMsg(newRevoked), false)
	if err := c.Check(stateOf(newGood)); err != nil {
		t.Errorf("Check(good certificate of the new CA) = %v", err)
	}
	if n := logs.FilterMessage("crl in use is signed by a current CA again").Len(); n != 1 {
		t.Errorf("%d recovery entries, want 1", n)
	}

	// Older CRLs stay refused, compared with the newest of their own CA,
	// whichever CA signed the list in use.
	writeFile(t, path, crlOf(t, nextCA, 0, now.Add(-2*time.Minute)))
	testutil.WantErr(t, c.Reload(ctx), "older than the CRL in use (this update")
	cas.set(oldCA.Cert, nextCA.Cert)
	writeFile(t, path, crlOf(t, oldCA, 6, now.Add(time.Minute)))
	testutil.WantErr(t, c.Reload(ctx), "older than the CRL in use (number 6, in use 7)")
	if !c.Revoked(newRevoked) {
		t.Error("a refused CRL replaced the list")
	}
}

// With CAsChanged, Run reads the source at once after a rotation, long
// before its next refresh (no time passes on synctest's clock), and takes
// the new CA's CRL written earlier.
func TestCRLRunReloadsOnCAChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		oldCA, nextCA := newCA(t, "crl test CA 1"), newCA(t, "crl test CA 2")
		newRevoked, newGood := issue(t, nextCA, "swc-2"), issue(t, nextCA, "swc-3")
		now := time.Now()
		path := filepath.Join(t.TempDir(), "ca.crl")
		writeFile(t, path, crlOf(t, oldCA, 7, now))
		cas := newRotatingCAs(oldCA.Cert)
		casChanged := make(chan struct{}, 1)
		var changes atomic.Int64
		c := newCRL(t, CRLOptions{
			Path: path, CAs: cas.get, CAsChanged: casChanged, Refresh: time.Hour,
			OnChange: func() { changes.Add(1) },
		})
		runCRL(t, c)

		writeFile(t, path, crlOf(t, nextCA, 1, now, newRevoked))
		cas.set(nextCA.Cert)
		casChanged <- struct{}{}
		synctest.Wait()
		if n := changes.Load(); n != 1 || time.Since(now) != 0 {
			t.Fatalf("%d changes after %s, want the new CA's CRL at once", n, time.Since(now))
		}
		wantRefusal(t, c.Check(stateOf(newRevoked)), fmt.Sprintf("certificate serial %s is revoked (CRL)", newRevoked.SerialNumber), false)
		if err := c.Check(stateOf(newGood)); err != nil {
			t.Errorf("Check(good certificate of the new CA) = %v", err)
		}
	})
}

// A CA certificate issued again with the same key and name still vouches
// for the CRL it signed: nothing is refused for want of a CRL.
func TestCRLCAReissuedSameKey(t *testing.T) {
	ca := newCA(t, "crl test CA")
	revoked, good := issue(t, ca, "swc-1"), issue(t, ca, "swc-2")
	path := filepath.Join(t.TempDir(), "ca.crl")
	writeFile(t, path, crlOf(t, ca, 1, time.Now(), revoked))
	cas := newRotatingCAs(ca.Cert)
	c := newCRL(t, CRLOptions{Path: path, CAs: cas.get})

	tmpl := *ca.Cert
	tmpl.SerialNumber = big.NewInt(99)
	tmpl.NotAfter = ca.Cert.NotAfter.Add(time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, ca.Key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	reissued, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	cas.set(reissued)
	wantRefusal(t, c.Check(stateOf(revoked)), fmt.Sprintf("certificate serial %s is revoked (CRL)", revoked.SerialNumber), false)
	if err := c.Check(stateOf(good)); err != nil {
		t.Errorf("Check(good) = %v", err)
	}
}

// Close drops the keep-alive connection the CRL's own client kept to the
// CRL URL.
func TestCRLCloseDropsIdleConnections(t *testing.T) {
	ca := newCA(t, "crl test CA")
	der := crlOf(t, ca, 1, time.Now())
	var closed atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(der) }))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateClosed {
			closed.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c := newCRL(t, CRLOptions{URL: srv.URL, CAs: fixedCAs(ca.Cert)})
	if n := closed.Load(); n != 0 {
		t.Fatalf("%d connections closed before Close", n)
	}
	c.Close()
	testutil.Eventually(t, "the idle connection closed", func() bool { return closed.Load() == 1 })
}
