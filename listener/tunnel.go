package listener

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/listener/port"
	"github.com/socket-warp/socket-warp/listener/registry"
	"github.com/socket-warp/socket-warp/shared/logging"
	"github.com/socket-warp/socket-warp/shared/relay"
	"github.com/socket-warp/socket-warp/shared/wire"
)

// binding is one opened port: its TCP listeners and the tunnels they carry.
type binding struct {
	spec     port.Spec
	target   string
	socks    []*portSocket // one per SWL_OPEN_ADDRS address
	ctx      context.Context
	cancel   context.CancelFunc
	stop     chan struct{} // closed when the port stops accepting
	stopOnce sync.Once
	wg       sync.WaitGroup // accept loops and tunnels
	startErr error          // why some address could not be bound when the port was; nil: none
	conns    atomic.Int64   // tunnels running now, refused ones included
	active   atomic.Int64   // tunnels relaying now

	// Bytes tunnelled since the port was opened, counted as they pass.
	bytesUp   atomic.Int64 // client → target
	bytesDown atomic.Int64 // target → client
}

// bind listens on the port on every configured address and starts accepting.
// An address that cannot be bound does not fail it: the port is served all
// the same, that address bound in the background as a dead socket's is
// (accept) and listed as not listening meanwhile; startErr says why. Only
// a port that cannot be served at all (the stream header refuses it) is an
// error.
func (l *Listener) bind(parent context.Context, p port.Spec) (*binding, error) {
	hdr := streamHeader(p, nil)
	if err := hdr.Validate(); err != nil {
		return nil, err
	}
	b := &binding{spec: p, target: net.JoinHostPort(p.ConnectAddress, strconv.Itoa(p.ConnectPort)), stop: make(chan struct{})}
	startErrs := make([]error, len(l.openAddrs))
	for i, a := range l.openAddrs {
		addr := &net.TCPAddr{IP: net.ParseIP(a), Port: p.Port}
		ln, err := net.ListenTCP("tcp", addr)
		s := &portSocket{addr: addr, ln: ln}
		if err != nil {
			s.down, startErrs[i] = fmt.Errorf("%s; re-binding: %w", notBoundAtStart, err), err
		}
		b.socks = append(b.socks, s)
	}
	b.startErr = errors.Join(startErrs...)
	b.ctx, b.cancel = context.WithCancel(parent)
	for i, s := range b.socks {
		ln := s.ln
		b.wg.Go(func() { l.accept(b, s, ln, startErrs[i]) })
	}
	return b, nil
}

// close stops accepting, ends every tunnel of the port and waits for them.
func (b *binding) close() {
	b.cancel()
	b.stopAccepting()
	b.wg.Wait()
}

// stopAccepting closes the port's TCP listeners; the tunnels go on. The
// accept loops end, those waiting to retry or re-bind included.
func (b *binding) stopAccepting() {
	// First: an accept loop that finds its socket closed must know it
	// was closed on purpose, and one that re-binds must not keep it.
	b.stopOnce.Do(func() { close(b.stop) })
	for _, s := range b.socks {
		if ln := s.listener(); ln != nil {
			ln.Close()
		}
	}
}

// tunnel carries one client connection over a new stream to the connector.
func (l *Listener) tunnel(b *binding, client *net.TCPConn) {
	start := time.Now()
	// Fields rather than a child logger: zap's With encodes them into a
	// buffer of its own, which an idle tunnel would hold for its lifetime.
	id := make([]zap.Field, 0, 9)
	id = append(id, logging.UID(b.spec.UID), logging.Port(b.spec.Port), logging.Target(b.target),
		logging.Remote(client.RemoteAddr().String()))
	n := b.conns.Add(1)
	defer b.conns.Add(-1)
	t, id := relay.SetUp(id, func(id []zap.Field) (*opened, []zap.Field) { return l.openStream(b, client, n, start, id) })
	if t == nil {
		return
	}
	defer l.uidConns.release(b.spec.UID)
	s, st := t.session, t.stream
	s.Streams.Add(1)
	defer s.Streams.Add(-1)
	b.active.Add(1)
	defer b.active.Add(-1)
	vc := &verdictConn{Conn: relay.Stream(st), ok: &l.outcomes[outcomeOK]}
	res := relay.Relay(b.ctx, relay.TCP(client), vc, relay.Counters{
		AToB: &b.bytesUp, BToA: &b.bytesDown,
		Also: &relay.Counters{AToB: &s.BytesUp, BToA: &s.BytesDown},
	})
	fields := append(id, logging.BytesUp(res.AToB), logging.BytesDown(res.BToA),
		logging.Duration(time.Since(start)), logging.Reason(tunnelReason(res.Err)))
	var refused *RefusedError
	if errors.As(res.Err, &refused) {
		l.outcomes[verdictOutcome(refused.Verdict)].Add(1)
		if refused.Verdict == wire.VerdictGoingAway {
			// It drains: the next clients are refused without a stream,
			// and a newcomer of its UID may take its place.
			s.Draining.Store(true)
		}
		l.floodLog.Warn("tunnel refused by connector", fields...)
		return
	}
	if !vc.answered {
		l.outcomes[outcomeAborted].Add(1)
	}
	l.floodLog.Info("tunnel closed", fields...)
}

// opened is a tunnel's stream, written its header, with the UID's connection
// count taken (the caller releases it).
type opened struct {
	session *registry.Session
	stream  *quic.Stream
}

