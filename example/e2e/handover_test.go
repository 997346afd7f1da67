package e2e

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/example/devca"
	"github.com/socket-warp/socket-warp/listener/port"
	"github.com/socket-warp/socket-warp/shared/pki"
	"github.com/socket-warp/socket-warp/shared/testutil"
)

// The metrics the hand-over tests read.
const (
	metricHandOvers      = "socketwarp_listener_connector_handovers_total"
	metricRefusals       = "socketwarp_listener_handshake_refusals_total"
	metricConnections    = "socketwarp_connector_connections"
	metricConnHandOvers  = "socketwarp_connector_handovers_total"
	metricConnReconnects = "socketwarp_connector_reconnects_total"
)

// offsetClock is the SCEP CA's clock, which a test moves forward: the end
// of a pending period without waiting for it.
type offsetClock struct{ offset atomic.Int64 }

func (c *offsetClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *offsetClock) advance(d time.Duration) { c.offset.Add(int64(d)) }

func metricValue(t *testing.T, m testutil.Metrics, name string, labels ...string) float64 {
	t.Helper()
	v, _ := m.Value(name, labels...)
	return v
}

func (rl *runningListener) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	return metricValue(t, testutil.Gather(t, rl.Metrics()), name, labels...)
}

func (rc *runningConnector) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	return metricValue(t, testutil.Gather(t, rc.Metrics()), name, labels...)
}

// reconnects is how often the connector connected again, whatever the reason.
func (rc *runningConnector) reconnects(t *testing.T) float64 {
	t.Helper()
	fam := testutil.Gather(t, rc.Metrics())[metricConnReconnects]
	var n float64
	for _, m := range fam.GetMetric() {
		n += m.GetCounter().GetValue()
	}
	return n
}

// session is uid's bound connection as /connections shows it.
func (rl *runningListener) session(t *testing.T, uid string) port.Connection {
	t.Helper()
	for _, c := range rl.Connections() {
		if c.UID == uid {
			return c
		}
	}
	t.Fatalf("uid %s is not connected", uid)
	return port.Connection{}
}

