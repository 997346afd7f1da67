package connector

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/socket-warp/socket-warp/shared/logging"
	"github.com/socket-warp/socket-warp/shared/testutil"
	"github.com/socket-warp/socket-warp/shared/wire"
)

func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }

// safety bounds every blocking step so that a bug fails a test instead of
// hanging it. No test asserts anything about how long things take.
const safety = 30 * time.Second

// server plays sw-listener: a real QUIC server with the listener's TLS and
// stream settings, on a transport of its own so that closing it ends every
// connection and goroutine it started.
type server struct {
	ln   *quic.Listener
	port int
}

func newServer(t *testing.T, p *testutil.PKI) *server {
	t.Helper()
	ln, port := testutil.QUICServer(t, p.ServerTLS(t), &quic.Config{
		MaxIncomingStreams:    -1,
		MaxIncomingUniStreams: -1,
	})
	return &server{ln: ln, port: port}
}

// accept returns the next connection a connector made.
func (s *server) accept(t *testing.T) *quic.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), safety)
	defer cancel()
	conn, err := s.ln.Accept(ctx)
	if err != nil {
		t.Fatalf("accept the connector's connection: %v", err)
	}
	t.Cleanup(func() { conn.CloseWithError(wire.CodeNoError, "") })
	return conn
}

func testConfig(t *testing.T, p *testutil.PKI, port int) Config {
	t.Helper()
	cert, key := p.ClientCert(t, "swc-1")
	c := Defaults()
	c.ClientCertPath, c.ClientKeyPath, c.CACertPath = cert, key, p.CAPath
	c.ServerName, c.ServerAddress, c.ServicePort = "localhost", "127.0.0.1", port
	c.RetryMin, c.RetryMax = Duration(10*time.Millisecond), Duration(50*time.Millisecond)
	return c
}

type running struct {
	*Connector
	logs   *observer.ObservedLogs
	cancel context.CancelFunc
	done   chan error
}

// start runs a real Connector until the test ends.
func start(t *testing.T, cfg Config) *running {
	t.Helper()
	log, logs := testutil.Logger(t, "connector")
	c, err := New(cfg, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Connector: c, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and waits for it to return; calling it twice is fine.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(safety):
		t.Fatal("Run did not return after its context was cancelled")
		return nil
	}
}

func (r *running) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	v, _ := testutil.Gather(t, r.Metrics()).Value(name, labels...)
	return v
}

// streams is how many streams the connector answered with outcome
// (socketwarp_connector_streams_total). A stream is counted before its
// verdict goes out: once a test has read the verdict, it is counted.
func (r *running) streams(t *testing.T, outcome string) float64 {
	t.Helper()
	return r.metric(t, "socketwarp_connector_streams_total", "outcome", outcome)
}

// expectStreams checks the count of every stream outcome; outcomes not in
// want must be 0.
func (r *running) expectStreams(t *testing.T, want map[string]float64) {
	t.Helper()
	for _, o := range streamOutcomes {
		if got := r.streams(t, o); got != want[o] {
			t.Errorf("streams_total{outcome=%q} = %v, want %v", o, got, want[o])
		}
	}
}

// reconnectsFor is socketwarp_connector_reconnects_total{reason}.
func (r *running) reconnectsFor(t *testing.T, reason string) float64 {
	t.Helper()
	return r.metric(t, "socketwarp_connector_reconnects_total", "reason", reason)
}

// connected starts a server and a connector and returns the server's end of
// the connection the connector made.
func connected(t *testing.T, tweak func(*Config)) (*quic.Conn, *running) {
	t.Helper()
	p := testutil.NewPKI(t)
	srv := newServer(t, p)
	cfg := testConfig(t, p, srv.port)
	if tweak != nil {
		tweak(&cfg)
	}
	r := start(t, cfg)
	return srv.accept(t), r
}

// openStream opens a stream as the listener does. The connector only learns
// of it with its first frame.
func openStream(t *testing.T, conn *quic.Conn) *quic.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), safety)
	defer cancel()
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	st.SetDeadline(time.Now().Add(safety))
	t.Cleanup(func() {
		st.CancelRead(0)
		st.CancelWrite(0)
	})
	return st
}

