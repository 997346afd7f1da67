// Package connector is sw-connector as a library: New(cfg, log).Run(ctx).
//
// The connector runs inside a network that allows no inbound traffic. It
// dials out to sw-listener over QUIC with its client certificate, keeps that
// connection up forever, and for every stream the listener opens dials the
// target named in the stream header and relays bytes both ways.
package connector

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/connector/backoff"
	"github.com/socket-warp/socket-warp/connector/enroll"
	"github.com/socket-warp/socket-warp/connector/policy"
	"github.com/socket-warp/socket-warp/shared/debugserver"
	"github.com/socket-warp/socket-warp/shared/logging"
	"github.com/socket-warp/socket-warp/shared/memtrim"
	"github.com/socket-warp/socket-warp/shared/metrics"
	"github.com/socket-warp/socket-warp/shared/quicconf"
	"github.com/socket-warp/socket-warp/shared/relay"
	"github.com/socket-warp/socket-warp/shared/tlsutil"
	"github.com/socket-warp/socket-warp/shared/udpsock"
	"github.com/socket-warp/socket-warp/shared/wire"
)

// MaxStreams is how many tunnelled connections a listener may have open at
// once on one connector. quic-go's default of 100 would stall the 101st client.
const MaxStreams = quicconf.MaxStreams

// Connector is one sw-connector.
type Connector struct {
	cfg      Config
	log      *zap.Logger
	certs    atomic.Pointer[tlsutil.Reloader] // nil until enrolled
	quicConf *quic.Config
	addr     string
	allow    *policy.Policy  // nil: every target is allowed
	resolver policy.Resolver // looks target names up when allow is set

	stats      stats
	metrics    *prometheus.Registry
	metricsSrv *metrics.Server // nil without SWC_METRICS_ADDR
}

// New loads the certificates; a missing or broken file stops the daemon here,
// unless the connector is to enroll itself (no certificate yet, and a UID,
// an enrollment secret and a SCEP URL): then Run enrolls first.
func New(cfg Config, log *zap.Logger) (*Connector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Connector{cfg: cfg, log: log}
	// Finish a key/certificate swap a crash interrupted, before loading.
	if err := enroll.Recover(c.paths()); err != nil {
		return nil, err
	}
	pending, err := enrollmentPending(cfg)
	if err != nil {
		return nil, err
	}
	if pending {
		if err := checkEnrollTrust(cfg); err != nil {
			return nil, err
		}
	} else {
		certs, err := tlsutil.NewReloader(cfg.ClientCertPath, cfg.ClientKeyPath, cfg.CACertPath, log.Named("tls"))
		if err != nil {
			return nil, err
		}
		c.certs.Store(certs)
	}
	host := cfg.ServerAddress
	if host == "" {
		host = cfg.ServerName
	}
	c.quicConf = quicconf.Windows(&quic.Config{
		KeepAlivePeriod: time.Duration(cfg.KeepAlive),
		MaxIdleTimeout:  time.Duration(cfg.IdleTimeout),
		// A listener that answers nothing is given no longer than a
		// connection that stops answering.
		HandshakeIdleTimeout:  min(10*time.Second, time.Duration(cfg.IdleTimeout)),
		MaxIncomingStreams:    MaxStreams,
		MaxIncomingUniStreams: -1,
	})
	c.addr = net.JoinHostPort(host, strconv.Itoa(cfg.ServicePort))
	if c.allow, err = cfg.Allow.Policy(); err != nil {
		return nil, err // Validate has reported it already
	}
	c.resolver = net.DefaultResolver
	c.metrics = metrics.NewRegistry()
	c.metrics.MustRegister(&c.stats)
	// Last: nothing after it can fail, and Run serves it.
	if cfg.MetricsAddr != "" {
		if c.metricsSrv, err = metrics.Listen("metrics_addr (SWC_METRICS_ADDR)", cfg.MetricsAddr, c.metrics, c.ready, log); err != nil {
			return nil, err
		}
	}
	if c.allow == nil {
		log.Warn("SWC_ALLOW is not set: any target the listener names can be dialled")
	} else {
		log.Info("target policy", zap.Stringer("allow", c.allow))
	}
	return c, nil
}

