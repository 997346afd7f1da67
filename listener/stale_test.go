package listener

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"go.uber.org/zap/zaptest/observer"

	"github.com/socket-warp/socket-warp/listener/port"
	"github.com/socket-warp/socket-warp/shared/logging"
	"github.com/socket-warp/socket-warp/shared/testutil"
	"github.com/socket-warp/socket-warp/shared/wire"
)

// running is a Listener whose Run the test controls.
type running struct {
	*Listener
	logs   *observer.ObservedLogs
	cancel context.CancelFunc
	done   chan error
}

func run(t *testing.T, cfg Config) *running {
	t.Helper()
	log, logs := testutil.Logger(t, "listener")
	l, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Listener: l, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		r.wait(t)
	})
	return r
}

// wait returns once Run has; calling it again is fine.
func (r *running) wait(t *testing.T) {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(safety):
		t.Fatal("Run did not return")
	}
}

// fakeConnector plays a connector on conn: a probe gets probeVerdict (with
// probeReason), a hand-over notice an ok, a tunnel an ok and an echo of its
// bytes. It stops when conn ends.
type fakeConnector struct {
	conn                     *quic.Conn
	probeVerdict             wire.Verdict
	probeReason              atomic.Pointer[string] // the test may change it
	tunnels, probes, notices atomic.Int64           // served
}

func playConnector(t *testing.T, conn *quic.Conn, probeVerdict wire.Verdict) *fakeConnector {
	return play(t, conn, probeVerdict, "as told by the test")
}

// playHandingOver plays a connector that is moving to a new connection
// presenting the certificate whose wire.CertFingerprint is successor.
func playHandingOver(t *testing.T, conn *quic.Conn, successor string) *fakeConnector {
	return play(t, conn, wire.VerdictHandingOver, successor)
}

func play(t *testing.T, conn *quic.Conn, probeVerdict wire.Verdict, probeReason string) *fakeConnector {
	fc := &fakeConnector{conn: conn, probeVerdict: probeVerdict}
	fc.probeReason.Store(&probeReason)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			st, err := conn.AcceptStream(context.Background())
			if err != nil {
				return
			}
			wg.Go(func() { fc.serve(st) })
		}
	})
	t.Cleanup(func() {
		conn.CloseWithError(wire.CodeNoError, "")
		wg.Wait()
	})
	return fc
}

func (fc *fakeConnector) serve(st *quic.Stream) {
	defer st.CancelRead(wire.StreamCodeAborted)
	hdr, err := wire.ReadHeader(st)
	if err != nil {
		st.CancelWrite(wire.StreamCodeRefused)
		return
	}
	if hdr.Probe || hdr.HandedOver {
		v, reason := fc.probeVerdict, *fc.probeReason.Load()
		if hdr.Probe {
			fc.probes.Add(1)
		} else {
			v, reason = wire.VerdictOK, ""
			fc.notices.Add(1)
		}
		st.Write(wire.AppendVerdict(nil, v, reason))
		st.Close()
		io.Copy(io.Discard, st)
		return
	}
	fc.tunnels.Add(1)
	st.Write(wire.AppendVerdict(nil, wire.VerdictOK, ""))
	if _, err := io.Copy(st, st); err != nil {
		st.CancelWrite(wire.StreamCodeAborted)
		return
	}
	st.Close()
}

// ended waits for ctx, the context of a connection on the listener's side,
// to end.
func ended(t *testing.T, ctx context.Context) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(safety):
		t.Fatal("the connection did not end on the listener's side")
	}
}

func expectAlive(t *testing.T, conn *quic.Conn) {
	t.Helper()
	if err := context.Cause(conn.Context()); err != nil {
		t.Fatalf("connection ended: %v", err)
	}
}

func (r *running) openPort(t *testing.T, uid string) int {
	t.Helper()
	n := testutil.FreePort(t)
	if err := r.OpenPort(context.Background(), port.Spec{UID: uid, Port: n, ConnectAddress: "echo.internal", ConnectPort: 7}); err != nil {
		t.Fatal(err)
	}
	return n
}

func dial(t *testing.T, port int) *net.TCPConn {
	t.Helper()
	c, err := net.DialTCP("tcp", nil, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(safety))
	return c
}

// echoVia sends b through a tunnel and reads it back.
func echoVia(t *testing.T, c *net.TCPConn, b string) {
	t.Helper()
	if _, err := c.Write([]byte(b)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(b))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != b {
		t.Fatalf("echo: %q, %v; want %q", got, err, b)
	}
}

func probeConfig(f files) Config {
	cfg := f.config()
	cfg.ProbeTimeout = 300 * time.Millisecond
	return cfg
}

