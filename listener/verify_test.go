package listener

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/listener/auth"
	"github.com/socket-warp/socket-warp/shared/pki"
	"github.com/socket-warp/socket-warp/shared/testutil"
	"github.com/socket-warp/socket-warp/shared/wire"
)

// runListener makes a listener of cfg and runs it until the test ends.
func runListener(t *testing.T, cfg Config, log *zap.Logger) *Listener {
	t.Helper()
	l, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	startListener(t, l)
	return l
}

func startListener(t *testing.T, l *Listener) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// verifyAnswer is what the test's verify endpoint says.
type verifyAnswer int32

const (
	verifyIssued  verifyAnswer = iota // 200, ISSUED
	verifyRevoked                     // 401, the server's definitive "no"
	verifyDown                        // 503: no verdict
)

// verifyServer is a SCEP verify endpoint the test controls. It names every
// certificate "swc-1". In verifyDown, the holdAt-th 503 waits for release
// (or for the client to give up) before it is sent.
type verifyServer struct {
	URL     string
	answer  atomic.Int32
	downs   atomic.Int64  // 503 answers begun
	holdAt  int64         // 0: none held
	held    chan struct{} // closed when the held request arrived
	release chan struct{} // closed by the test to send the held answer
}

func newVerifyServer(t *testing.T, holdAt int64) *verifyServer {
	t.Helper()
	v := &verifyServer{holdAt: holdAt, held: make(chan struct{}), release: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != auth.SCEPVerifyPath || r.Header.Get(auth.SCEPCertHeader) == "" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch verifyAnswer(v.answer.Load()) {
		case verifyIssued:
			fmt.Fprint(w, `{"uid":"swc-1","status":"ISSUED","attributes":{}}`)
		case verifyRevoked:
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"message":"Certificate is revoked"}`)
		case verifyDown:
			if v.downs.Add(1) == v.holdAt {
				close(v.held)
				select {
				case <-v.release:
				case <-r.Context().Done():
				}
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"message":"maintenance"}`)
		}
	}))
	t.Cleanup(srv.Close) // registered first: runs after the listener stopped
	v.URL = srv.URL
	return v
}

func (v *verifyServer) set(a verifyAnswer) { v.answer.Store(int32(a)) }

// A definitive "no" at a re-check disconnects at once, telling the connector
// why.
func TestRecheckDropsOnRefusal(t *testing.T) {
	f := newFiles(t)
	verify := newVerifyServer(t, 0)
	cfg := f.config()
	cfg.SCEPURL, cfg.VerifyCacheTTL, cfg.VerifyTimeout = verify.URL, 100*time.Millisecond, safety
	log, _ := testutil.Logger(t, "listener")
	l := runListener(t, cfg, log)

	conn := connectorConn(t, f, l, "swc-1")
	testutil.Eventually(t, "connector bound", func() bool { return l.Connected("swc-1") })
	verify.set(verifyRevoked)
	testutil.ClosedByPeer(t, conn, wire.CodeUnauthorized, "scep verify: Certificate is revoked (401)")
	testutil.Eventually(t, "connector unbound", func() bool { return !l.Connected("swc-1") })
}

// No verdict at a re-check keeps the connector, for recheckGrace re-checks
// in a row; the last of them drops it.
func TestRecheckGraceWhileVerifyDown(t *testing.T) {
	f := newFiles(t)
	verify := newVerifyServer(t, recheckGrace) // the last re-check of the grace waits for the test
	cfg := f.config()
	cfg.SCEPURL, cfg.VerifyCacheTTL, cfg.VerifyTimeout = verify.URL, 100*time.Millisecond, safety
	log, _ := testutil.Logger(t, "listener")
	l := runListener(t, cfg, log)

	conn := connectorConn(t, f, l, "swc-1")
	testutil.Eventually(t, "connector bound", func() bool { return l.Connected("swc-1") })
	verify.set(verifyDown)
	select {
	case <-verify.held:
	case <-time.After(safety):
		t.Fatalf("no re-check number %d while the endpoint is down", recheckGrace)
	}
	// recheckGrace-1 passes without a verdict are over, the last one waits.
	if !l.Connected("swc-1") || conn.Context().Err() != nil {
		t.Fatalf("connector dropped after %d re-checks without a verdict, want it kept", recheckGrace-1)
	}

	close(verify.release)
	testutil.ClosedByPeer(t, conn, wire.CodeUnauthorized,
		fmt.Sprintf("not re-verified for %d checks in a row", recheckGrace), "maintenance (503)")
	testutil.Eventually(t, "connector unbound", func() bool { return !l.Connected("swc-1") })
}

// hookVerifier runs after once a certificate has passed next.
type hookVerifier struct {
	next  auth.Verifier
	after func(tls.ConnectionState)
}

func (v hookVerifier) Verify(ctx context.Context, state tls.ConnectionState) (string, error) {
	uid, err := v.next.Verify(ctx, state)
	if err == nil {
		v.after(state)
	}
	return uid, err
}

func writeCRL(t *testing.T, path string, ca *pki.CA, number int64, revoked ...*x509.Certificate) {
	t.Helper()
	now := time.Now()
	tmpl := &x509.RevocationList{
		Number: big.NewInt(number), ThisUpdate: now.Add(time.Duration(number) * time.Second), NextUpdate: now.Add(24 * time.Hour),
	}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: now})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFileAtomic(path, der, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A CRL that revokes a connector after its handshake was checked, but
// before it was bound (so after the CRL update's own sweep of the bound
// connectors), still closes it: serveConnector checks again once bound.
func TestCRLCheckedAgainAfterBind(t *testing.T) {
	f := newFiles(t)
	crlPath := filepath.Join(t.TempDir(), "ca.crl")
	writeCRL(t, crlPath, f.pki.CA, 1)
	cfg := f.config()
	cfg.CRLPath, cfg.CRLRefresh = crlPath, time.Hour // only the test reloads
	log, _ := testutil.Logger(t, "listener")
	l, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	l.verifier = hookVerifier{next: l.verifier, after: func(state tls.ConnectionState) {
		once.Do(func() {
			writeCRL(t, crlPath, f.pki.CA, 2, state.PeerCertificates[0])
			if err := l.crl.Reload(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}}
	startListener(t, l)

	conn := connectorConn(t, f, l, "swc-1")
	testutil.ClosedByPeer(t, conn, wire.CodeUnauthorized, "is revoked (CRL)")
	testutil.Eventually(t, "connector unbound", func() bool { return !l.Connected("swc-1") })
	if n := metricValue(t, l, "socketwarp_listener_handshake_refusals_total", "reason", reasonRevoked); n != 1 {
		t.Errorf("%v refusals counted as revoked, want 1", n)
	}
}
