package connector

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/socket-warp/socket-warp/shared/testutil"
	"github.com/socket-warp/socket-warp/shared/wire"
)

// ask sends what the listener sends on a control stream — hdr is
// wire.ProbeHeader or wire.HandedOverHeader — and returns the connector's
// verdict.
func ask(t *testing.T, conn *quic.Conn, hdr wire.Header) (wire.Verdict, string) {
	t.Helper()
	st := openStream(t, conn)
	b, err := hdr.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	write(t, st, b)
	st.Close()
	v, reason := verdict(t, st)
	expectEnd(t, st)
	return v, reason
}

// echoOnce writes b on an open tunnel and reads it back.
func echoOnce(t *testing.T, st *quic.Stream, b string) {
	t.Helper()
	write(t, st, []byte(b))
	got := make([]byte, len(b))
	if _, err := io.ReadFull(st, got); err != nil || string(got) != b {
		t.Fatalf("echo: %q, %v; want %q", got, err, b)
	}
}

// openTunnel opens a stream to the echo server and checks the verdict.
func openTunnel(t *testing.T, conn *quic.Conn) *quic.Stream {
	t.Helper()
	st := openStream(t, conn)
	// The ok verdict rides with the target's first bytes: an echo of the
	// client's first message.
	write(t, st, append(header(t, testutil.EchoServer(t)), "hello"...))
	if v, reason := verdict(t, st); v != wire.VerdictOK {
		t.Fatalf("verdict %s (%s), want ok", v, reason)
	}
	got := make([]byte, len("hello"))
	if _, err := io.ReadFull(st, got); err != nil || string(got) != "hello" {
		t.Fatalf("first echo: %q, %v", got, err)
	}
	return st
}

// expectGoingAway waits for the connector to close conn with "going away".
func expectGoingAway(t *testing.T, conn *quic.Conn) {
	t.Helper()
	testutil.ClosedByPeer(t, conn, wire.CodeGoingAway)
}

func waitRun(t *testing.T, r *running) {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(safety):
		t.Fatal("Run did not return")
	}
}

// beyondSafety bounds a drain where the test wants it to end by itself:
// no step of a test waits that long, so a drain that ended shows that its
// tunnels ended, not that the bound passed.
const beyondSafety = 10 * safety

// TestProbeAnswered: a probe is answered "ok" at once and dials nothing.
func TestProbeAnswered(t *testing.T) {
	conn, r := connected(t, nil)
	if v, reason := ask(t, conn, wire.ProbeHeader); v != wire.VerdictOK || reason != "" {
		t.Fatalf("probe verdict %s %q, want ok", v, reason)
	}
	// A stream taken for a tunnel is counted, as tunnelled or refused,
	// before its verdict goes out; a probe is neither.
	r.expectStreams(t, nil)
	expectAlive(t, conn)
	roundTrip(t, conn, testutil.EchoServer(t), []byte("still carrying tunnels"))
	r.expectStreams(t, map[string]float64{streamOK: 1})
}

// TestShutdownDrainsTunnels: on shutdown a running tunnel keeps carrying
// data, new streams and probes are refused with "going away", and the
// connection is closed with "going away" once the tunnel has ended.
func TestShutdownDrainsTunnels(t *testing.T) {
	conn, r := connected(t, func(c *Config) { c.DrainTimeout = Duration(beyondSafety) })
	st := openTunnel(t, conn)
	echoOnce(t, st, "before")

	r.cancel()
	// Probes are answered "ok" until the drain starts, "going away" from then on.
	testutil.Eventually(t, "a probe answered going away", func() bool {
		v, _ := ask(t, conn, wire.ProbeHeader)
		return v == wire.VerdictGoingAway
	})

	fresh := openStream(t, conn)
	write(t, fresh, header(t, testutil.EchoServer(t)))
	if v, reason := verdict(t, fresh); v != wire.VerdictGoingAway || !strings.Contains(reason, "shutting down") {
		t.Fatalf("a new stream while draining: %s %q, want %s", v, reason, wire.VerdictGoingAway)
	}
	// The probe and the stream, refused without reading their headers.
	r.expectStreams(t, map[string]float64{streamOK: 1, streamGoingAway: 2})

	echoOnce(t, st, "during the drain")
	expectAlive(t, conn)
	st.Close()
	if rest, err := io.ReadAll(st); err != nil || len(rest) != 0 {
		t.Fatalf("end of the tunnel: %q, %v", rest, err)
	}

	// Closed with the drain bound far away: the drain saw the tunnel end.
	expectGoingAway(t, conn)
	waitRun(t, r)
	// "hello" + "before" + "during the drain", each way: all of it carried.
	for _, dir := range []string{"up", "down"} {
		if n := r.metric(t, "socketwarp_connector_tunnel_bytes_total", "direction", dir); n != 27 {
			t.Errorf("%s: %v bytes tunnelled, want 27", dir, n)
		}
	}
}

// TestShutdownDrainTimeout: a tunnel that does not end is cut when the
// drain timeout passes, and the connection closed with "going away".
func TestShutdownDrainTimeout(t *testing.T) {
	conn, r := connected(t, func(c *Config) { c.DrainTimeout = Duration(50 * time.Millisecond) })
	st := openTunnel(t, conn)
	echoOnce(t, st, "never ends")

	r.cancel()
	expectGoingAway(t, conn)
	waitRun(t, r)
	// What the drain logs at its bound, teardown's tests check.
	if _, err := io.ReadAll(st); err == nil {
		t.Fatal("the tunnel ended cleanly, want it cut")
	}
}

// TestShutdownWithoutTunnels: nothing to drain, the connection closes at once.
func TestShutdownWithoutTunnels(t *testing.T) {
	conn, r := connected(t, func(c *Config) { c.DrainTimeout = Duration(beyondSafety) })
	roundTrip(t, conn, testutil.EchoServer(t), []byte("done before the shutdown"))
	r.cancel()
	// With the bound beyond the test's waits, only a drain that found
	// nothing running lets the close come.
	expectGoingAway(t, conn)
	waitRun(t, r)
}