// TestStaleConnectionReplaced: the bound connection of swc-1 no longer
// answers (its process hangs, or its host and packets vanished). A newcomer
// with the same UID probes it, closes it as replaced and takes its place;
// the old one's cleanup does not unbind the newcomer.
func TestStaleConnectionReplaced(t *testing.T) {
	f := newFiles(t)
	r := run(t, probeConfig(f))
	stale := connectorConn(t, f, r.Listener, "swc-1") // accepts no stream: never answers
	testutil.Eventually(t, "first connection bound", func() bool { return r.boundTo("swc-1", stale) })
	staleEnd := r.sessions.Holder("swc-1").Conn.Context()

	fresh := connectorConn(t, f, r.Listener, "swc-1")
	fc := playConnector(t, fresh, wire.VerdictOK)
	testutil.ClosedByPeer(t, stale, wire.CodeReplaced,
		"replaced by a new connection from "+fresh.LocalAddr().String(), "no answer to a probe within 300ms")
	testutil.Eventually(t, "newcomer bound", func() bool { return r.boundTo("swc-1", fresh) })
	// The stale session's cleanup runs once its connection ended on the
	// listener's side...
	ended(t, staleEnd)
	// ...and the newcomer stays the one bound.
	expectAlive(t, fresh)
	echoVia(t, dial(t, r.openPort(t, "swc-1")), "through the newcomer")
	if fc.tunnels.Load() != 1 || !r.boundTo("swc-1", fresh) {
		t.Fatalf("the newcomer served %d tunnels (want 1), bound: %v", fc.tunnels.Load(), r.boundTo("swc-1", fresh))
	}
}

// TestLiveConnectionKeepsUID: a bound connector that answers the probe
// keeps its UID and the newcomer is refused — also when it answers as a
// connector older than the probe does, with "bad header".
func TestLiveConnectionKeepsUID(t *testing.T) {
	for _, v := range []wire.Verdict{wire.VerdictOK, wire.VerdictBadHeader} {
		t.Run(v.String(), func(t *testing.T) {
			f := newFiles(t)
			r := run(t, probeConfig(f))
			first := connectorConn(t, f, r.Listener, "swc-1")
			fc := playConnector(t, first, v)
			testutil.Eventually(t, "first connection bound", func() bool { return r.Connected("swc-1") })

			second := connectorConn(t, f, r.Listener, "swc-1")
			testutil.ClosedByPeer(t, second, wire.CodeDuplicateUID)
			if n := fc.probes.Load(); n != 1 {
				t.Errorf("the bound connector answered %d probes, want 1", n)
			}
			if n := metricValue(t, r.Listener, "socketwarp_listener_handshake_refusals_total", "reason", reasonDuplicateUID); n != 1 {
				t.Errorf("%v duplicate refusals counted, want 1", n)
			}
			if !r.boundTo("swc-1", first) {
				t.Error("a live connection was replaced")
			}
			expectAlive(t, first)
			echoVia(t, dial(t, r.openPort(t, "swc-1")), "through the first")
			if fc.tunnels.Load() != 1 {
				t.Fatalf("the first connector served %d tunnels, want 1", fc.tunnels.Load())
			}
		})
	}
}

// TestDrainingConnectionReplacedWithoutClose: the bound connector answers
// the probe with "going away" (it drains before it exits). The newcomer
// takes its place at once, the old connection is left to finish its
// tunnels, and its end later does not unbind the newcomer.
func TestDrainingConnectionReplacedWithoutClose(t *testing.T) {
	f := newFiles(t)
	r := run(t, probeConfig(f))
	old := connectorConn(t, f, r.Listener, "swc-1")
	oldFC := playConnector(t, old, wire.VerdictGoingAway)
	testutil.Eventually(t, "first connection bound", func() bool { return r.boundTo("swc-1", old) })
	oldEnd := r.sessions.Holder("swc-1").Conn.Context()
	port := r.openPort(t, "swc-1")
	inFlight := dial(t, port)
	echoVia(t, inFlight, "before")

	fresh := connectorConn(t, f, r.Listener, "swc-1")
	freshFC := playConnector(t, fresh, wire.VerdictOK)
	testutil.Eventually(t, "replacement counted", func() bool {
		return metricValue(t, r.Listener, "socketwarp_listener_connector_drain_replacements_total") == 1
	})
	if !r.boundTo("swc-1", fresh) {
		t.Fatal("the newcomer is not the one bound")
	}
	expectAlive(t, old)
	echoVia(t, inFlight, "the old connection still carries its tunnel")
	echoVia(t, dial(t, port), "a new client goes to the newcomer")
	if oldFC.tunnels.Load() != 1 || freshFC.tunnels.Load() != 1 {
		t.Fatalf("tunnels served: old %d, new %d; want 1 each", oldFC.tunnels.Load(), freshFC.tunnels.Load())
	}

	inFlight.Close()
	old.CloseWithError(wire.CodeGoingAway, "connector shutting down")
	ended(t, oldEnd) // its session's cleanup follows
	expectAlive(t, fresh)
	echoVia(t, dial(t, port), "still through the newcomer")
	if freshFC.tunnels.Load() != 2 || !r.boundTo("swc-1", fresh) {
		t.Fatalf("the newcomer served %d tunnels (want 2), bound: %v", freshFC.tunnels.Load(), r.boundTo("swc-1", fresh))
	}
}