func header(t *testing.T, target *net.TCPAddr) []byte {
	t.Helper()
	b, err := wire.Header{
		TargetHost: target.IP.String(), TargetPort: uint16(target.Port),
		ClientAddr: "192.0.2.7:40000", OpenedPort: 10022,
	}.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func write(t *testing.T, st *quic.Stream, b []byte) {
	t.Helper()
	if _, err := st.Write(b); err != nil {
		t.Fatalf("write to the stream: %v", err)
	}
}

// abort ends a stream the way the listener does once it has a refusal: it
// resets the client and both directions of the stream.
func abort(st *quic.Stream) {
	st.CancelRead(wire.StreamCodeAborted)
	st.CancelWrite(wire.StreamCodeAborted)
}

func verdict(t *testing.T, st *quic.Stream) (wire.Verdict, string) {
	t.Helper()
	v, reason, err := wire.ReadVerdict(st)
	if err != nil {
		t.Fatalf("no verdict: %v", err)
	}
	return v, reason
}

// expectEnd checks that the connector sent nothing after its verdict and
// ended its side of the stream cleanly.
func expectEnd(t *testing.T, st *quic.Stream) {
	t.Helper()
	rest, err := io.ReadAll(st)
	if err != nil || len(rest) != 0 {
		t.Fatalf("after the verdict: %q, %v; want a clean end of stream", rest, err)
	}
}

// roundTrip sends payload through a new stream to an echo server and checks
// it comes back, which shows the connection still carries tunnels.
func roundTrip(t *testing.T, conn *quic.Conn, echo *net.TCPAddr, payload []byte) {
	t.Helper()
	st := openStream(t, conn)
	// As the listener does: the client's bytes right behind the header.
	// The ok verdict rides with the target's first bytes.
	write(t, st, append(header(t, echo), payload...))
	st.Close()
	if v, reason := verdict(t, st); v != wire.VerdictOK {
		t.Fatalf("verdict %s (%s), want ok", v, reason)
	}
	got, err := io.ReadAll(st)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("echo: %q, %v; want %q", got, err, payload)
	}
}

func expectAlive(t *testing.T, conn *quic.Conn) {
	t.Helper()
	if err := context.Cause(conn.Context()); err != nil {
		t.Fatalf("connection ended: %v", err)
	}
}

func TestMalformedHeaderRefusedConnectionStays(t *testing.T) {
	conn, r := connected(t, nil)
	echo := testutil.EchoServer(t)
	valid := header(t, echo)

	oversized := []byte{wire.ProtocolVersion, 0x01, 0xff, 0xff}
	for _, tc := range []struct {
		name      string
		send      []byte
		fin       bool
		reasonHas string
	}{
		// Client bytes pipelined behind a header the connector cannot read.
		{"bad version", append([]byte{2}, valid[1:]...), false, "unsupported stream header version"},
		{"oversized TLV length", oversized, false, "too long"},
		{"truncated then FIN", valid[:len(valid)-3], true, "unexpected EOF"},
		{"FIN before any byte", nil, true, "EOF"},
		{"missing target port", []byte{wire.ProtocolVersion, 0x01, 0, 1, 'a', 0}, false, "missing target port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := openStream(t, conn)
			if len(tc.send) > 0 {
				write(t, st, tc.send)
			}
			if tc.fin {
				st.Close()
			}
			v, reason := verdict(t, st)
			if v != wire.VerdictBadHeader || !strings.Contains(reason, tc.reasonHas) {
				t.Fatalf("verdict %s %q, want %s naming %q", v, reason, wire.VerdictBadHeader, tc.reasonHas)
			}
			expectEnd(t, st)
			expectAlive(t, conn)
		})
	}
	// Refused, and counted as such: nothing was dialled.
	r.expectStreams(t, map[string]float64{streamBadHeader: 5})
	roundTrip(t, conn, echo, []byte("still carrying tunnels"))
}

