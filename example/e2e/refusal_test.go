package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/socket-warp/socket-warp/shared/pki"
	"github.com/socket-warp/socket-warp/shared/testutil"
	"github.com/socket-warp/socket-warp/shared/wire"
)

// dialRaw connects with a hand-made TLS config and returns how the
// connection ended (the handshake may complete on the client's side before
// the listener checks the client certificate).
func dialRaw(t *testing.T, port int, conf *tls.Config) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, "127.0.0.1:"+itoa(port), conf, &quic.Config{})
	if err != nil {
		return err
	}
	defer conn.CloseWithError(0, "")
	_, err = conn.AcceptStream(ctx)
	return err
}

func TestRefusedWithoutClientCertificate(t *testing.T) {
	e := newEnv(t)
	rl := e.startListener(e.listenerConfig())
	pool := e.pki.Pool(t)
	err := dialRaw(t, rl.quicPort(), &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{wire.ALPN}})
	var te *quic.TransportError
	if !errors.As(err, &te) || !te.Remote || !te.ErrorCode.IsCryptoError() {
		t.Fatalf("dial without a client certificate: %v, want a TLS refusal from the listener", err)
	}
	wantRefusalLogged(t, rl, "no_certificate", "client sent no certificate")
}

// wantRefusalLogged checks that the listener explained a TLS refusal in one
// warn line with the client's address and the reason, and counted it.
func wantRefusalLogged(t *testing.T, rl *runningListener, label, reason string) {
	t.Helper()
	testutil.Eventually(t, "listener logs the refusal", func() bool {
		return testutil.Logged(rl.logs, "connector refused", "refusal", label)
	})
	for _, e := range rl.logs.FilterMessage("connector refused").All() {
		f := e.ContextMap()
		if f["refusal"] != label {
			continue
		}
		if e.Level.String() != "warn" || !strings.HasPrefix(fmt.Sprint(f["remote"]), "127.0.0.1:") ||
			!strings.Contains(fmt.Sprint(f["reason"]), reason) {
			t.Errorf("refusal logged as %s %v, want warn with remote 127.0.0.1:… and a reason naming %q", e.Level, f, reason)
		}
	}
	m := testutil.Scrape(t, rl.api+"/metrics", "")
	if n, _ := m.Value("socketwarp_listener_handshake_refusals_total", "reason", label); n < 1 {
		t.Errorf("handshake refusals %s = %v, want at least 1", label, n)
	}
}

func TestRefusedCertificateFromAnotherCA(t *testing.T) {
	e, rl := newEnv(t), (*runningListener)(nil)
	rl = e.startListener(e.listenerConfig())
	other := newEnv(t) // another CA issues the connector's certificate
	cfg := other.connectorConfig("swc-1", rl.quicPort())
	cfg.CACertPath = e.pki.CAPath // it does trust the listener
	rc := e.startConnector(cfg)
	testutil.Eventually(t, "connector logs the refusal", func() bool {
		return testutil.Logged(rc.logs, "listener refused this connector", "reason", "TLS handshake failed")
	})
	if rl.Connected("swc-1") {
		t.Fatal("a certificate from another CA was bound")
	}
	wantRefusalLogged(t, rl, "unknown_authority", "certificate signed by unknown authority")
}

func TestConnectorRejectsServerNameMismatch(t *testing.T) {
	e := newEnv(t)
	rl := e.startListener(e.listenerConfig())
	cfg := e.connectorConfig("swc-1", rl.quicPort())
	cfg.ServerName = "not-the-listener.example"
	rc := e.startConnector(cfg)
	testutil.Eventually(t, "connector rejects the listener's certificate", func() bool {
		return testutil.Logged(rc.logs, "listener certificate rejected", "reason", "not-the-listener.example")
	})
	if rl.Connected("swc-1") {
		t.Fatal("connector bound despite a server name mismatch")
	}
	// The connector refused: the listener has nothing to explain.
	if n := rl.logs.FilterMessage("connector refused").Len(); n != 0 {
		t.Errorf("listener logged %d refusals of a connector that refused it", n)
	}
}

func TestServerAddressDialledNameVerified(t *testing.T) {
	// ServerAddress is an IP; the certificate is still checked for "localhost".
	_, rl, _ := setup(t, "swc-1")
	port := rl.open(t, "swc-1", testutil.EchoServer(t))
	if got := roundTrip(t, dialPort(t, port), []byte("ok")); string(got) != "ok" {
		t.Fatalf("got %q", got)
	}
}

// An expired certificate and one without the clientAuth usage are refused
// in the handshake, each explained in the listener's log and counted.
func TestRefusedExpiredOrWrongUsage(t *testing.T) {
	for _, tc := range []struct {
		name, label, reason string
		opts                pki.LeafOptions
	}{
		{"expired", "expired", "certificate has expired", pki.LeafOptions{CommonName: "swc-1", Usage: pki.Client,
			NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}},
		{"serverAuth only", "bad_usage", "incompatible key usage", pki.LeafOptions{CommonName: "swc-1", Usage: pki.Server}},
		{"no extended key usage", "bad_usage", "extended key usage clientAuth is missing (has none)", pki.LeafOptions{CommonName: "swc-1", Usage: pki.NoEKU}},
		{"anyExtendedKeyUsage", "bad_usage", "extended key usage clientAuth is missing (has anyExtendedKeyUsage)",
			pki.LeafOptions{CommonName: "swc-1", Usage: pki.AnyEKU}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			rl := e.startListener(e.listenerConfig())
			cfg := e.connectorConfig("swc-1", rl.quicPort())
			cfg.ClientCertPath, cfg.ClientKeyPath = e.pki.Issue(t, "bad-client", tc.opts)
			e.startConnector(cfg)
			wantRefusalLogged(t, rl, tc.label, tc.reason)
			if rl.Connected("swc-1") {
				t.Fatal("bound")
			}
		})
	}
}

// A certificate whose CN is no usable UID (three spaces: the API could
// never open a port for it) is refused when it connects, with the reason,
// rather than bound to a UID nobody can name.
func TestRefusedBlankCommonName(t *testing.T) {
	e := newEnv(t)
	rl := e.startListener(e.listenerConfig())
	cfg := e.connectorConfig("swc-1", rl.quicPort())
	cfg.ClientCertPath, cfg.ClientKeyPath = e.pki.Issue(t, "blank-cn", pki.LeafOptions{CommonName: "   ", Usage: pki.Client})
	rc := e.startConnector(cfg)
	wantRefusalLogged(t, rl, "bad_uid", `certificate CN: uid "   " is blank`)
	testutil.Eventually(t, "connector told why", func() bool {
		return testutil.Logged(rc.logs, "listener refused this connector", "reason", `uid "   " is blank`)
	})
	if n := len(rl.Connections()); n != 0 {
		t.Fatalf("%d connectors bound, want none", n)
	}
}
