package relay

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/socket-warp/socket-warp/shared/testutil"
	"github.com/socket-warp/socket-warp/shared/wire"
)

func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }

// safety bounds every blocking step of a test so that a bug fails the test
// instead of hanging it. No test asserts anything about how long things take.
const safety = 60 * time.Second

// peerCode is the stream error code a misbehaving QUIC peer resets with.
const peerCode = 0x42

// tcpPair returns both ends of a fresh loopback TCP connection.
func tcpPair(t testing.TB) (dialed, accepted *net.TCPConn) {
	t.Helper()
	ln := testutil.Listen(t)
	type acceptResult struct {
		c   *net.TCPConn
		err error
	}
	ch := make(chan acceptResult, 1)
	go func() {
		c, err := ln.AcceptTCP()
		ch <- acceptResult{c, err}
	}()
	dialed, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dialed.Close() })
	r := <-ch // the dial succeeded, so the accept does too
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	return dialed, r.c
}

// quicPair returns both ends of one bidirectional stream on a fresh QUIC
// connection over loopback with mutual TLS: the stream as opened by the
// server (as the listener does) and as accepted by the client.
func quicPair(t testing.TB) (opened, accepted *quic.Stream) {
	t.Helper()
	p := testutil.NewPKI(t)

	ctx, cancel := context.WithTimeout(context.Background(), safety)
	defer cancel()

	ln, _ := testutil.QUICServer(t, p.ServerTLS(t), nil)
	clientConn := testutil.QUICDial(t, ctx, ln.Addr(), p.ClientTLS(t, "relay-test"), nil)
	serverConn, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { serverConn.CloseWithError(wire.CodeNoError, "") })
	if st := serverConn.ConnectionState().TLS; st.NegotiatedProtocol != wire.ALPN || st.Version != tls.VersionTLS13 {
		t.Fatalf("QUIC handshake: ALPN %q, version %#x; want %q, TLS 1.3", st.NegotiatedProtocol, st.Version, wire.ALPN)
	}

	opened, err = serverConn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A stream reaches the peer's AcceptStream only with its first frame; the
	// byte is consumed here so the relay starts on a clean stream.
	if _, err := opened.Write([]byte{0}); err != nil {
		t.Fatal(err)
	}
	accepted, err = clientConn.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(accepted, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	return opened, accepted
}

// end is a side of the relay that the test drives itself: the TCP client,
// the TCP target or the QUIC peer. Reads and writes go through the package's
// own adapters, so CloseWrite is a TCP FIN or a QUIC stream FIN.
type end struct {
	Conn
	name   string
	tcp    *net.TCPConn
	stream *quic.Stream
}

func tcpEnd(name string, c *net.TCPConn) *end {
	c.SetDeadline(time.Now().Add(safety))
	return &end{Conn: TCP(c), name: name, tcp: c}
}

func streamEnd(name string, s *quic.Stream) *end {
	s.SetDeadline(time.Now().Add(safety))
	return &end{Conn: Stream(s), name: name, stream: s}
}

// reset kills the end the way a crashed or refusing peer does: a TCP RST, or
// a QUIC stream reset in both directions.
func (e *end) reset() {
	if e.tcp != nil {
		e.tcp.SetLinger(0)
		e.tcp.Close()
		return
	}
	e.stream.CancelWrite(peerCode)
	e.stream.CancelRead(peerCode)
}

// readErr discards whatever arrives until Read fails, and returns that error.
func (e *end) readErr() error {
	buf := make([]byte, 32<<10)
	for {
		if _, err := e.Read(buf); err != nil {
			return err
		}
	}
}

// expectAborted asserts that the end sees an abort rather than a clean end:
// for TCP a read error other than EOF (a reset), for QUIC a stream reset
// carrying code.
func (e *end) expectAborted(t *testing.T, code uint64) {
	t.Helper()
	e.checkAbort(t, code, false)
}

// expectAbortedWhileWriting is expectAborted for an end that another goroutine
// is writing to. Linux reports a TCP reset to only one system call, so the
// writer may take the error and the read then sees end-of-stream. That is
// still told apart from a clean FIN: after a reset the socket is dead and a
// write fails at once, whereas after a FIN it succeeds.
func (e *end) expectAbortedWhileWriting(t *testing.T, code uint64) {
	t.Helper()
	e.checkAbort(t, code, true)
}

func (e *end) checkAbort(t *testing.T, code uint64, writing bool) {
	t.Helper()
	err := e.readErr()
	switch {
	case testutil.IsTimeout(err):
		t.Errorf("%s: no abort within the safety bound: %v", e.name, err)
	case e.stream != nil:
		var se *quic.StreamError
		if !errors.As(err, &se) || !se.Remote || uint64(se.ErrorCode) != code {
			t.Errorf("%s: read error %v, want a stream reset by the relay with code %#x (%s)",
				e.name, err, code, wire.CodeString(code))
		}
	case err != io.EOF:
		// a reset
	case !writing:
		t.Errorf("%s: read a clean EOF, want an abort", e.name)
	default:
		if _, werr := e.Write([]byte{0}); werr == nil {
			t.Errorf("%s: read a clean EOF and can still write, want an abort", e.name)
		}
	}
}