// TestNewcomersRaceForStaleUID: two newcomers arrive while the bound
// connection is stale. Exactly one takes its place; the other, probing the
// winner, is refused as a duplicate.
func TestNewcomersRaceForStaleUID(t *testing.T) {
	f := newFiles(t)
	r := run(t, probeConfig(f))
	stale := connectorConn(t, f, r.Listener, "swc-1")
	testutil.Eventually(t, "first connection bound", func() bool { return r.Connected("swc-1") })

	a := connectorConn(t, f, r.Listener, "swc-1")
	playConnector(t, a, wire.VerdictOK)
	b := connectorConn(t, f, r.Listener, "swc-1")
	playConnector(t, b, wire.VerdictOK)
	testutil.ClosedByPeer(t, stale, wire.CodeReplaced)

	var loser, winner *quic.Conn
	select {
	case <-a.Context().Done():
		loser, winner = a, b
	case <-b.Context().Done():
		loser, winner = b, a
	case <-time.After(safety):
		t.Fatal("both newcomers still connected")
	}
	testutil.ClosedByPeer(t, loser, wire.CodeDuplicateUID)
	expectAlive(t, winner)
	if !r.boundTo("swc-1", winner) {
		t.Fatal("the winner is not the one bound")
	}
	if n := metricValue(t, r.Listener, "socketwarp_listener_handshake_refusals_total", "reason", reasonDuplicateUID); n != 1 {
		t.Fatalf("%v duplicate refusals counted, want 1 (the loser)", n)
	}
	echoVia(t, dial(t, r.openPort(t, "swc-1")), "through the winner")
}

// TestDuplicateRefusalsSampled: a holder of a valid certificate of a UID
// that is connected and answers can connect again as often as it likes;
// each newcomer is refused as a duplicate and counted, and the log keeps a
// sample of those refusals, as of every other "connector refused".
func TestDuplicateRefusalsSampled(t *testing.T) {
	f := newFiles(t)
	// The default probe timeout: under load, the bound connector must
	// not be taken for stale.
	r := run(t, f.config())
	playConnector(t, connectorConn(t, f, r.Listener, "swc-1"), wire.VerdictOK)
	testutil.Eventually(t, "first connection bound", func() bool { return r.Connected("swc-1") })

	const n, workers = 200, 4
	tlsConf := f.pki.ClientTLS(t, "swc-1")
	ctx, cancel := context.WithTimeout(context.Background(), safety)
	defer cancel()
	// One newcomer: refused as a duplicate, or the error why not.
	duplicate := func() error {
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return err
		}
		tr := &quic.Transport{Conn: udp}
		defer func() {
			tr.Close()
			udp.Close()
		}()
		conn, err := tr.Dial(ctx, r.QUICAddrs()[0], tlsConf, &quic.Config{MaxIncomingUniStreams: -1})
		if err != nil {
			return err
		}
		select {
		case <-conn.Context().Done():
		case <-ctx.Done():
			return ctx.Err()
		}
		var app *quic.ApplicationError
		if err := context.Cause(conn.Context()); !errors.As(err, &app) || app.ErrorCode != wire.CodeDuplicateUID {
			return fmt.Errorf("newcomer ended with %v, want a duplicate refusal", err)
		}
		return nil
	}
	start := time.Now()
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range n / workers {
				if err := duplicate(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	testutil.Eventually(t, "every duplicate counted", func() bool {
		v, _ := testutil.Gather(t, r.Metrics()).Value("socketwarp_listener_handshake_refusals_total", "reason", reasonDuplicateUID)
		return v == n
	})
	// Per second the refusals span, logging.Flood lets FloodFirst through,
	// then one in FloodThereafter.
	seconds := int(elapsed/time.Second) + 2
	bound := logging.FloodFirst*seconds + n/logging.FloodThereafter + 1
	logged := 0
	for _, e := range r.logs.FilterMessage("connector refused").All() {
		if e.ContextMap()["refusal"] == reasonDuplicateUID {
			logged++
		}
	}
	if logged == 0 || logged > bound {
		t.Fatalf("%d duplicate refusals in %v logged %d times, want 1 to %d", n, elapsed, logged, bound)
	}
}
