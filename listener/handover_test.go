package listener

import (
	"context"
	"crypto/tls"
	"testing"

	"github.com/quic-go/quic-go"

	"github.com/socket-warp/socket-warp/shared/testutil"
	"github.com/socket-warp/socket-warp/shared/wire"
)

// dialWith connects to r presenting conf's certificate.
func dialWith(t *testing.T, r *running, conf *tls.Config) *quic.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), safety)
	defer cancel()
	return testutil.QUICDial(t, ctx, r.QUICAddrs()[0], conf, &quic.Config{MaxIncomingUniStreams: -1})
}

func fingerprint(conf *tls.Config) string {
	return wire.CertFingerprint(conf.Certificates[0].Certificate[0])
}

// TestHandOverToTheAnnouncedCertificate: the bound connection answers the
// probe with "handing over" and names a certificate; a newcomer presenting
// exactly that one takes its place. The old connection is told, gets no new
// tunnel, keeps the one it carries, and ends when its successor does.
func TestHandOverToTheAnnouncedCertificate(t *testing.T) {
	f := newFiles(t)
	r := run(t, probeConfig(f))
	oldTLS, newTLS := f.pki.ClientTLS(t, "swc-1"), f.pki.ClientTLS(t, "swc-1")
	old := dialWith(t, r, oldTLS)
	oldFC := playHandingOver(t, old, fingerprint(newTLS))
	testutil.Eventually(t, "first connection bound", func() bool { return r.Connected("swc-1") })
	port := r.openPort(t, "swc-1")
	inFlight := dial(t, port)
	echoVia(t, inFlight, "before")

	fresh := dialWith(t, r, newTLS)
	freshFC := playConnector(t, fresh, wire.VerdictOK)
	testutil.Eventually(t, "old connection told of the hand-over", func() bool { return oldFC.notices.Load() == 1 })
	if r.HandOvers() != 1 {
		t.Fatalf("%d hand-overs counted, want 1", r.HandOvers())
	}
	if s := r.sessions.Holder("swc-1"); s == nil || serial(s) != newTLS.Certificates[0].Leaf.SerialNumber.Text(16) {
		t.Error("the announced certificate is not the one bound")
	}
	expectAlive(t, old)
	echoVia(t, inFlight, "the old connection still carries its tunnel")
	echoVia(t, dial(t, port), "a new client goes to the successor")
	if oldFC.tunnels.Load() != 1 || freshFC.tunnels.Load() != 1 {
		t.Fatalf("tunnels served: old %d, new %d; want 1 each", oldFC.tunnels.Load(), freshFC.tunnels.Load())
	}

	// No longer re-verified itself, the old connection lives on the
	// authority of its successor.
	fresh.CloseWithError(wire.CodeNoError, "")
	testutil.ClosedByPeer(t, old, wire.CodeReplaced)
}

// TestHandOverOnlyToTheAnnouncedCertificate: while the bound connection
// hands over, a newcomer with any other certificate — another one of the
// same UID, or the bound one itself — is refused as a duplicate, and so is
// a newcomer with the bound certificate when that is the one announced.
func TestHandOverOnlyToTheAnnouncedCertificate(t *testing.T) {
	f := newFiles(t)
	r := run(t, probeConfig(f))
	oldTLS, announced, other := f.pki.ClientTLS(t, "swc-1"), f.pki.ClientTLS(t, "swc-1"), f.pki.ClientTLS(t, "swc-1")
	old := dialWith(t, r, oldTLS)
	oldFC := playHandingOver(t, old, fingerprint(announced))
	testutil.Eventually(t, "first connection bound", func() bool { return r.Connected("swc-1") })

	for _, conf := range []*tls.Config{other, oldTLS} {
		dup := dialWith(t, r, conf)
		playConnector(t, dup, wire.VerdictOK)
		testutil.ClosedByPeer(t, dup, wire.CodeDuplicateUID)
	}
	if r.HandOvers() != 0 || oldFC.notices.Load() != 0 {
		t.Fatalf("%d hand-overs, %d notices after duplicates; want none", r.HandOvers(), oldFC.notices.Load())
	}
	// Each refused after the bound connector answered the probe.
	if p, n := oldFC.probes.Load(), metricValue(t, r.Listener, "socketwarp_listener_handshake_refusals_total", "reason", reasonDuplicateUID); p != 2 || n != 2 {
		t.Errorf("%d probes answered, %v duplicate refusals; want 2 each", p, n)
	}
	expectAlive(t, old)

	// Announcing its own certificate hands over to nobody.
	own := fingerprint(oldTLS)
	oldFC.probeReason.Store(&own)
	dup := dialWith(t, r, oldTLS)
	playConnector(t, dup, wire.VerdictOK)
	testutil.ClosedByPeer(t, dup, wire.CodeDuplicateUID)

	successor := fingerprint(announced)
	oldFC.probeReason.Store(&successor)
	playConnector(t, dialWith(t, r, announced), wire.VerdictOK)
	testutil.Eventually(t, "the announced certificate taken", func() bool { return r.HandOvers() == 1 })
}

// TestHandOverAuthorityPassesOn: two hand-overs in a row (A to B, B to C)
// while A still carries a tunnel. B's end after its own drain does not end
// A: the authority passed on to C, and A ends with C.
func TestHandOverAuthorityPassesOn(t *testing.T) {
	f := newFiles(t)
	r := run(t, probeConfig(f))
	aTLS, bTLS, cTLS := f.pki.ClientTLS(t, "swc-1"), f.pki.ClientTLS(t, "swc-1"), f.pki.ClientTLS(t, "swc-1")
	a := dialWith(t, r, aTLS)
	aFC := playHandingOver(t, a, fingerprint(bTLS))
	testutil.Eventually(t, "A bound", func() bool { return r.Connected("swc-1") })
	inFlight := dial(t, r.openPort(t, "swc-1"))
	echoVia(t, inFlight, "on A")

	b := dialWith(t, r, bTLS)
	bFC := playHandingOver(t, b, fingerprint(cTLS))
	testutil.Eventually(t, "A handed over to B", func() bool { return aFC.notices.Load() == 1 })
	bEnd := r.sessions.Holder("swc-1").Conn.Context()
	c := dialWith(t, r, cTLS)
	playConnector(t, c, wire.VerdictOK)
	testutil.Eventually(t, "B handed over to C", func() bool { return bFC.notices.Load() == 1 })

	b.CloseWithError(wire.CodeNoError, "drained")
	ended(t, bEnd) // the listener saw B's end
	echoVia(t, inFlight, "A still carries its tunnel")
	expectAlive(t, a)

	c.CloseWithError(wire.CodeNoError, "")
	testutil.ClosedByPeer(t, a, wire.CodeReplaced)
}
