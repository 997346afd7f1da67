package connector

import (
	"context"
	"crypto/rand"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/socket-warp/socket-warp/shared/testutil"
	"github.com/socket-warp/socket-warp/shared/wire"
)

// crashable plays a listener with a stateless reset key that can crash:
// its socket closes without a CONNECTION_CLOSE, and a new transport with
// the same key takes the same port, knowing nothing of the old connections.
type crashable struct {
	t    *testing.T
	p    *testutil.PKI
	key  quic.StatelessResetKey
	addr *net.UDPAddr
	udp  *net.UDPConn
	tr   *quic.Transport
	ln   *quic.Listener
}

func newCrashable(t *testing.T, p *testutil.PKI) *crashable {
	s := &crashable{t: t, p: p, addr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}}
	rand.Read(s.key[:])
	s.start()
	s.addr = s.udp.LocalAddr().(*net.UDPAddr)
	return s
}

func (s *crashable) start() {
	t := s.t
	udp, err := net.ListenUDP("udp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: udp, StatelessResetKey: &s.key}
	ln, err := tr.Listen(s.p.ServerTLS(t), &quic.Config{MaxIncomingStreams: -1, MaxIncomingUniStreams: -1, EnableDatagrams: true})
	if err != nil {
		t.Fatal(err)
	}
	s.udp, s.tr, s.ln = udp, tr, ln
	t.Cleanup(func() {
		ln.Close()
		tr.Close()
		udp.Close()
	})
}

// crash closes the socket first, so that closing the transport sends nothing.
func (s *crashable) crash() {
	s.udp.Close()
	s.ln.Close()
	s.tr.Close()
}

func (s *crashable) accept() *quic.Conn {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), safety)
	defer cancel()
	conn, err := s.ln.Accept(ctx)
	if err != nil {
		s.t.Fatalf("accept the connector's connection: %v", err)
	}
	s.t.Cleanup(func() { conn.CloseWithError(wire.CodeNoError, "") })
	return conn
}

func (r *running) reconnects(reason string) int64 {
	for i, rr := range reconnectReasons {
		if rr == reason {
			return r.stats.reconnects[i].Load()
		}
	}
	panic("unknown reason " + reason)
}

// TestHeartbeatDrawsStatelessReset: the connector's heartbeats are DATAGRAMs
// of wire.HeartbeatLen bytes; after the listener crashed and came back on
// the same port with the same reset key, the next one is answered with a
// stateless reset and the connector reconnects at once, long before its
// idle timeout (60 s, beyond the test's safety bound).
func TestHeartbeatDrawsStatelessReset(t *testing.T) {
	p := testutil.NewPKI(t)
	srv := newCrashable(t, p)
	cfg := testConfig(t, p, srv.addr.Port)
	cfg.KeepAlive = Duration(100 * time.Millisecond)
	r := start(t, cfg)
	conn := srv.accept()
	ctx, cancel := context.WithTimeout(context.Background(), safety)
	defer cancel()
	beat, err := conn.ReceiveDatagram(ctx)
	if err != nil || len(beat) != wire.HeartbeatLen {
		t.Fatalf("heartbeat: %d bytes, %v; want %d bytes", len(beat), err, wire.HeartbeatLen)
	}

	srv.crash()
	srv.start()
	srv.accept()
	if n := r.reconnects(reconnectReset); n != 1 {
		t.Fatalf("reconnects after a stateless reset: %d, want 1", n)
	}
}

// TestDescribe: the reason a lost connection is logged with names what
// happened in words an operator can act on (docs/troubleshooting.md).
func TestDescribe(t *testing.T) {
	for _, tc := range []struct {
		name    string
		err     error
		dialing bool
		want    string
	}{
		{"stateless reset", &quic.StatelessResetError{}, false, "(stateless reset): it restarted without closing it"},
		{"silence while dialling", &quic.IdleTimeoutError{}, true, "no answer from the listener: is it running, and is UDP allowed out?"},
		{"handshake timeout", &quic.HandshakeTimeoutError{}, false, "no answer from the listener"},
		{"silence on a connection", &quic.IdleTimeoutError{}, false, "no packet from the listener within the idle timeout"},
		{"listener's close", &quic.ApplicationError{Remote: true, ErrorCode: wire.CodeDuplicateUID, ErrorMessage: "uid swc-1 is already connected"},
			false, "listener closed the connection: duplicate uid: uid swc-1 is already connected"},
	} {
		if got := describe(tc.err, tc.dialing); !strings.Contains(got, tc.want) {
			t.Errorf("%s: %q, want it to contain %q", tc.name, got, tc.want)
		}
	}
}