// openStream checks the limits (n is the port's connections, this one
// included), opens a stream to the connector and writes the header. It resets
// the client and returns nil when it refuses it. It returns id with the
// stream appended once it is open.
func (l *Listener) openStream(b *binding, client *net.TCPConn, n int64, start time.Time, id []zap.Field) (*opened, []zap.Field) {
	refuse := func(o outcome, reason string) (*opened, []zap.Field) {
		l.outcomes[o].Add(1)
		// A reset, not a clean close: the client must not take an empty
		// answer for a real one.
		relay.TCP(client).Abort(0)
		l.floodLog.Warn("tunnel refused", append(id, logging.Reason(reason))...)
		return nil, id
	}

	// The limits first: a client beyond them costs no stream, and waits
	// for nothing.
	if limit := l.cfg.MaxConnsPerPort; limit > 0 && n > int64(limit) {
		return refuse(outcomePortLimit, fmt.Sprintf("limit: %d connections on port %d (SWL_MAX_CONNS_PER_PORT)", limit, b.spec.Port))
	}
	if !l.uidConns.acquire(b.spec.UID, l.cfg.MaxConnsPerUID) {
		return refuse(outcomeUIDLimit, fmt.Sprintf("limit: %d connections for uid %s (SWL_MAX_CONNS_PER_UID)", l.cfg.MaxConnsPerUID, b.spec.UID))
	}
	ok := false
	defer func() {
		if !ok {
			l.uidConns.release(b.spec.UID)
		}
	}()

	s := l.sessions.Holder(b.spec.UID)
	if s == nil {
		return refuse(outcomeNoConnector, "connector not connected")
	}
	if s.Draining.Load() {
		return refuse(outcomeNoConnector, "connector going away")
	}
	openCtx, cancel := context.WithTimeout(b.ctx, l.cfg.StreamOpenTimeout)
	st, err := s.Conn.OpenStreamSync(openCtx)
	cancel()
	if err != nil {
		return refuse(outcomeStreamFailed, fmt.Sprintf("open stream: %v", err))
	}
	hdr := streamHeader(b.spec, client)
	buf, err := hdr.Append(make([]byte, 0, hdr.Len()))
	if err == nil {
		// The client's first bytes follow right behind the header: no round
		// trip is spent waiting for the connector's verdict.
		_, err = st.Write(buf)
	}
	if err != nil {
		relay.Stream(st).Abort(wire.StreamCodeAborted)
		return refuse(outcomeStreamFailed, fmt.Sprintf("write stream header: %v", err))
	}
	l.streamOpen.Observe(time.Since(start).Seconds())
	id = append(id, logging.Stream(int64(st.StreamID())))
	l.floodLog.Info("tunnel opened", id...)
	ok = true
	return &opened{session: s, stream: st}, id
}

// streamHeader is the header of a stream carrying client over port p. With
// client nil, documentation addresses stand in for the client's, so that
// bind can check p before it listens.
func streamHeader(p port.Spec, client *net.TCPConn) wire.Header {
	h := wire.Header{
		TargetHost: p.ConnectAddress,
		TargetPort: uint16(p.ConnectPort),
		OpenedPort: uint16(p.Port),
		ClientAddr: "192.0.2.1:1",
		LocalAddr:  "192.0.2.2:2",
	}
	if client != nil {
		h.ClientAddr = client.RemoteAddr().String()
		h.LocalAddr = client.LocalAddr().String()
	}
	switch p.ProxyProtocol {
	case "":
		// The local address serves the PROXY header only.
		h.LocalAddr = ""
	case port.ProxyV1:
		h.ProxyProtocol = wire.ProxyV1
	case port.ProxyV2:
		h.ProxyProtocol = wire.ProxyV2
	default:
		// The API and the store refuse other values; should one come
		// through all the same, Validate refuses the port rather than
		// serve it without the header its target expects.
		h.ProxyProtocol = 0xff
	}
	return h
}

// proxyField names the port's PROXY protocol in its log lines, if it has one.
func proxyField(p port.Spec) zap.Field {
	if p.ProxyProtocol == "" {
		return zap.Skip()
	}
	return zap.String("proxy_protocol", p.ProxyProtocol)
}

// RefusedError is the connector's non-ok verdict on a stream.
type RefusedError struct {
	Verdict wire.Verdict
	Reason  string
}

func (e *RefusedError) Error() string {
	if e.Reason == "" {
		return "connector refused: " + e.Verdict.String()
	}
	return fmt.Sprintf("connector refused: %s: %s", e.Verdict, e.Reason)
}

// verdictConn reads the connector's verdict before the first byte of the
// target's reply. A refusal surfaces as a read error, which makes the relay
// reset the client at once. Only the relay's stream→client direction reads.
type verdictConn struct {
	relay.Conn
	ok       *atomic.Int64 // counts an ok verdict as it arrives
	checked  bool
	answered bool // a verdict was read; read it only after the relay
}

func (v *verdictConn) Read(p []byte) (int, error) {
	if !v.checked {
		v.checked = true
		verdict, reason, err := wire.ReadVerdict(v.Conn)
		if err != nil {
			return 0, fmt.Errorf("read verdict: %w", err)
		}
		v.answered = true
		if verdict != wire.VerdictOK {
			return 0, &RefusedError{Verdict: verdict, Reason: reason}
		}
		v.ok.Add(1)
	}
	return v.Conn.Read(p)
}

// tunnelReason words how a tunnel ended for the log.
func tunnelReason(err error) string {
	var (
		streamErr *quic.StreamError
		appErr    *quic.ApplicationError
	)
	switch {
	case err == nil:
		return "done"
	case errors.Is(err, relay.ErrClosed):
		return "port closed"
	case errors.As(err, &streamErr) && streamErr.Remote:
		return "connector reset the stream: " + wire.CodeString(uint64(streamErr.ErrorCode))
	case errors.As(err, &appErr), errors.As(err, new(*quic.IdleTimeoutError)):
		return "connector connection lost: " + closeReason(err)
	default:
		return err.Error()
	}
}
