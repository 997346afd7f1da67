package testutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/socket-warp/socket-warp/shared/tlsutil"
	"github.com/socket-warp/socket-warp/shared/wire"
)

// Pool loads the CA certificate as the daemons do.
func (p *PKI) Pool(t testing.TB) *x509.CertPool {
	t.Helper()
	pool, err := tlsutil.LoadCertPool(p.CAPath)
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

func loadKeyPair(t testing.TB, certPath, keyPath string) tls.Certificate {
	t.Helper()
	cert, err := tlsutil.LoadKeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// ServerTLS is the listener's TLS configuration, with a fresh ServerCert
// loaded from its files.
func (p *PKI) ServerTLS(t testing.TB) *tls.Config {
	t.Helper()
	certPath, keyPath := p.ServerCert(t)
	return tlsutil.ServerConfig(loadKeyPair(t, certPath, keyPath), p.Pool(t))
}

// ClientTLS is a connector's TLS configuration, with a fresh ClientCert for
// uid loaded from its files, that expects the listener as "localhost".
func (p *PKI) ClientTLS(t testing.TB, uid string) *tls.Config {
	t.Helper()
	certPath, keyPath := p.ClientCert(t, uid)
	return tlsutil.ClientConfig(loadKeyPair(t, certPath, keyPath), p.Pool(t), "localhost")
}

// QUICServer listens for QUIC on 127.0.0.1 on a transport of its own, so
// that cleanup, which closes it, ends every connection and goroutine it
// started. It returns the listener and its UDP port.
func QUICServer(t testing.TB, tlsConf *tls.Config, quicConf *quic.Config) (*quic.Listener, int) {
	t.Helper()
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: udp}
	ln, err := tr.Listen(tlsConf, quicConf)
	if err != nil {
		tr.Close()
		udp.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ln.Close()
		tr.Close()
		udp.Close()
	})
	return ln, udp.LocalAddr().(*net.UDPAddr).Port
}

// QUICDial connects to addr from 127.0.0.1 on a transport of its own, and
// closes the connection (with wire.CodeNoError) and the transport at cleanup.
// ctx bounds the handshake.
func QUICDial(t testing.TB, ctx context.Context, addr net.Addr, tlsConf *tls.Config, quicConf *quic.Config) *quic.Conn {
	t.Helper()
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: udp}
	t.Cleanup(func() {
		tr.Close()
		udp.Close()
	})
	conn, err := tr.Dial(ctx, addr, tlsConf, quicConf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(wire.CodeNoError, "") })
	return conn
}

// ClosedByPeer waits for conn to end and fails the test unless the peer
// closed it with code and a reason that contains each of reason.
func ClosedByPeer(t testing.TB, conn *quic.Conn, code quic.ApplicationErrorCode, reason ...string) {
	t.Helper()
	select {
	case <-conn.Context().Done():
	case <-time.After(eventuallyLimit):
		t.Fatalf("connection still up, want the peer to close it with %s", wire.CodeString(uint64(code)))
	}
	var app *quic.ApplicationError
	if err := context.Cause(conn.Context()); !errors.As(err, &app) || !app.Remote || app.ErrorCode != code {
		t.Fatalf("connection ended with %v, want the peer's %s", err, wire.CodeString(uint64(code)))
	}
	for _, want := range reason {
		if !strings.Contains(app.ErrorMessage, want) {
			t.Fatalf("connection closed with %s (%q), want a reason naming %q", wire.CodeString(uint64(code)), app.ErrorMessage, want)
		}
	}
}
