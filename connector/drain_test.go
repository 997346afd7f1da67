package connector

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/socket-warp/socket-warp/shared/logging"
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

// TestProbeAnswered: a probe is answered "ok" at once and dials nothing.
func TestProbeAnswered(t *testing.T) {
	conn, r := connected(t, nil)
	if v, reason := ask(t, conn, wire.ProbeHeader); v != wire.VerdictOK || reason != "" {
		t.Fatalf("probe verdict %s %q, want ok", v, reason)
	}
	testutil.Eventually(t, "probe logged", func() bool { return len(r.logs.FilterMessage("probe answered").All()) == 1 })
	if n := len(r.logs.FilterMessage("tunnel opened").All()) + len(r.logs.FilterMessage("stream refused").All()); n != 0 {
		t.Fatalf("a probe was taken for a tunnel (%d log lines)", n)
	}
	expectAlive(t, conn)
	roundTrip(t, conn, testutil.EchoServer(t), []byte("still carrying tunnels"))
}

// TestShutdownDrainsTunnels: on shutdown a running tunnel keeps carrying
// data, new streams and probes are refused with "going away", and the
// connection is closed with "going away" once the tunnel has ended.
func TestShutdownDrainsTunnels(t *testing.T) {
	conn, r := connected(t, func(c *Config) { c.DrainTimeout = Duration(safety) })
	st := openTunnel(t, conn)
	echoOnce(t, st, "before")

	r.cancel()
	testutil.Eventually(t, "draining", func() bool { return testutil.Logged(r.logs, "draining", "tunnels", "1") })

	fresh := openStream(t, conn)
	write(t, fresh, header(t, testutil.EchoServer(t)))
	if v, reason := verdict(t, fresh); v != wire.VerdictGoingAway || !strings.Contains(reason, "shutting down") {
		t.Fatalf("a new stream while draining: %s %q, want %s", v, reason, wire.VerdictGoingAway)
	}
	if v, _ := ask(t, conn, wire.ProbeHeader); v != wire.VerdictGoingAway {
		t.Fatalf("a probe while draining: %s, want %s", v, wire.VerdictGoingAway)
	}
	r.expectLog(t, "stream refused", "connector shutting down")

	echoOnce(t, st, "during the drain")
	expectAlive(t, conn)
	st.Close()
	if rest, err := io.ReadAll(st); err != nil || len(rest) != 0 {
		t.Fatalf("end of the tunnel: %q, %v", rest, err)
	}

	expectGoingAway(t, conn)
	waitRun(t, r)
	if len(r.logs.FilterMessage("drained").All()) != 1 || len(r.logs.FilterMessage("drain timeout, closing tunnels").All()) != 0 {
		t.Fatal(`want "drained", not a drain timeout`)
	}
	if !testutil.Logged(r.logs, "tunnel closed", logging.KeyBytesUp, "27") { // "hello" + "before" + "during the drain"
		t.Error("the tunnel's bytes are not all logged")
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
	if !testutil.Logged(r.logs, "drain timeout, closing tunnels", "tunnels", "1") {
		t.Fatal("drain timeout not logged with the tunnel count")
	}
	if _, err := io.ReadAll(st); err == nil {
		t.Fatal("the tunnel ended cleanly, want it cut")
	}
}

// TestShutdownWithoutTunnels: nothing to drain, the connection closes at once.
func TestShutdownWithoutTunnels(t *testing.T) {
	conn, r := connected(t, func(c *Config) { c.DrainTimeout = Duration(safety) })
	roundTrip(t, conn, testutil.EchoServer(t), []byte("done before the shutdown"))
	r.cancel()
	expectGoingAway(t, conn)
	waitRun(t, r)
	if len(r.logs.FilterMessage("draining").All()) != 1 || len(r.logs.FilterMessage("drained").All()) != 1 {
		t.Fatal(`want "draining", then "drained"`)
	}
}
