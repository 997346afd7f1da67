package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

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
}

func TestServerAddressDialledNameVerified(t *testing.T) {
	// ServerAddress is an IP; the certificate is still checked for "localhost".
	_, rl, _ := setup(t, "swc-1")
	port := rl.open(t, "swc-1", testutil.EchoServer(t))
	if got := roundTrip(t, dialPort(t, port), []byte("ok")); string(got) != "ok" {
		t.Fatalf("got %q", got)
	}
}
