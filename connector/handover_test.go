package connector

import (
	"testing"

	"github.com/quic-go/quic-go"

	"github.com/socket-warp/socket-warp/shared/testutil"
	"github.com/socket-warp/socket-warp/shared/wire"
)

// renewed replaces the connector's certificate and key files with a new
// pair for the same UID, as a renewal or a deployment tool does, and
// returns the connection the connector then makes, from the server's side.
func renewed(t *testing.T, p *testutil.PKI, srv *server) *quic.Conn {
	t.Helper()
	p.ClientCert(t, "swc-1") // testConfig's paths, written anew
	return srv.accept(t)
}

// TestHandOverOnNewCertificate: new certificate files move the connector
// to a new connection presenting them (a notice it did not ask for is
// refused). Until the listener's notice, probes
// on the old connection name that certificate; after it, the old one keeps
// its tunnel and closes, without an error, once the tunnel has ended. The
// new connection serves; nothing reconnects.
func TestHandOverOnNewCertificate(t *testing.T) {
	p := testutil.NewPKI(t)
	srv := newServer(t, p)
	r := start(t, testConfig(t, p, srv.port))
	old := srv.accept(t)
	if v, _ := ask(t, old, wire.ProbeHeader); v != wire.VerdictOK {
		t.Fatalf("probe before any new certificate: %s, want ok", v)
	}
	// Nobody but the connector itself may start a hand-over.
	if v, _ := ask(t, old, wire.HandedOverHeader); v != wire.VerdictBadHeader {
		t.Fatalf("a notice without a hand-over answered %s, want %s", v, wire.VerdictBadHeader)
	}
	tunnel := openTunnel(t, old)

	next := renewed(t, p, srv)
	want := wire.CertFingerprint(next.ConnectionState().TLS.PeerCertificates[0].Raw)
	if v, reason := ask(t, old, wire.ProbeHeader); v != wire.VerdictHandingOver || reason != want {
		t.Fatalf("probe on the old connection during the hand-over: %s %q; want %s naming the new certificate %q",
			v, reason, wire.VerdictHandingOver, want)
	}
	if v, reason := ask(t, old, wire.HandedOverHeader); v != wire.VerdictOK {
		t.Fatalf("hand-over notice answered %s (%s), want ok", v, reason)
	}
	testutil.Eventually(t, "hand-over counted", func() bool {
		return r.metric(t, "socketwarp_connector_handovers_total", "result", "ok") == 1
	})
	// The old connection drains: it keeps its tunnel, and closes only once
	// the tunnel has ended (below).
	echoOnce(t, tunnel, "the old connection still carries its tunnel")
	roundTrip(t, next, testutil.EchoServer(t), []byte("the new connection serves"))
	if n := r.metric(t, "socketwarp_connector_connections"); n != 2 {
		t.Fatalf("%v connections while the old one drains, want 2", n)
	}

	tunnel.Close()
	expectEnd(t, tunnel)
	testutil.ClosedByPeer(t, old, wire.CodeNoError)
	testutil.Eventually(t, "old connection gone", func() bool { return r.metric(t, "socketwarp_connector_connections") == 1 })
	expectAlive(t, next)
	if n := r.metric(t, "socketwarp_connector_reconnects_total", "reason", "lost"); n != 0 {
		t.Fatalf("the old connection's close counted as %v reconnects", n)
	}
}

// TestHandOverRefusedStaysOnOldConnection: the listener refuses the new
// connection as a duplicate (a listener older than hand-overs does). The
// connector stays on the old connection, which answers probes as before.
func TestHandOverRefusedStaysOnOldConnection(t *testing.T) {
	p := testutil.NewPKI(t)
	srv := newServer(t, p)
	r := start(t, testConfig(t, p, srv.port))
	old := srv.accept(t)

	next := renewed(t, p, srv)
	next.CloseWithError(wire.CodeDuplicateUID, "uid swc-1 is already connected from 192.0.2.1:5000")
	testutil.Eventually(t, "failed hand-over counted", func() bool {
		return r.metric(t, "socketwarp_connector_handovers_total", "result", "failed") == 1
	})
	if v, reason := ask(t, old, wire.ProbeHeader); v != wire.VerdictOK {
		t.Fatalf("probe after the refused hand-over: %s (%s), want ok", v, reason)
	}
	roundTrip(t, old, testutil.EchoServer(t), []byte("still the old connection"))
	if n := r.metric(t, "socketwarp_connector_connections"); n != 1 {
		t.Fatalf("%v connections, want the old one only", n)
	}
}
