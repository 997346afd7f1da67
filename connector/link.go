package connector

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go"

	"github.com/socket-warp/socket-warp/shared/udpsock"
	"github.com/socket-warp/socket-warp/shared/wire"
)

// Dial makes one connection attempt from a fresh UDP socket: a new source
// port also means a new NAT mapping, should the old one have gone bad. The
// caller closes the returned transport when done with the connection; that
// ends every goroutine quic-go started for it.
func (c *Connector) Dial(ctx context.Context) (*quic.Conn, *quic.Transport, error) {
	return c.dialListener(ctx, nil)
}

// dialListener is Dial presenting cert; nil: whatever the files hold at
// the handshake.
func (c *Connector) dialListener(ctx context.Context, cert *tls.Certificate) (*quic.Conn, *quic.Transport, error) {
	raddr, err := net.ResolveUDPAddr("udp", c.addr)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", c.addr, err)
	}
	udp, err := udpsock.Listen("", c.log)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", c.addr, err)
	}
	tr := &quic.Transport{Conn: udp}
	// A config per attempt: a rotated CA file applies from the next dial.
	tlsConf := c.certs.Load().ClientConfig(c.cfg.ServerName)
	if cert != nil {
		tlsConf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	conn, err := tr.Dial(ctx, raddr, tlsConf, c.quicConf)
	if err != nil {
		closeTransport(tr)
		return nil, nil, fmt.Errorf("connect to %s: %w", c.addr, err)
	}
	return conn, tr, nil
}

// link is one QUIC connection to the listener, served by a goroutine of its
// own (startLink). There is one, except during a hand-over (keep): then the
// old one finishes its tunnels while the new one takes the new ones.
type link struct {
	conn *quic.Conn
	tr   *quic.Transport
	cert *tls.Certificate // the one it presented
	fp   string           // wire.CertFingerprint of it

	// successor is set while a hand-over from this link is under way: the
	// fingerprint of the new connection's certificate, which probes on this
	// link are answered with (wire.VerdictHandingOver).
	successor  atomic.Pointer[string]
	handedOver chan struct{} // closed when the listener's hand-over notice arrives
	notice     sync.Once

	done chan struct{} // closed once it has ended and its transport is closed
	err  error         // why it ended; read after done
}

// dialLink connects presenting cert, and keeps which certificate that was:
// the files may change between now and the handshake, and a hand-over must
// know what the listener saw.
func (c *Connector) dialLink(ctx context.Context, cert *tls.Certificate) (*link, error) {
	conn, tr, err := c.dialListener(ctx, cert)
	if err != nil {
		return nil, err
	}
	return &link{conn: conn, tr: tr, cert: cert, fp: wire.CertFingerprint(cert.Certificate[0]),
		handedOver: make(chan struct{}), done: make(chan struct{})}, nil
}

// startLink serves lk until it ends, in a goroutine that wg owns.
func (c *Connector) startLink(ctx context.Context, lk *link, wg *sync.WaitGroup) {
	c.stats.connections.Add(1)
	wg.Go(func() {
		defer close(lk.done)
		lk.err = c.serve(ctx, lk)
		closeTransport(lk.tr)
		c.stats.connections.Add(-1)
	})
}

func (lk *link) ended() bool {
	select {
	case <-lk.done:
		return true
	default:
		return false
	}
}

func leafSerial(cert *tls.Certificate) string { return cert.Leaf.SerialNumber.Text(16) }

func closeTransport(tr *quic.Transport) {
	_ = tr.Close()
	_ = tr.Conn.Close()
}