// copyFile copies src to a new file in dir and returns its path.
func copyFile(t *testing.T, src, dir string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(src))
	if err := os.WriteFile(dst, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestRenewalHandsOverAcrossRevocation: the connector renews its
// certificate over SCEP while a client's TCP connection runs through it.
// It moves to a new connection with the new certificate, which takes the
// new clients, while the running one stays on the old connection — also
// after the SCEP server revoked the old certificate at the end of the
// update secret's pending period and the listener re-checked. The old
// connection closes once that client is done; nothing reconnects. A second
// connector with the old certificate is still refused as a duplicate.
func TestRenewalHandsOverAcrossRevocation(t *testing.T) {
	const uid = "swc-renew"
	const pending = 10 * time.Minute
	clock := &offsetClock{}
	// One hour of validity: devca backdates NotBefore by five minutes, so
	// at renew_at 0.05 the renewal is due at once — and held until the
	// client below is connected.
	ca := newSCEPCA(t, time.Hour, devca.WithClock(clock.Now))
	lcfg := ca.env.listenerConfig()
	lcfg.SCEPURL, lcfg.VerifyCacheTTL, lcfg.VerifyTimeout = ca.url, 300*time.Millisecond, 5*time.Second
	rl := ca.env.startListener(lcfg)

	cfg := ca.enrolledConnector(t, uid, rl.quicPort())
	ca.hold.Store(true)
	oldDir := t.TempDir()
	oldCert, oldKey := copyFile(t, cfg.ClientCertPath, oldDir), copyFile(t, cfg.ClientKeyPath, oldDir)
	oldSerial := serialOf(t, cfg.ClientCertPath)
	cfg.RenewAt = 0.05
	var err error
	if cfg.RenewSecret, err = ca.CreateSecret(uid, pending); err != nil {
		t.Fatal(err)
	}
	rc := ca.env.startConnector(cfg)
	testutil.Eventually(t, "connector bound", func() bool { return rl.Connected(uid) })
	oldRemote := rl.session(t, uid).Remote

	port := rl.open(t, uid, testutil.EchoServer(t))
	held := dialPort(t, port)
	echoOnce(t, held, "before the renewal")

	ca.hold.Store(false)
	testutil.Eventually(t, "listener takes the new connection as the successor", func() bool {
		return rl.metric(t, metricHandOvers) == 1
	})
	newSerial := serialOf(t, cfg.ClientCertPath)
	if newSerial == oldSerial {
		t.Fatal("the certificate file still holds the old certificate")
	}
	if !testutil.Logged(rl.logs, "connector handed over to a new connection", "new_serial", newSerial) ||
		!testutil.Logged(rl.logs, "connector handed over to a new connection", "old_serial", oldSerial) {
		t.Error("the listener's hand-over line does not name both serials")
	}
	echoOnce(t, held, "after the renewal")

	// A new client goes over the new connection: while both clients are
	// open, the bound connection carries one stream — the new one.
	fresh := dialPort(t, port)
	echoOnce(t, fresh, "a new client")
	if s := rl.session(t, uid); s.Remote == oldRemote || s.ActiveStreams != 1 {
		t.Fatalf("bound connection from %s (old %s) carries %d streams; want the new connection carrying the new client",
			s.Remote, oldRemote, s.ActiveStreams)
	}
	finish(t, fresh)
	if n := rc.metric(t, metricConnections); n != 2 {
		t.Fatalf("connector has %v connections, want 2: the old one still carries a tunnel", n)
	}

	// Another connector with the old certificate is a duplicate.
	dup := cfg
	dup.ClientCertPath, dup.ClientKeyPath, dup.RenewSecret = oldCert, oldKey, ""
	second := ca.env.startConnector(dup)
	testutil.Eventually(t, "connector with the old certificate refused", func() bool {
		return rl.metric(t, metricRefusals, "reason", "duplicate_uid") >= 1
	})
	second.stop()

	// The pending period ends: the SCEP server revokes the old certificate,
	// and the listener re-checks (two verify requests after the change: at
	// least one whole pass judged with it).
	clock.advance(pending + time.Minute)
	checked := ca.verifies.Load()
	testutil.Eventually(t, "a re-check after the revocation", func() bool { return ca.verifies.Load() >= checked+2 })
	echoOnce(t, held, "after the revocation")

	// The old connection closes once its last tunnel has ended.
	finish(t, held)
	testutil.Eventually(t, "old connection closed", func() bool { return rc.metric(t, metricConnections) == 1 })
	if n := rc.metric(t, metricConnHandOvers, "result", "ok"); n != 1 {
		t.Errorf("connector counted %v hand-overs, want 1", n)
	}
	if n := rc.reconnects(t); n != 0 {
		t.Errorf("connector reconnected %v times, want never", n)
	}
	if !rl.Connected(uid) {
		t.Fatal("connector no longer bound")
	}
	echoOnce(t, dialPort(t, port), "still through the new connection")
}

// TestCertificateReloadHandsOver: the certificate and key files are
// replaced on disk (by an operator, cert-manager, ...). The connector picks
// them up and moves to a new connection with them while a running client
// finishes on the old one, which then closes.
func TestCertificateReloadHandsOver(t *testing.T) {
	e := newEnv(t)
	rl := e.startListener(e.listenerConfig())
	cfg := e.connectorConfig("swc-1", rl.quicPort())
	rc := e.startConnector(cfg)
	testutil.Eventually(t, "connector bound", func() bool { return rl.Connected("swc-1") })
	oldRemote := rl.session(t, "swc-1").Remote
	port := rl.open(t, "swc-1", testutil.EchoServer(t))
	held := dialPort(t, port)
	echoOnce(t, held, "before the new files")

	// Issued to other files, then renamed over the connector's, as a
	// deployment tool would.
	newCert, newKey := e.pki.Issue(t, "client-swc-1-next", pki.LeafOptions{CommonName: "swc-1", Usage: pki.Client})
	if err := os.Rename(newKey, cfg.ClientKeyPath); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(newCert, cfg.ClientCertPath); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "listener takes the new connection as the successor", func() bool {
		return rl.metric(t, metricHandOvers) == 1
	})
	echoOnce(t, held, "after the hand-over")
	fresh := dialPort(t, port)
	echoOnce(t, fresh, "a new client")
	if s := rl.session(t, "swc-1"); s.Remote == oldRemote || s.ActiveStreams != 1 {
		t.Fatalf("bound connection from %s (old %s) carries %d streams; want the new connection carrying the new client",
			s.Remote, oldRemote, s.ActiveStreams)
	}
	finish(t, fresh)

	finish(t, held)
	testutil.Eventually(t, "old connection closed", func() bool { return rc.metric(t, metricConnections) == 1 })
	if n := rc.reconnects(t); n != 0 {
		t.Errorf("connector reconnected %v times, want never", n)
	}
}