// Dial makes one connection attempt from a fresh UDP socket: a new source
// port also means a new NAT mapping, should the old one have gone bad. The
// caller closes the returned transport when done with the connection; that
// ends every goroutine quic-go started for it.
func (c *Connector) Dial(ctx context.Context) (*quic.Conn, *quic.Transport, error) {
	raddr, err := net.ResolveUDPAddr("udp", c.addr)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", c.addr, err)
	}
	udp, err := udpsock.Listen("", c.log)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", c.addr, err)
	}
	tr := &quic.Transport{Conn: udp}
	// A config per attempt: a rotated CA file applies from the next dial.
	conn, err := tr.Dial(ctx, raddr, c.certs.Load().ClientConfig(c.cfg.ServerName), c.quicConf)
	if err != nil {
		closeTransport(tr)
		return nil, nil, fmt.Errorf("connect to %s: %w", c.addr, err)
	}
	return conn, tr, nil
}

func closeTransport(tr *quic.Transport) {
	_ = tr.Close()
	_ = tr.Conn.Close()
}

// ReloadCertificates re-reads the certificate, key and CA files (SIGHUP).
// The next handshake uses the new material; the live connection stays up.
func (c *Connector) ReloadCertificates() error {
	if certs := c.certs.Load(); certs != nil {
		return certs.Reload()
	}
	return nil
}

