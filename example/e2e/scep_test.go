package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/connector"
	"github.com/socket-warp/socket-warp/connector/enroll"
	"github.com/socket-warp/socket-warp/example/devca"
	"github.com/socket-warp/socket-warp/listener/auth"
	"github.com/socket-warp/socket-warp/shared/testutil"
)

// scepCA is sw-devca serving real SCEP over HTTP on loopback, with the
// listener's certificate it issued written to files.
type scepCA struct {
	*devca.CA
	url string // base URL; SCEP is at url+"/scep"
	env *env

	// hold, while set, answers SCEP's PKIOperation with 503: a renewal
	// fails (and is retried) until the test lets it through.
	hold atomic.Bool
	// verifies counts the requests to /api/cert/verify.
	verifies atomic.Int64
	// verifyDown, while set, answers /api/cert/verify with 503, as a
	// proxy in front of a stopped SCEP server does.
	verifyDown atomic.Bool
}

func newSCEPCA(t *testing.T, clientValidity time.Duration, opts ...devca.Option) *scepCA {
	t.Helper()
	dir := t.TempDir()
	ca, err := devca.Init(filepath.Join(dir, "devca.json"), devca.InitOptions{
		DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, CertValidity: clientValidity,
		CAKeyBits: 2048,
	}, append([]devca.Option{devca.WithLogger(zap.NewNop())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	s := &scepCA{CA: ca}
	h := ca.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/cert/verify" {
			s.verifies.Add(1)
			if s.verifyDown.Load() {
				http.Error(w, "SCEP server down (the test)", http.StatusServiceUnavailable)
				return
			}
		}
		if s.hold.Load() && r.URL.Query().Get("operation") == "PKIOperation" {
			http.Error(w, "held by the test", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { srv.Close(); ca.Close() })
	certPEM, keyPEM := ca.ServerCertPEM()
	e := &env{t: t, serverCert: filepath.Join(dir, "server.crt"), serverKey: filepath.Join(dir, "server.key"),
		caPath: filepath.Join(dir, "ca.crt")}
	for path, data := range map[string][]byte{e.serverCert: certPEM, e.serverKey: keyPEM, e.caPath: ca.CACertPEM()} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s.url, s.env = srv.URL, e
	return s
}

// register adds uid and returns a one-time enrollment secret for it.
func (s *scepCA) register(t *testing.T, uid string) string {
	t.Helper()
	if err := s.AddClient(uid, nil); err != nil {
		t.Fatal(err)
	}
	secret, err := s.CreateSecret(uid, 0)
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

// selfEnrollingConnector has no certificate yet, only a UID, a secret and
// the SCEP URL.
func (s *scepCA) selfEnrollingConnector(t *testing.T, uid, secret string, quicPort int) connector.Config {
	dir := t.TempDir()
	c := connector.Defaults()
	c.ClientCertPath, c.ClientKeyPath, c.CACertPath =
		filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key"), filepath.Join(dir, "ca.crt")
	c.ServerName, c.ServerAddress, c.ServicePort = "localhost", "127.0.0.1", quicPort
	c.RetryMin, c.RetryMax = connector.Duration(20*time.Millisecond), connector.Duration(200*time.Millisecond)
	c.SCEPURL, c.UID, c.EnrollSecret = s.url+"/scep", uid, secret
	// Over plain http the CA is pinned, as the connector insists when the
	// SCEP CA is about to become its trust root.
	sum := sha256.Sum256(s.CACert().Raw)
	c.CAFingerprint = hex.EncodeToString(sum[:])
	return c
}

// TestSelfEnrollThenTunnel: a connector with nothing but a UID, a secret and
// the SCEP URL enrolls, connects and tunnels.
func TestSelfEnrollThenTunnel(t *testing.T) {
	ca := newSCEPCA(t, 0)
	rl := ca.env.startListener(ca.env.listenerConfig())
	cfg := ca.selfEnrollingConnector(t, "swc-scep", ca.register(t, "swc-scep"), rl.quicPort())
	rc := ca.env.startConnector(cfg)
	testutil.Eventually(t, "self-enrolled connector bound", func() bool { return rl.Connected("swc-scep") })

	port := rl.open(t, "swc-scep", testutil.EchoServer(t))
	if got := roundTrip(t, dialPort(t, port), []byte("enrolled")); string(got) != "enrolled" {
		t.Fatalf("tunnel with the enrolled certificate: %q", got)
	}
	if !testutil.Logged(rc.logs, "enrolled", "uid", "swc-scep") {
		t.Error("connector did not log its enrollment")
	}
	fi, err := os.Stat(cfg.ClientKeyPath)
	if err != nil {
		t.Fatalf("enrolled key file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("enrolled key file mode %v, want 0600", fi.Mode().Perm())
	}
	// The secret was consumed: a second enrollment with it is refused.
	_, err = enroll.Enroll(context.Background(), enroll.Options{URL: ca.url + "/scep", UID: "swc-scep", Secret: cfg.EnrollSecret})
	if !errors.Is(err, enroll.ErrRefused) {
		t.Fatalf("reusing the secret: %v, want a refusal", err)
	}
}

// TestSelfEnrollOverHTTPNeedsPin: without a CA file and a fingerprint, the
// connector refuses to make whoever answers on plain http its trust root.
func TestSelfEnrollOverHTTPNeedsPin(t *testing.T) {
	ca := newSCEPCA(t, 0)
	cfg := ca.selfEnrollingConnector(t, "swc-nopin", ca.register(t, "swc-nopin"), 1)
	cfg.CAFingerprint = ""
	_, err := connector.New(cfg, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), "set ca_fingerprint") {
		t.Fatalf("New without a pin: %v", err)
	}
}

// TestEnrollRefusalsAreClear: a wrong secret and an unknown uid give errors
// an operator can act on (the CSR's CN is always the uid here; devca's own
// tests cover a CN that differs).
func TestEnrollRefusalsAreClear(t *testing.T) {
	ca := newSCEPCA(t, 0)
	ca.register(t, "swc-known")
	for _, tc := range []struct{ name, uid, secret, want string }{
		{"wrong secret", "swc-known", "not-the-secret", "wrong or already used secret"},
		{"unknown uid", "swc-nobody", "whatever", "uid not registered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := enroll.Enroll(context.Background(), enroll.Options{URL: ca.url + "/scep", UID: tc.uid, Secret: tc.secret})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
}

// TestRenewalWithoutRestart: the connector renews before expiry, swaps its
// files, keeps its tunnelled connection, and its next handshake uses the
// new certificate.
func TestRenewalWithoutRestart(t *testing.T) {
	ca := newSCEPCA(t, 8*time.Second)
	lcfg := ca.env.listenerConfig()
	first := ca.env.startListener(lcfg)
	// Enrolled beforehand (sw-connector enroll), then configured to renew
	// with the update secret an operator created for it.
	cfg := ca.selfEnrollingConnector(t, "swc-renew", ca.register(t, "swc-renew"), first.quicPort())
	res, err := enroll.Enroll(context.Background(), enroll.Options{URL: cfg.SCEPURL, UID: cfg.UID, Secret: cfg.EnrollSecret})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Write(enroll.Paths{Key: cfg.ClientKeyPath, Cert: cfg.ClientCertPath, CA: cfg.CACertPath}); err != nil {
		t.Fatal(err)
	}
	cfg.EnrollSecret = ""
	cfg.RenewAt = 0.25 // renew 2 s into an 8 s life
	if cfg.RenewSecret, err = ca.CreateSecret("swc-renew", time.Minute); err != nil {
		t.Fatal(err)
	}
	rc := ca.env.startConnector(cfg)
	testutil.Eventually(t, "connector bound", func() bool { return first.Connected("swc-renew") })
	oldSerial := serialOf(t, cfg.ClientCertPath)

	// A tunnelled connection that lives across the renewal.
	port := first.open(t, "swc-renew", testutil.EchoServer(t))
	c := dialPort(t, port)
	echo := func(msg string) {
		t.Helper()
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatalf("write %q: %v", msg, err)
		}
		buf := make([]byte, len(msg))
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo of %q: %q, %v", msg, buf, err)
		}
	}
	echo("before renewal")

	testutil.Eventually(t, "certificate renewed", func() bool { return testutil.Logged(rc.logs, "certificate renewed", "uid", "swc-renew") })
	newSerial := serialOf(t, cfg.ClientCertPath)
	if newSerial == oldSerial {
		t.Fatal("the certificate file still holds the old certificate")
	}
	echo("after renewal") // same TCP connection, same QUIC connection: nothing dropped

	// devca backdates NotBefore by 5 minutes, so the renewed certificate is
	// due at once too; the update secret is spent, and the connector says so.
	testutil.Eventually(t, "spent update secret explained", func() bool {
		return testutil.Logged(rc.logs, "certificate renewal failed", "reason", "renew_secret is wrong or already used")
	})

	// The next handshake presents the new certificate: restart the listener.
	lcfg.Port = first.quicPort()
	first.stop()
	second := ca.env.startListener(lcfg)
	testutil.Eventually(t, "connector back with the renewed certificate", func() bool {
		return testutil.Logged(second.logs, "connector connected", "serial", newSerial)
	})
}

// TestRenewalSecretFileWithoutRestart: a connector whose update secret is
// in renew_secret_file renews with the secret an operator writes there while
// it runs (the file does not exist at start, then holds a wrong one), hands
// over to the renewed certificate, and logs the secret nowhere.
func TestRenewalSecretFileWithoutRestart(t *testing.T) {
	const uid = "swc-secretfile"
	// devca backdates NotBefore by five minutes: at renew_at 0.25 of a
	// 6-minute life the renewal is due at once.
	ca := newSCEPCA(t, time.Minute)
	rl := ca.env.startListener(ca.env.listenerConfig())
	cfg := ca.enrolledConnector(t, uid, rl.quicPort())
	cfg.RenewAt = 0.25
	cfg.RenewSecretFile = filepath.Join(t.TempDir(), "update-secret")
	oldSerial := serialOf(t, cfg.ClientCertPath)
	rc := ca.env.startConnector(cfg)
	testutil.Eventually(t, "connector bound", func() bool { return rl.Connected(uid) })
	testutil.Eventually(t, "renewal waits for a secret", func() bool {
		return testutil.Logged(rc.logs, "certificate renewal failed", "reason", "no update secret")
	})

	writeFile := func(data string) {
		t.Helper()
		tmp := cfg.RenewSecretFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, cfg.RenewSecretFile); err != nil {
			t.Fatal(err)
		}
	}
	const wrong = "wrong-update-secret"
	writeFile(wrong + "\n")
	testutil.Eventually(t, "the wrong secret refused, and what to do said", func() bool {
		return testutil.Logged(rc.logs, "certificate renewal failed", "reason",
			"the update secret in renew_secret_file "+cfg.RenewSecretFile+" is wrong or already used")
	})

	secret, err := ca.CreateSecret(uid, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(secret + "\n")
	testutil.Eventually(t, "certificate renewed with the secret from the file", func() bool {
		return testutil.Logged(rc.logs, "certificate renewed", "uid", uid)
	})
	newSerial := serialOf(t, cfg.ClientCertPath)
	if newSerial == oldSerial {
		t.Fatal("the certificate file still holds the old certificate")
	}
	testutil.Eventually(t, "the listener has the connector on the renewed certificate", func() bool {
		return testutil.Logged(rl.logs, "connector handed over to a new connection", "new_serial", newSerial)
	})
	for _, e := range rc.logs.All() {
		line := fmt.Sprintf("%s %v", e.Message, e.ContextMap())
		if strings.Contains(line, secret) || strings.Contains(line, wrong) {
			t.Errorf("a log line shows an update secret: %s", line)
		}
	}
}

func serialOf(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := parseFirstPEM(data)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", cert.SerialNumber)
}

// enrolledConnector enrolls uid against the CA in the test and returns the
// connector's configuration using those files.
func (s *scepCA) enrolledConnector(t *testing.T, uid string, quicPort int) connector.Config {
	t.Helper()
	cfg := s.selfEnrollingConnector(t, uid, s.register(t, uid), quicPort)
	res, err := enroll.Enroll(context.Background(), enroll.Options{URL: cfg.SCEPURL, UID: uid, Secret: cfg.EnrollSecret})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Write(enroll.Paths{Key: cfg.ClientKeyPath, Cert: cfg.ClientCertPath, CA: cfg.CACertPath}); err != nil {
		t.Fatal(err)
	}
	cfg.EnrollSecret = ""
	return cfg
}

// TestSCEPVerifyRevocationCutsOff: with SWL_SCEP_URL the listener asks the
// SCEP server about every connector; a revoked one is refused at handshake
// and a connected one is dropped at the next re-check.
func TestSCEPVerifyRevocationCutsOff(t *testing.T) {
	ca := newSCEPCA(t, 0)
	lcfg := ca.env.listenerConfig()
	lcfg.SCEPURL, lcfg.VerifyCacheTTL, lcfg.VerifyTimeout = ca.url, 300*time.Millisecond, 5*time.Second
	rl := ca.env.startListener(lcfg)

	rc := ca.env.startConnector(ca.enrolledConnector(t, "swc-rev", rl.quicPort()))
	testutil.Eventually(t, "verified connector bound", func() bool { return rl.Connected("swc-rev") })
	port := rl.open(t, "swc-rev", testutil.EchoServer(t))
	if got := roundTrip(t, dialPort(t, port), []byte("verified")); string(got) != "verified" {
		t.Fatalf("tunnel: %q", got)
	}

	if err := ca.Revoke("swc-rev"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "revoked connector dropped", func() bool { return !rl.Connected("swc-rev") })
	// Its reconnects are refused, and it is told why.
	testutil.Eventually(t, "connector logs the refusal", func() bool {
		return testutil.Logged(rc.logs, "listener refused this connector", "reason", "Certificate is revoked")
	})
	if rl.Connected("swc-rev") {
		t.Fatal("revoked connector bound again")
	}
}

// TestSCEPVerifyUnreachableFailsClosed: no answer from the verify endpoint
// means no connection.
func TestSCEPVerifyUnreachableFailsClosed(t *testing.T) {
	ca := newSCEPCA(t, 0)
	lcfg := ca.env.listenerConfig()
	down := httptest.NewServer(nil)
	downURL := down.URL
	down.Close() // nothing listens there any more
	lcfg.SCEPURL, lcfg.VerifyCacheTTL, lcfg.VerifyTimeout = downURL, time.Minute, 2*time.Second
	rl := ca.env.startListener(lcfg)
	rc := ca.env.startConnector(ca.enrolledConnector(t, "swc-down", rl.quicPort()))
	testutil.Eventually(t, "connector told the verify endpoint is unreachable", func() bool {
		return testutil.Logged(rc.logs, "listener refused this connector", "reason", "unreachable")
	})
	if rl.Connected("swc-down") {
		t.Fatal("bound without a verdict from the SCEP server")
	}
	if !testutil.Logged(rl.logs, "connector refused", "reason", "unreachable") {
		t.Error("listener did not log why it refused")
	}
}

// TestSCEPOutageKeepsCachedConnectors pins what the README says of an
// outage of the verify endpoint: a connector whose certificate the SCEP
// server accepted less than SWL_VERIFY_CACHE_TTL ago gets back in after it
// reconnects, from the listener's cache; a connector it has no answer for
// is refused until the server answers again. (That the cached answer ends
// with the TTL is listener/auth's TestSCEPOutageAcceptsCachedOnly.)
func TestSCEPOutageKeepsCachedConnectors(t *testing.T) {
	ca := newSCEPCA(t, 0)
	lcfg := ca.env.listenerConfig()
	// A TTL longer than the test: no re-check runs meanwhile.
	lcfg.SCEPURL, lcfg.VerifyCacheTTL, lcfg.VerifyTimeout = ca.url, 10*time.Minute, 5*time.Second
	rl := ca.env.startListener(lcfg)
	known := ca.enrolledConnector(t, "swc-known", rl.quicPort())
	fresh := ca.enrolledConnector(t, "swc-fresh", rl.quicPort()) // enrolled, never connected
	rc := ca.env.startConnector(known)
	testutil.Eventually(t, "verified connector bound", func() bool { return rl.Connected("swc-known") })

	ca.verifyDown.Store(true)
	rc.stop()
	testutil.Eventually(t, "connector gone", func() bool { return !rl.Connected("swc-known") })
	asked := ca.verifies.Load()
	ca.env.startConnector(known)
	testutil.Eventually(t, "the known connector back in during the outage", func() bool { return rl.Connected("swc-known") })
	if n := ca.verifies.Load() - asked; n != 0 {
		t.Errorf("%d verify requests for the cached certificate, want none", n)
	}

	other := ca.env.startConnector(fresh)
	testutil.Eventually(t, "the new connector refused during the outage", func() bool {
		return testutil.Logged(other.logs, "listener refused this connector", "reason", "unexpected answer (503)")
	})
	if rl.Connected("swc-fresh") {
		t.Fatal("a connector without a cached answer bound during the outage")
	}
	if !testutil.Logged(rl.logs, auth.UnavailableMessage, "reason", "503") {
		t.Error("the listener did not say the SCEP server is unavailable")
	}

	ca.verifyDown.Store(false)
	testutil.Eventually(t, "the new connector in once the server answers", func() bool { return rl.Connected("swc-fresh") })
	if !rl.Connected("swc-known") {
		t.Error("the known connector lost meanwhile")
	}
}

// TestCRLFileRevokes: SWL_CRL_PATH with the SCEP server's CRL; a refresh that
// revokes a connected connector drops it, and it cannot come back.
func TestCRLFileRevokes(t *testing.T) {
	ca := newSCEPCA(t, 0)
	crlPath := filepath.Join(t.TempDir(), "ca.crl")
	writeCRL := func() {
		der, err := ca.CRL()
		if err != nil {
			t.Fatal(err)
		}
		tmp := crlPath + ".tmp"
		if err := os.WriteFile(tmp, der, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, crlPath); err != nil {
			t.Fatal(err)
		}
	}
	writeCRL()
	lcfg := ca.env.listenerConfig()
	lcfg.CRLPath, lcfg.CRLRefresh = crlPath, 100*time.Millisecond
	rl := ca.env.startListener(lcfg)
	rc := ca.env.startConnector(ca.enrolledConnector(t, "swc-crl", rl.quicPort()))
	testutil.Eventually(t, "connector bound", func() bool { return rl.Connected("swc-crl") })

	if err := ca.Revoke("swc-crl"); err != nil {
		t.Fatal(err)
	}
	writeCRL()
	testutil.Eventually(t, "revoked connector dropped at the CRL refresh", func() bool { return !rl.Connected("swc-crl") })
	testutil.Eventually(t, "connector told it is revoked", func() bool {
		return testutil.Logged(rc.logs, "listener refused this connector", "reason", "revoked (CRL)")
	})
	if rl.Connected("swc-crl") {
		t.Fatal("revoked connector bound again")
	}
}
