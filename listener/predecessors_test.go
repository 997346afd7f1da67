package listener

import (
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/socket-warp/socket-warp/listener/registry"
	"github.com/socket-warp/socket-warp/shared/logging"
	"github.com/socket-warp/socket-warp/shared/testutil"
	"github.com/socket-warp/socket-warp/shared/wire"
)

// boundTo reports whether conn is the connection bound to uid.
func (r *running) boundTo(uid string, conn *quic.Conn) bool {
	s := r.sessions.Holder(uid)
	return s != nil && s.Remote == conn.LocalAddr().String()
}

// expectPredecessorsBounded checks, after conns took the UID one after the
// other, that the listener closed all but the bound one and the newest
// registry.MaxPredecessors before it as replaced, counted them, and logged the lines
// each of them caused through the sampler.
func expectPredecessorsBounded(t *testing.T, r *running, conns []*quic.Conn, elapsed time.Duration) {
	t.Helper()
	n := len(conns)
	surplus := n - 1 - registry.MaxPredecessors
	for i, c := range conns {
		if i < surplus {
			testutil.ClosedByPeer(t, c, wire.CodeReplaced, "too many")
		} else {
			expectAlive(t, c)
		}
	}
	v, _ := testutil.Gather(t, r.Metrics()).Value("socketwarp_listener_predecessors_closed_total")
	if int(v) != surplus {
		t.Fatalf("%v surplus connections counted, want %d", v, surplus)
	}
	// Per second the loop spans, logging.Flood lets FloodFirst lines of a
	// message through, then one in FloodThereafter; the first connection's
	// own line is not sampled.
	seconds := int(elapsed/time.Second) + 2
	bound := logging.FloodFirst*seconds + n/logging.FloodThereafter + 2
	for _, msg := range []string{"connector connected", "draining connection replaced",
		"connector handed over to a new connection", "connector disconnected"} {
		if got := len(r.logs.FilterMessage(msg).All()); got > bound {
			t.Errorf("%d connections of one UID in %v logged %q %d times, want at most %d", n, elapsed, msg, got, bound)
		}
	}
}

// TestDrainingConnectionsPerUIDBounded: whoever holds certificates of a UID
// connects again and again, each connection answering the probe with "going
// away" and never closing. Each newcomer takes the UID at once; beyond the
// newest registry.MaxPredecessors, the connections left to drain are closed.
func TestDrainingConnectionsPerUIDBounded(t *testing.T) {
	f := newFiles(t)
	r := run(t, f.config())
	const n = 60
	conns := make([]*quic.Conn, n)
	start := time.Now()
	for i := range conns {
		conns[i] = connectorConn(t, f, r.Listener, "swc-1")
		playConnector(t, conns[i], wire.VerdictGoingAway)
		testutil.Eventually(t, fmt.Sprintf("connection %d bound", i), func() bool { return r.boundTo("swc-1", conns[i]) })
	}
	expectPredecessorsBounded(t, r, conns, time.Since(start))
	// The bound connection still serves.
	echoVia(t, dial(t, r.openPort(t, "swc-1")), "through the newest")
}

// TestHandOverLoopBounded: two valid certificates of a UID are enough to
// hand over in a loop (C1 to C2 to C1 ...): each connection names the other
// certificate as its successor. Beyond the newest registry.MaxPredecessors, the
// handed-over connections are closed.
func TestHandOverLoopBounded(t *testing.T) {
	f := newFiles(t)
	r := run(t, f.config())
	certs := [2]*tls.Config{f.pki.ClientTLS(t, "swc-1"), f.pki.ClientTLS(t, "swc-1")}
	const n = 60
	conns := make([]*quic.Conn, n)
	start := time.Now()
	for i := range conns {
		conns[i] = dialWith(t, r, certs[i%2])
		playHandingOver(t, conns[i], fingerprint(certs[(i+1)%2]))
		testutil.Eventually(t, fmt.Sprintf("connection %d bound", i), func() bool { return r.boundTo("swc-1", conns[i]) })
	}
	if r.HandOvers() != n-1 {
		t.Fatalf("%d hand-overs, want %d", r.HandOvers(), n-1)
	}
	expectPredecessorsBounded(t, r, conns, time.Since(start))
}