// Run keeps a connection to the listener until ctx ends. Every failure is
// retried with backoff; a connection that stayed up for a while resets it.
// It fails at once when SWC_PPROF_ADDR is set and cannot be bound.
func (c *Connector) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	if c.metricsSrv != nil {
		wg.Go(func() {
			if err := c.metricsSrv.Serve(ctx); err != nil {
				c.log.Error("metrics server stopped", zap.Error(err))
			}
		})
	}
	if c.cfg.PprofAddr != "" {
		pprof, err := debugserver.Listen(c.cfg.PprofAddr, c.log)
		if err != nil {
			return err
		}
		wg.Go(func() {
			if err := pprof.Run(ctx); err != nil {
				c.log.Error("pprof stopped", logging.Reason(err.Error()))
			}
		})
	}
	if c.certs.Load() == nil {
		if err := c.enrollUntilDone(ctx); err != nil {
			return nil // only ctx ends it
		}
		certs, err := tlsutil.NewReloader(c.cfg.ClientCertPath, c.cfg.ClientKeyPath, c.cfg.CACertPath, c.log.Named("tls"))
		if err != nil {
			return err
		}
		c.certs.Store(certs)
	}
	certs := c.certs.Load()
	wg.Go(func() { _ = certs.Run(ctx) })
	wg.Go(func() { memtrim.Run(ctx, c.log) })
	if c.cfg.RenewSecret != "" {
		wg.Go(func() { c.renewLoop(ctx, certs) })
	}
	bo := &backoff.Backoff{Min: time.Duration(c.cfg.RetryMin), Max: time.Duration(c.cfg.RetryMax)}
	healthy := time.Duration(c.cfg.RetryMax)
	for attempt := 1; ; attempt++ {
		conn, tr, err := c.Dial(ctx)
		if ctx.Err() != nil {
			if conn != nil {
				_ = conn.CloseWithError(wire.CodeGoingAway, "connector shutting down")
				closeTransport(tr)
			}
			return nil
		}
		var reason error
		if err != nil {
			reason = err
		} else {
			attempt = 0
			since := time.Now()
			c.stats.connected.Store(true)
			reason = c.serve(ctx, conn)
			c.stats.connected.Store(false)
			closeTransport(tr)
			if ctx.Err() != nil {
				return nil
			}
			if time.Since(since) >= healthy {
				bo.Reset()
			}
		}
		c.stats.reconnect(reconnectReason(reason, err != nil))
		delay := bo.Next()
		if isGoingAway(reason) {
			// The listener is restarting: come back as soon as it is up.
			bo.Reset()
			delay = bo.Next()
		}
		fields := []zap.Field{zap.String("server", c.addr), logging.Reason(describe(reason, err != nil)), zap.Duration("retry_in", delay)}
		switch {
		case isRefusal(reason):
			// Retrying will not help until someone fixes the certificate or
			// stops the other connector; say so loudly, but keep trying.
			c.log.Error("listener refused this connector", fields...)
		case isLocalTLSFailure(reason):
			c.log.Error("listener certificate rejected", fields...)
		case attempt > 0:
			c.log.Warn("connect failed", append(fields, zap.Int("attempt", attempt))...)
		default:
			c.log.Warn("connection lost", fields...)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// serve accepts the listener's streams until the connection ends, and
// returns why it ended. When ctx ends first it drains: new streams are
// refused with "going away", the tunnels that run get SWC_DRAIN_TIMEOUT to
// finish, then the connection is closed with "going away". It returns only
// after every stream handler has.
func (c *Connector) serve(ctx context.Context, conn *quic.Conn) error {
	c.log.Info("connected", zap.String("server", c.addr), logging.Remote(conn.RemoteAddr().String()))
	var (
		wg       sync.WaitGroup     // every stream handler
		tunnels  = newTunnelCount() // the handlers a drain waits for
		draining atomic.Bool
	)
	// The accept loop is serve's: it ends with the connection, and serve
	// waits for it before it waits for the handlers it started.
	accepted := make(chan error, 1)
	go func() {
		for {
			st, err := conn.AcceptStream(context.Background())
			if err != nil {
				accepted <- err
				return
			}
			if draining.Load() {
				wg.Go(func() { c.refuseDraining(st) })
				continue
			}
			tunnels.start()
			wg.Go(func() {
				defer tunnels.end()
				c.handleStream(conn.Context(), st)
			})
		}
	}()
	var err error
	select {
	case err = <-accepted:
	case <-ctx.Done():
		draining.Store(true)
		if c.drain(tunnels) {
			linger(conn)
		}
		// Close before Run closes the transport, which would drop the
		// connection without a CONNECTION_CLOSE and leave the listener
		// holding the UID until its idle timeout.
		_ = conn.CloseWithError(wire.CodeGoingAway, "connector shutting down")
		err = <-accepted
	}
	wg.Wait()
	if cause := context.Cause(conn.Context()); cause != nil {
		return cause
	}
	return err
}

// drain waits until the running tunnels end or SWC_DRAIN_TIMEOUT passes,
// and reports whether they all ended.
func (c *Connector) drain(tunnels *tunnelCount) bool {
	timeout := time.Duration(c.cfg.DrainTimeout)
	c.log.Info("draining", zap.Int64("tunnels", tunnels.n.Load()), zap.Duration("timeout", timeout))
	if tunnels.wait(timeout) {
		c.log.Info("drained")
		return true
	}
	c.log.Warn("drain timeout, closing tunnels", zap.Int64("tunnels", tunnels.n.Load()))
	return false
}

// linger keeps a drained connection open a moment before it is closed.
// quic-go drops what it has not sent when a connection closes, and the last
// bytes and FIN of a tunnel that just ended may still be queued; QUIC tells
// nobody when the peer has them. About two probe timeouts let them go out
// and, if lost, go out again. (sw-listener does the same: see its linger.)
func linger(conn *quic.Conn) {
	st := conn.ConnectionStats()
	pto := st.SmoothedRTT + max(4*st.MeanDeviation, time.Millisecond) + 25*time.Millisecond // max_ack_delay
	t := time.NewTimer(min(max(2*pto, 50*time.Millisecond), time.Second))
	defer t.Stop()
	select {
	case <-t.C:
	case <-conn.Context().Done():
	}
}

// refuseDraining answers a stream opened during the drain without reading
// its header: a probe learns that this connector is going away (so a new
// one of its UID may take its place), a client is reset by the listener,
// which then opens no more streams to this connection.
func (c *Connector) refuseDraining(st *quic.Stream) {
	c.refuse(st, wire.VerdictGoingAway, "connector shutting down")
	c.log.Info("stream refused", logging.Stream(int64(st.StreamID())), logging.Reason("connector shutting down"))
}

// tunnelCount counts the stream handlers that run.
type tunnelCount struct {
	n       atomic.Int64
	changed chan struct{} // one ping after any end, so wait re-checks n
}

func newTunnelCount() *tunnelCount { return &tunnelCount{changed: make(chan struct{}, 1)} }

func (t *tunnelCount) start() { t.n.Add(1) }

func (t *tunnelCount) end() {
	t.n.Add(-1)
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

// wait reports whether the count reached zero within timeout.
func (t *tunnelCount) wait(timeout time.Duration) bool {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for t.n.Load() > 0 {
		select {
		case <-t.changed:
		case <-timer.C:
			return t.n.Load() == 0
		}
	}
	return true
}

// handleStream reads the header, dials the target, sends the verdict, relays.
func (c *Connector) handleStream(ctx context.Context, st *quic.Stream) {
	start := time.Now()
	// Fields rather than a child logger: zap's With encodes them into a
	// buffer of its own, which an idle tunnel would hold for its lifetime.
	id := make([]zap.Field, 0, 8)
	id = append(id, logging.Stream(int64(st.StreamID())))
	tc := relay.OnFreshStack(func() *net.TCPConn { return c.openTarget(ctx, st, start, &id) })
	if tc == nil {
		return
	}
	c.stats.streams.Add(1)
	res := relay.Relay(ctx, &okFirst{Conn: relay.Stream(st)}, relay.TCP(tc), relay.Counters{AToB: &c.stats.bytesUp, BToA: &c.stats.bytesDown})
	c.stats.streams.Add(-1)
	c.log.Info("tunnel closed", append(id, logging.BytesUp(res.AToB), logging.BytesDown(res.BToA),
		logging.Duration(time.Since(start)), logging.Reason(streamReason(res.Err)))...)
}

// openTarget reads the stream's header and dials its target. It answers and
// ends the stream itself and returns nil when it refuses it; a probe is
// answered the same way.
func (c *Connector) openTarget(ctx context.Context, st *quic.Stream, start time.Time, idp *[]zap.Field) *net.TCPConn {
	id := *idp
	defer func() { *idp = id }()
	// A listener that opens a stream and sends nothing must not pin this
	// goroutine forever.
	_ = st.SetReadDeadline(start.Add(time.Duration(c.cfg.HeaderTimeout)))
	hdr, err := wire.ReadHeader(st)
	_ = st.SetReadDeadline(time.Time{})
	if err != nil {
		c.refuse(st, wire.VerdictBadHeader, err.Error())
		c.log.Warn("stream refused", append(id, logging.Reason(err.Error()))...)
		return nil
	}
	if hdr.Probe {
		// The listener asks whether this connection is still alive
		// (another connection with this UID arrived): yes, and nothing
		// to dial. refuse answers and ends the stream the same way for
		// any verdict.
		c.refuse(st, wire.VerdictOK, "")
		c.log.Debug("probe answered", id...)
		return nil
	}
	target := net.JoinHostPort(hdr.TargetHost, strconv.Itoa(int(hdr.TargetPort)))
	id = append(id, logging.Target(target), logging.Remote(hdr.ClientAddr), logging.Port(int(hdr.OpenedPort)))
	// Before dialling: a target that expects a PROXY header must get a
	// true one or no connection at all.
	proxyHdr, err := proxyHeader(hdr)
	if err != nil {
		c.refuse(st, wire.VerdictBadHeader, err.Error())
		c.log.Warn("stream refused", append(id, logging.Reason(err.Error()))...)
		return nil
	}

	tc, err := c.dial(ctx, hdr, target)
	var refusal *policy.Refusal
	if errors.As(err, &refusal) {
		// The listener learns that much and no more: the detail may say
		// what an internal name resolves to.
		reason := fmt.Sprintf("target %s is not allowed by SWC_ALLOW", target)
		c.refuse(st, wire.VerdictForbidden, reason)
		c.log.Warn("stream refused", append(id, logging.Reason(reason+": "+refusal.Detail))...)
		return nil
	}
	if err != nil {
		c.stats.dialFailure(target)
		reason := fmt.Sprintf("dial %s: %v", target, unwrapOpError(err))
		c.refuse(st, wire.VerdictDialFailed, reason)
		c.log.Warn("stream refused", append(id, logging.Reason(reason))...)
		return nil
	}
	if proxyHdr != nil {
		if _, err := proxyHdr.WriteTo(tc); err != nil {
			tc.Close()
			reason := fmt.Sprintf("write PROXY header to %s: %v", target, unwrapOpError(err))
			c.refuse(st, wire.VerdictDialFailed, reason)
			c.log.Warn("stream refused", append(id, logging.Reason(reason))...)
			return nil
		}
	}
	c.log.Info("tunnel opened", id...)
	return tc
}

// okFirst sends the ok verdict with the target's first bytes (or its FIN)
// rather than in a packet of its own: the listener needs it only before it
// relays those bytes, and the client's bytes flow without waiting for it.
type okFirst struct {
	relay.Conn
	sent bool // only the relay's target→stream direction writes
}

func (o *okFirst) Write(p []byte) (int, error) {
	if o.sent {
		return o.Conn.Write(p)
	}
	o.sent = true
	n, err := o.Conn.Write(append(wire.AppendVerdict(make([]byte, 0, 1+len(p)), wire.VerdictOK, ""), p...))
	return max(n-1, 0), err
}

func (o *okFirst) CloseWrite() error {
	if !o.sent {
		if _, err := o.Write(nil); err != nil {
			return err
		}
	}
	return o.Conn.CloseWrite()
}

// proxyHeader is the PROXY protocol header the header asks for, nil for
// none. Source is the client, destination the address it connected to on
// the listener (see package wire).
func proxyHeader(hdr wire.Header) (*proxyproto.Header, error) {
	if hdr.ProxyProtocol == wire.ProxyOff {
		return nil, nil
	}
	src, err := netip.ParseAddrPort(hdr.ClientAddr)
	if err != nil {
		return nil, fmt.Errorf("PROXY protocol: client address %q is not IP:port", hdr.ClientAddr)
	}
	dst, err := netip.ParseAddrPort(hdr.LocalAddr)
	if err != nil {
		return nil, fmt.Errorf("PROXY protocol: local address %q is not IP:port", hdr.LocalAddr)
	}
	// A zone has no place in either version; an IPv4-mapped IPv6 address
	// is the IPv4 client it stands for.
	tcp := func(ap netip.AddrPort) *net.TCPAddr {
		return net.TCPAddrFromAddrPort(netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port()))
	}
	h := proxyproto.HeaderProxyFromAddrs(hdr.ProxyProtocol, tcp(src), tcp(dst))
	if h.Command != proxyproto.PROXY {
		return nil, fmt.Errorf("PROXY protocol: no header for %s -> %s", hdr.ClientAddr, hdr.LocalAddr)
	}
	return h, nil
}

// dial connects to the target. With a policy, the policy decides, before
// anything is dialled, and the connector dials exactly the addresses it
// checked: the target name is looked up once, here, and never again.
func (c *Connector) dial(ctx context.Context, hdr wire.Header, target string) (*net.TCPConn, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(c.cfg.DialTimeout))
	defer cancel()
	var d net.Dialer
	if c.allow == nil {
		tc, err := d.DialContext(ctx, "tcp", target)
		if err != nil {
			return nil, err
		}
		return tc.(*net.TCPConn), nil
	}
	addrs, err := c.allow.Addrs(ctx, c.resolver, hdr.TargetHost, hdr.TargetPort)
	if err != nil {
		return nil, err
	}
	// One address after the other, each with its share of the time left,
	// as net.Dialer does with the addresses of a name.
	var first error
	for i, a := range addrs {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if deadline, ok := ctx.Deadline(); ok && i < len(addrs)-1 {
			share := time.Until(deadline) / time.Duration(len(addrs)-i)
			actx, cancel = context.WithTimeout(ctx, max(share, min(2*time.Second, time.Until(deadline))))
		}
		tc, err := d.DialContext(actx, "tcp", a.String())
		cancel()
		if err == nil {
			return tc.(*net.TCPConn), nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

// refuse sends a failure verdict and ends the stream. It drains, for a short
// while, what the listener pipelined behind the header: stopping the read at
// once would make the listener fail on its write and lose the verdict's reason.
func (c *Connector) refuse(st *quic.Stream, v wire.Verdict, reason string) {
	_, _ = st.Write(wire.AppendVerdict(nil, v, reason))
	_ = st.Close()
	_ = st.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 512)
	for {
		if _, err := st.Read(buf); err != nil {
			break
		}
	}
	st.CancelRead(quic.StreamErrorCode(wire.StreamCodeRefused))
}

func unwrapOpError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

func isGoingAway(err error) bool {
	var app *quic.ApplicationError
	return errors.As(err, &app) && app.Remote && app.ErrorCode == wire.CodeGoingAway
}

// isRefusal tells a listener's deliberate "no" from a network failure.
func isRefusal(err error) bool {
	var app *quic.ApplicationError
	if errors.As(err, &app) && app.Remote {
		// Replaced: another connector with this UID answered while this
		// one did not, and it will be refused as long as that one lives.
		return app.ErrorCode == wire.CodeDuplicateUID || app.ErrorCode == wire.CodeUnauthorized ||
			app.ErrorCode == wire.CodeReplaced
	}
	var te *quic.TransportError
	return errors.As(err, &te) && te.Remote && te.ErrorCode.IsCryptoError()
}

// isLocalTLSFailure is this connector refusing the listener's certificate.
func isLocalTLSFailure(err error) bool {
	var te *quic.TransportError
	return errors.As(err, &te) && !te.Remote && te.ErrorCode.IsCryptoError()
}

// describe words a connection failure for a person reading the log.
func describe(err error, dialing bool) string {
	var (
		app  *quic.ApplicationError
		idle *quic.IdleTimeoutError
		hs   *quic.HandshakeTimeoutError
		te   *quic.TransportError
	)
	switch {
	case err == nil:
		return "closed"
	case errors.As(err, &app) && app.Remote:
		return fmt.Sprintf("listener closed the connection: %s: %s", wire.CodeString(uint64(app.ErrorCode)), app.ErrorMessage)
	case errors.As(err, &idle) && dialing, errors.As(err, &hs):
		// Silence before the handshake completed: nothing came back at
		// all, which is what a firewall dropping UDP looks like.
		return "no answer from the listener: is it running, and is UDP allowed out?"
	case errors.As(err, &idle):
		return "no packet from the listener within the idle timeout"
	case errors.As(err, &te) && te.ErrorCode.IsCryptoError():
		return fmt.Sprintf("TLS handshake failed: %v", err)
	default:
		return err.Error()
	}
}

func streamReason(err error) string {
	var se *quic.StreamError
	switch {
	case err == nil:
		return "done"
	case errors.Is(err, relay.ErrClosed):
		return "connector shutting down"
	case errors.As(err, &se) && se.Remote:
		return "listener reset the stream: " + wire.CodeString(uint64(se.ErrorCode))
	default:
		return err.Error()
	}
}