// TestBadHeaderPipelinedPayloadDrained: the listener writes the client's
// first bytes behind the header without waiting for the verdict. They are
// read and dropped rather than refused, so the listener's write succeeds and
// it goes on to read the reason. The payload is larger than the stream's
// initial flow-control window, so the write completes only if the connector
// keeps reading after its verdict.
func TestBadHeaderPipelinedPayloadDrained(t *testing.T) {
	conn, _ := connected(t, nil)
	st := openStream(t, conn)
	payload := bytes.Repeat([]byte("x"), 768<<10)
	if _, err := st.Write(append([]byte{9}, payload...)); err != nil {
		t.Fatalf("write behind a bad header: %v, want the connector to drain it", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	v, reason := verdict(t, st)
	if v != wire.VerdictBadHeader || !strings.Contains(reason, "version: 9") {
		t.Fatalf("verdict %s %q, want %s naming version 9", v, reason, wire.VerdictBadHeader)
	}
	expectEnd(t, st)
	expectAlive(t, conn)
}

func TestHeaderTimeout(t *testing.T) {
	conn, r := connected(t, func(c *Config) { c.HeaderTimeout = Duration(300 * time.Millisecond) })
	echo := testutil.EchoServer(t)

	// A stream that never carries a byte reaches the connector only when a
	// later stream does: opening a stream implicitly opens every lower one.
	silent := openStream(t, conn)
	roundTrip(t, conn, echo, []byte("the later stream works"))

	v, reason := verdict(t, silent)
	if v != wire.VerdictBadHeader || !strings.Contains(reason, "deadline") {
		t.Fatalf("verdict %s %q, want %s naming the deadline", v, reason, wire.VerdictBadHeader)
	}
	expectEnd(t, silent)
	abort(silent)

	// The same for a stream that stops in the middle of its header.
	partial := openStream(t, conn)
	write(t, partial, []byte{wire.ProtocolVersion, 0x01})
	v, reason = verdict(t, partial)
	if v != wire.VerdictBadHeader || !strings.Contains(reason, "deadline") {
		t.Fatalf("partial header: verdict %s %q, want %s naming the deadline", v, reason, wire.VerdictBadHeader)
	}
	expectEnd(t, partial)
	abort(partial)

	expectAlive(t, conn)
	roundTrip(t, conn, echo, []byte("and still does"))
	r.expectStreams(t, map[string]float64{streamOK: 2, streamBadHeader: 2})
}

func TestDialFailure(t *testing.T) {
	conn, r := connected(t, nil)
	ln := testutil.Listen(t)
	closed := ln.Addr().(*net.TCPAddr)
	ln.Close()

	st := openStream(t, conn)
	write(t, st, append(header(t, closed), "pipelined"...))
	v, reason := verdict(t, st)
	if v != wire.VerdictDialFailed || !strings.Contains(reason, "connection refused") || !strings.Contains(reason, closed.String()) {
		t.Fatalf("verdict %s %q, want %s naming %s and \"connection refused\"", v, reason, wire.VerdictDialFailed, closed)
	}
	expectEnd(t, st)
	abort(st)
	expectAlive(t, conn)
	r.expectStreams(t, map[string]float64{streamDialFailed: 1})
	if n := r.metric(t, "socketwarp_connector_dial_failures_total", "target", closed.String()); n != 1 {
		t.Fatalf("dial failures of %s: %v, want 1", closed, n)
	}
}

func TestPipelinedPayloadAfterValidHeader(t *testing.T) {
	conn, _ := connected(t, nil)
	echo := testutil.EchoServer(t)
	st := openStream(t, conn)
	payload := []byte("first bytes travel with the header")
	// One write: the header and the client's first bytes arrive together, and
	// the connector must not swallow any of them while reading the header.
	write(t, st, append(header(t, echo), payload...))
	st.Close()
	if v, reason := verdict(t, st); v != wire.VerdictOK || reason != "" {
		t.Fatalf("verdict %s %q, want ok", v, reason)
	}
	got, err := io.ReadAll(st)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("echo: %q, %v; want %q", got, err, payload)
	}
}

func TestCancelClosesWithGoingAway(t *testing.T) {
	// Repeated: the close races the end of the accept loop.
	for i := range 5 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			conn, r := connected(t, nil)
			echo := testutil.EchoServer(t)
			roundTrip(t, conn, echo, []byte("up"))

			if err := r.stop(t); err != nil {
				t.Fatalf("Run returned %v after cancel, want nil", err)
			}
			expectGoingAway(t, conn)
		})
	}
}

func TestRetriesAfterDuplicateUIDRefusal(t *testing.T) {
	p := testutil.NewPKI(t)
	srv := newServer(t, p)
	r := start(t, testConfig(t, p, srv.port))

	first := srv.accept(t)
	first.CloseWithError(wire.CodeDuplicateUID, "uid swc-1 is already connected from 192.0.2.1:5000")

	second := srv.accept(t)
	expectAlive(t, second)
	if n := r.reconnectsFor(t, reconnectRefused); n != 1 {
		t.Fatalf("reconnects after a refusal: %v, want 1", n)
	}
	// The line is the feature: the README's refusal table tells operators
	// that the connector logs the listener's reason, with its code, at error.
	errs := r.logs.FilterLevelExact(zapcore.ErrorLevel)
	if !testutil.Logged(errs, "listener refused this connector", logging.KeyReason, "duplicate uid: uid swc-1 is already connected") {
		t.Error(`no error "listener refused this connector" with the listener's code and reason`)
	}
}