// checkWriteAborted asserts that a write to the end failed because the relay
// aborted: for QUIC, STOP_SENDING carrying code.
func (e *end) checkWriteAborted(t *testing.T, err error, code uint64) {
	t.Helper()
	var se *quic.StreamError
	switch {
	case err == nil:
		t.Errorf("%s: write succeeded, want it to fail after the abort", e.name)
	case testutil.IsTimeout(err):
		t.Errorf("%s: writes did not fail within the safety bound: %v", e.name, err)
	case e.stream != nil && (!errors.As(err, &se) || !se.Remote || uint64(se.ErrorCode) != code):
		t.Errorf("%s: write error %v, want STOP_SENDING from the relay with code %#x (%s)",
			e.name, err, code, wire.CodeString(code))
	}
}

// topology is a relay with the test driving both outer ends. near is the
// peer of relay end a, far the peer of relay end b, so a→b is near→far.
type topology struct {
	name  string
	build func(t testing.TB) (near, far *end, a, b Conn)
}

var topologies = []topology{
	{"tcp-tcp", func(t testing.TB) (near, far *end, a, b Conn) {
		client, fromClient := tcpPair(t)
		toTarget, target := tcpPair(t)
		return tcpEnd("client", client), tcpEnd("target", target), TCP(fromClient), TCP(toTarget)
	}},
	// The listener: TCP client in, QUIC stream out.
	{"tcp-quic", func(t testing.TB) (near, far *end, a, b Conn) {
		client, fromClient := tcpPair(t)
		stream, peer := quicPair(t)
		return tcpEnd("client", client), streamEnd("QUIC peer", peer), TCP(fromClient), Stream(stream)
	}},
	// The connector: QUIC stream in, TCP target out.
	{"quic-tcp", func(t testing.TB) (near, far *end, a, b Conn) {
		stream, peer := quicPair(t)
		toTarget, target := tcpPair(t)
		return streamEnd("QUIC peer", peer), tcpEnd("target", target), Stream(stream), TCP(toTarget)
	}},
}

func topologyNamed(t *testing.T, name string) topology {
	t.Helper()
	for _, tp := range topologies {
		if tp.name == name {
			return tp
		}
	}
	t.Fatalf("no topology %q", name)
	return topology{}
}

// run is a Relay going on in its own goroutine.
type run struct {
	cancel context.CancelFunc
	done   chan struct{}
	res    Result
}

// startRelay runs Relay(a, b) until it returns; cleanup cancels it and waits,
// so no relay goroutine outlives its test.
func startRelay(t testing.TB, a, b Conn, counters Counters) *run {
	t.Helper()
	return startRelayHold(t, a, b, counters, holdLarge)
}

// startRelayHold is startRelay with hold in place of holdLarge.
func startRelayHold(t testing.TB, a, b Conn, counters Counters, hold time.Duration) *run {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.res = relay(ctx, a, b, counters, hold)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(safety):
			t.Error("Relay did not return after its context was cancelled")
		}
	})
	return r
}

// wait returns the relay's result once Relay has returned.
func (r *run) wait(t *testing.T) Result {
	t.Helper()
	select {
	case <-r.done:
		return r.res
	case <-time.After(safety):
		t.Fatal("Relay did not return")
		return Result{}
	}
}

// returned says whether Relay has returned already.
func (r *run) returned() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// send writes data and then half-closes.
func send(c Conn, data []byte) error {
	if _, err := c.Write(data); err != nil {
		return err
	}
	return c.CloseWrite()
}

// goSend is send in a goroutine; the channel yields its error.
func goSend(c Conn, data []byte) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- send(c, data) }()
	return ch
}

type digest struct {
	n   int64
	sum [sha256.Size]byte
	err error
}

// goDigest reads c to EOF in a goroutine and yields what it read.
func goDigest(c Conn) <-chan digest {
	ch := make(chan digest, 1)
	go func() {
		h := sha256.New()
		n, err := io.Copy(h, c)
		var d digest
		d.n, d.err = n, err
		copy(d.sum[:], h.Sum(nil))
		ch <- d
	}()
	return ch
}

// roundTrip proves both legs are up and the relay is copying both ways.
func roundTrip(t *testing.T, near, far *end) {
	t.Helper()
	ping, pong := []byte("ping"), []byte("pong")
	for _, step := range []struct {
		from, to *end
		msg      []byte
	}{{near, far, ping}, {far, near, pong}} {
		if _, err := step.from.Write(step.msg); err != nil {
			t.Fatalf("%s write: %v", step.from.name, err)
		}
		got := make([]byte, len(step.msg))
		if _, err := io.ReadFull(step.to, got); err != nil {
			t.Fatalf("%s read: %v", step.to.name, err)
		}
		if string(got) != string(step.msg) {
			t.Fatalf("%s read %q, want %q", step.to.name, got, step.msg)
		}
	}
}