// A listener whose UDP port swallows everything (what a firewall dropping
// UDP looks like from the connector) is reported as such, and retried.
func TestSilentListenerLoggedAsUDPBlocked(t *testing.T) {
	p := testutil.NewPKI(t)
	hole, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hole.Close() })
	cfg := testConfig(t, p, hole.LocalAddr().(*net.UDPAddr).Port)
	cfg.KeepAlive, cfg.IdleTimeout = Duration(100*time.Millisecond), Duration(300*time.Millisecond)
	r := start(t, cfg)
	testutil.Eventually(t, "a second failed attempt", func() bool { return r.reconnectsFor(t, reconnectConnectFailed) >= 2 })
	// The words are the feature: the README's troubleshooting catalogue
	// sends operators who see them to "UDP blocked".
	warnings := r.logs.FilterLevelExact(zapcore.WarnLevel)
	if !testutil.Logged(warnings, "connect failed", logging.KeyReason, "no answer from the listener: is it running, and is UDP allowed out?") {
		t.Error("no connect failure explained as blocked UDP")
	}
}

// allow sets SWC_ALLOW.
func allow(rules string) func(*Config) {
	return func(c *Config) { c.Allow = AllowList{Set: true, Value: rules} }
}

// headerTo is a header naming host as the listener sends it: as text.
func headerTo(t *testing.T, host string, port int) []byte {
	t.Helper()
	b, err := wire.Header{TargetHost: host, TargetPort: uint16(port), ClientAddr: "192.0.2.7:40000", OpenedPort: 10022}.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// relayVia is roundTrip to an echo server named host:port.
func relayVia(t *testing.T, conn *quic.Conn, host string, port int, payload []byte) {
	t.Helper()
	st := openStream(t, conn)
	write(t, st, append(headerTo(t, host, port), payload...))
	if v, reason := verdict(t, st); v != wire.VerdictOK {
		t.Fatalf("%s port %d: verdict %s (%s), want ok", host, port, v, reason)
	}
	st.Close()
	got, err := io.ReadAll(st)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("echo via %s: %q, %v; want %q", host, got, err, payload)
	}
}

// expectForbidden sends a header for host:port with client bytes behind it
// and checks the connector refuses it by policy, names the target and no
// more, and ends the stream cleanly.
func expectForbidden(t *testing.T, conn *quic.Conn, host string, port int) {
	t.Helper()
	st := openStream(t, conn)
	write(t, st, append(headerTo(t, host, port), "pipelined"...))
	v, reason := verdict(t, st)
	want := fmt.Sprintf("target %s is not allowed by SWC_ALLOW", net.JoinHostPort(host, fmt.Sprint(port)))
	if v != wire.VerdictForbidden || reason != want {
		t.Fatalf("%s port %d: verdict %s %q, want %s %q", host, port, v, reason, wire.VerdictForbidden, want)
	}
	expectEnd(t, st)
	abort(st)
	expectAlive(t, conn)
}

// TestPolicyRefusesTargetConnectionStays: the echo server listens on
// 127.0.0.1, so every refused target but the closed port would have been
// reachable: "forbidden" shows the connector did not dial.
func TestPolicyRefusesTargetConnectionStays(t *testing.T) {
	echo := testutil.EchoServer(t)
	ln := testutil.Listen(t)
	closed := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conn, r := connected(t, allow(fmt.Sprintf("127.0.0.1:%d", echo.Port)))

	for _, tc := range []struct {
		name string
		host string
		port int
	}{
		{"port outside the rules", "127.0.0.1", closed},
		{"another loopback address", "127.0.0.2", echo.Port},
		{"IPv4-mapped form of another address", "::ffff:127.0.0.2", echo.Port},
		{"unspecified address, which reaches the local host", "0.0.0.0", echo.Port},
		{"IPv6 unspecified address", "::", echo.Port},
		{"short IPv4 form", "127.1", echo.Port},
		{"hex IPv4 form", "0x7f.0.0.1", echo.Port},
		{"name on a port no rule covers", "localhost", closed},
	} {
		t.Run(tc.name, func(t *testing.T) { expectForbidden(t, conn, tc.host, tc.port) })
	}
	// "forbidden" for each: refused by the policy, none dialled.
	r.expectStreams(t, map[string]float64{streamForbidden: 8})

	// The connection still carries what the policy allows: the address, its
	// IPv4-mapped form, and a name resolving to it.
	roundTrip(t, conn, echo, []byte("allowed"))
	relayVia(t, conn, "::ffff:127.0.0.1", echo.Port, []byte("mapped"))
	relayVia(t, conn, "localhost", echo.Port, []byte("resolved, then checked"))
}

func TestPolicyHostnameRule(t *testing.T) {
	echo := testutil.EchoServer(t)
	ln := testutil.Listen(t)
	closed := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conn, r := connected(t, allow(fmt.Sprintf("localhost:%d", echo.Port)))

	relayVia(t, conn, "localhost", echo.Port, []byte("by name"))
	relayVia(t, conn, "LocalHost", echo.Port, []byte("any case"))
	// A hostname rule allows the name, not the addresses it resolves to.
	expectForbidden(t, conn, "127.0.0.1", echo.Port)
	expectForbidden(t, conn, "localhost", closed)
	expectForbidden(t, conn, "localhost.", echo.Port)
	expectForbidden(t, conn, "xlocalhost", echo.Port)
	r.expectStreams(t, map[string]float64{streamOK: 2, streamForbidden: 4})
}

// TestPolicyNameResolvingToDisallowedAddress: with address rules only, a
// name is looked up, and refused when what it resolves to is not allowed.
// The listener is not told what it resolved to; the connector's log is.
func TestPolicyNameResolvingToDisallowedAddress(t *testing.T) {
	echo := testutil.EchoServer(t)
	conn, r := connected(t, allow(fmt.Sprintf("192.0.2.0/24:%d,[2001:db8::/32]:%d", echo.Port, echo.Port)))
	expectForbidden(t, conn, "localhost", echo.Port)
	// The line is the feature: the README says the connector logs why, with
	// the target, and it is the only place that says what the name resolved
	// to. The stream was counted before its verdict, but logged after.
	target := fmt.Sprintf("localhost:%d", echo.Port)
	testutil.Eventually(t, "the refusal of "+target+" logged with what the name resolved to", func() bool {
		warnings := r.logs.FilterLevelExact(zapcore.WarnLevel)
		return testutil.Logged(warnings.FilterField(logging.Target(target)), "stream refused", logging.KeyReason, "localhost resolves to 127.0.0.1")
	})
}

func TestPolicyNoneRefusesEverything(t *testing.T) {
	echo := testutil.EchoServer(t)
	conn, _ := connected(t, allow("none"))
	expectForbidden(t, conn, "127.0.0.1", echo.Port)
	expectForbidden(t, conn, "localhost", echo.Port)
}

func TestPolicyLoggedOnceAtStart(t *testing.T) {
	p := testutil.NewPKI(t)
	const unset = "SWC_ALLOW is not set: any target the listener names can be dialled"

	log, logs := testutil.Logger(t, "connector")
	if _, err := New(testConfig(t, p, 1), log); err != nil {
		t.Fatal(err)
	}
	if w := logs.FilterLevelExact(zapcore.WarnLevel); w.Len() != 1 || w.FilterMessage(unset).Len() != 1 {
		t.Fatalf("unset SWC_ALLOW: logged %v, want exactly the one warning", logs.All())
	}

	log, logs = testutil.Logger(t, "connector")
	cfg := testConfig(t, p, 1)
	allow(" 10.0.0.0/24:22, DB.internal:5432")(&cfg)
	if _, err := New(cfg, log); err != nil {
		t.Fatal(err)
	}
	if logs.FilterMessage(unset).Len() != 0 || !testutil.Logged(logs, "target policy", "allow", "10.0.0.0/24:22,db.internal:5432") {
		t.Fatalf("SWC_ALLOW set: logged %v, want the policy and no warning", logs.All())
	}

	cfg.Allow.Value = "db.internal:99999"
	if _, err := New(cfg, zap.NewNop()); err == nil || !strings.Contains(err.Error(), `allow (SWC_ALLOW) entry 1 "db.internal:99999": port 99999 is outside 1-65535`) {
		t.Fatalf("New with a malformed SWC_ALLOW: %v", err)
	}
}

// TestPprof: SWC_PPROF_ADDR serves the goroutine profile while the connector
// runs; a taken address makes Run fail at once.
func TestPprof(t *testing.T) {
	p := testutil.NewPKI(t)
	s := newServer(t, p)
	cfg := testConfig(t, p, s.port)
	cfg.PprofAddr = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	r := start(t, cfg)
	url := "http://" + cfg.PprofAddr + "/debug/pprof/goroutine?debug=1"
	var body []byte
	testutil.Eventually(t, "the goroutine profile", func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ = io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK
	})
	http.DefaultClient.CloseIdleConnections()
	if !strings.HasPrefix(string(body), "goroutine profile: total ") {
		t.Fatalf("goroutine profile: %.60q", body)
	}

	log, _ := testutil.Logger(t, "second")
	second, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), safety)
	defer cancel()
	testutil.WantErr(t, second.Run(ctx), "listen for pprof on tcp "+cfg.PprofAddr)
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
}
