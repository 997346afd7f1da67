// Package connector is sw-connector as a library: New(cfg, log).Run(ctx).
//
// The connector runs inside a network that allows no inbound traffic. It
// dials out to sw-listener over QUIC with its client certificate, keeps that
// connection up forever, and for every stream the listener opens dials the
// target named in the stream header and relays bytes both ways.
package connector

import (
	"context"
	"crypto/tls"
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

	"github.com/socket-warp/socket-warp/connector/enroll"
	"github.com/socket-warp/socket-warp/connector/policy"
	"github.com/socket-warp/socket-warp/shared/backoff"
	"github.com/socket-warp/socket-warp/shared/debugserver"
	"github.com/socket-warp/socket-warp/shared/filewatch"
	"github.com/socket-warp/socket-warp/shared/logging"
	"github.com/socket-warp/socket-warp/shared/memtrim"
	"github.com/socket-warp/socket-warp/shared/metrics"
	"github.com/socket-warp/socket-warp/shared/quicconf"
	"github.com/socket-warp/socket-warp/shared/relay"
	"github.com/socket-warp/socket-warp/shared/teardown"
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
	floodLog *zap.Logger                      // for each stream's lines: the listener's clients decide how many (logging.Flood)
	certs    atomic.Pointer[tlsutil.Reloader] // nil until enrolled
	secret   *renewSecret                     // nil: no renewal
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
	c := &Connector{cfg: cfg, log: log, floodLog: logging.Flood(log)}
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
	if c.secret, err = newRenewSecret(cfg, log.Named("scep")); err != nil {
		return nil, err
	}
	host := cfg.ServerAddress
	if host == "" {
		host = cfg.ServerName
	}
	c.quicConf = quicconf.Windows(&quic.Config{
		// The heartbeats (see heartbeat) keep the connection alive; quic-go's
		// PINGs are the backstop for a listener that takes none, and at
		// twice the period they never fire while heartbeats are answered.
		KeepAlivePeriod: 2 * time.Duration(cfg.KeepAlive),
		EnableDatagrams: true,
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
	return c.dialListener(ctx, nil)
}

// dialListener is Dial presenting cert; nil: whatever the files hold at
// the handshake.
func (c *Connector) dialListener(ctx context.Context, cert *tls.Certificate) (*quic.Conn, *quic.Transport, error) {
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
	tlsConf := c.certs.Load().ClientConfig(c.cfg.ServerName)
	if cert != nil {
		tlsConf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	conn, err := tr.Dial(ctx, raddr, tlsConf, c.quicConf)
	if err != nil {
		closeTransport(tr)
		return nil, nil, fmt.Errorf("connect to %s: %w", c.addr, err)
	}
	return conn, tr, nil
}

// link is one QUIC connection to the listener, served by a goroutine of its
// own (startLink). There is one, except during a hand-over (keep): then the
// old one finishes its tunnels while the new one takes the new ones.
type link struct {
	conn *quic.Conn
	tr   *quic.Transport
	cert *tls.Certificate // the one it presented
	fp   string           // wire.CertFingerprint of it

	// successor is set while a hand-over from this link is under way: the
	// fingerprint of the new connection's certificate, which probes on this
	// link are answered with (wire.VerdictHandingOver).
	successor  atomic.Pointer[string]
	handedOver chan struct{} // closed when the listener's hand-over notice arrives
	notice     sync.Once

	done chan struct{} // closed once it has ended and its transport is closed
	err  error         // why it ended; read after done
}

// dialLink connects presenting cert, and keeps which certificate that was:
// the files may change between now and the handshake, and a hand-over must
// know what the listener saw.
func (c *Connector) dialLink(ctx context.Context, cert *tls.Certificate) (*link, error) {
	conn, tr, err := c.dialListener(ctx, cert)
	if err != nil {
		return nil, err
	}
	return &link{conn: conn, tr: tr, cert: cert, fp: wire.CertFingerprint(cert.Certificate[0]),
		handedOver: make(chan struct{}), done: make(chan struct{})}, nil
}

// startLink serves lk until it ends, in a goroutine that wg owns.
func (c *Connector) startLink(ctx context.Context, lk *link, wg *sync.WaitGroup) {
	c.stats.connections.Add(1)
	wg.Go(func() {
		defer close(lk.done)
		lk.err = c.serve(ctx, lk)
		closeTransport(lk.tr)
		c.stats.connections.Add(-1)
	})
}

func (lk *link) ended() bool {
	select {
	case <-lk.done:
		return true
	default:
		return false
	}
}

func leafSerial(cert *tls.Certificate) string { return cert.Leaf.SerialNumber.Text(16) }

func closeTransport(tr *quic.Transport) {
	_ = tr.Close()
	_ = tr.Conn.Close()
}

// ReloadCertificates re-reads the certificate, key and CA files (part of
// Reload, which SIGHUP calls).
// The next handshake uses the new material; a new certificate also moves
// the connector to a new connection, its tunnels finishing on the old one
// (a hand-over: see keep).
func (c *Connector) ReloadCertificates() error {
	if certs := c.certs.Load(); certs != nil {
		return certs.Reload()
	}
	return nil
}

// Reload re-reads what the connector reads from files (SIGHUP): the
// certificates (ReloadCertificates) and renew_secret_file.
func (c *Connector) Reload() error {
	if c.secret != nil {
		c.secret.load()
	}
	return c.ReloadCertificates()
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
	if c.secret != nil {
		if c.secret.path != "" {
			wg.Go(func() {
				filewatch.Run(ctx, []string{c.secret.path}, filewatch.Options{What: "renewal secret", Log: c.log}, c.secret.load)
			})
		}
		wg.Go(func() { c.renewLoop(ctx, certs) })
	}
	// keep hands over when the certificate changes.
	changed := certs.Subscribe()
	bo := &backoff.Backoff{Min: time.Duration(c.cfg.RetryMin), Max: time.Duration(c.cfg.RetryMax)}
	healthy := time.Duration(c.cfg.RetryMax)
	for attempt := 1; ; attempt++ {
		lk, err := c.dialLink(ctx, certs.Certificate())
		if ctx.Err() != nil {
			if lk != nil {
				_ = lk.conn.CloseWithError(wire.CodeGoingAway, teardown.ConnectorShuttingDown)
				closeTransport(lk.tr)
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
			reason = c.keep(ctx, lk, certs, changed, &wg)
			c.stats.connected.Store(false)
			if ctx.Err() != nil {
				return nil
			}
			if time.Since(since) >= healthy {
				bo.Reset()
			}
		}
		c.stats.reconnect(reconnectReason(reason, err != nil))
		delay := bo.Next()
		if isGoingAway(reason) || isStatelessReset(reason) {
			// The listener is restarting, or has restarted (a reset
			// comes from a listener that is up but lost the connection):
			// come back as soon as it is up.
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

// keep serves lk, and each connection that takes its place in a hand-over,
// until the current one ends, and returns why. Whenever the certificate
// files hold another certificate than the current connection presented (a
// renewal, or new files picked up by a reload), it hands over: a new
// connection with the new certificate takes the new tunnels, while the old
// one finishes its own and closes (serve). The old one's end is not a loss:
// nothing reconnects. If the listener does not take the new connection,
// the old one stays; a refusal is not tried again for that certificate
// (a listener older than hand-overs refuses every one), anything else is,
// with backoff.
func (c *Connector) keep(ctx context.Context, lk *link, certs *tlsutil.Reloader, changed <-chan struct{}, wg *sync.WaitGroup) error {
	c.startLink(ctx, lk, wg)
	var (
		next    *link // the new connection of a hand-over under way
		retry   *time.Timer
		retryC  <-chan time.Time
		refused string // the fingerprint of a certificate the listener refused a hand-over to
		bo      = &backoff.Backoff{Min: time.Duration(c.cfg.RetryMin), Max: time.Duration(c.cfg.RetryMax)}
	)
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	// failed keeps lk after a hand-over to cert failed with err.
	failed := func(cert *tls.Certificate, err error, dialing bool) {
		lk.successor.Store(nil)
		c.stats.handOver(handOverFailed)
		fields := []zap.Field{logging.Reason(describe(err, dialing)), zap.String("new_serial", leafSerial(cert))}
		if isRefusal(err) {
			refused = wire.CertFingerprint(cert.Certificate[0])
			c.log.Warn("hand-over refused, staying on the old connection until it ends: the next one presents the new certificate",
				fields...)
			return
		}
		delay := bo.Next()
		c.log.Warn("hand-over failed, staying on the old connection", append(fields, zap.Duration("retry_in", delay))...)
		retry = time.NewTimer(delay)
		retryC = retry.C
	}
	for {
		if next == nil && retryC == nil {
			if cert := certs.Certificate(); cert != lk.cert {
				if fp := wire.CertFingerprint(cert.Certificate[0]); fp != lk.fp && fp != refused {
					var err error
					if next, err = c.handOver(ctx, lk, cert, wg); err != nil {
						if ctx.Err() != nil {
							return ctx.Err()
						}
						failed(cert, err, true)
					}
				}
			}
		}
		var nextDone, handedOver <-chan struct{}
		if next != nil {
			nextDone, handedOver = next.done, lk.handedOver
		}
		select {
		case <-ctx.Done():
			// Every link drains by itself; Run waits for them.
			return ctx.Err()
		case <-changed:
		case <-retryC:
			retryC = nil
		case <-handedOver:
			c.handedOver(lk, next)
			lk, next = next, nil
			bo.Reset()
		case <-lk.done:
			if next == nil || next.ended() {
				return lk.err
			}
			// The old connection ended before the listener's notice
			// came: the new one is all there is, and the listener binds
			// it once it finds the old one gone.
			c.handedOver(lk, next)
			lk, next = next, nil
		case <-nextDone:
			// The listener did not take the new connection.
			failed(next.cert, next.err, false)
			next = nil
		}
	}
}

// handOver starts moving from lk to a new connection presenting cert. From
// now on probes on lk name cert's fingerprint, so that the listener lets
// the new connection, and only it, take lk's place; the new connection is
// served at once, since the listener sends it streams as soon as it is
// bound. It returns the new connection, not yet accepted.
func (c *Connector) handOver(ctx context.Context, lk *link, cert *tls.Certificate, wg *sync.WaitGroup) (*link, error) {
	fp := wire.CertFingerprint(cert.Certificate[0])
	lk.successor.Store(&fp)
	c.log.Debug("handing over to a new connection", zap.String("old_serial", leafSerial(lk.cert)), zap.String("new_serial", leafSerial(cert)))
	next, err := c.dialLink(ctx, cert)
	if err != nil {
		return nil, err
	}
	c.startLink(ctx, next, wg)
	return next, nil
}

// handedOver logs and counts a hand-over from old to next.
func (c *Connector) handedOver(old, next *link) {
	c.stats.handOver(handOverOK)
	c.log.Info("handed over to a new connection", logging.UID(next.cert.Leaf.Subject.CommonName),
		zap.String("old_serial", leafSerial(old.cert)), zap.String("new_serial", leafSerial(next.cert)),
		logging.Remote(next.conn.RemoteAddr().String()))
}

// serve accepts the listener's streams on lk until the connection ends, and
// returns why it ended. When ctx ends first it drains: new streams are
// refused with "going away", the tunnels that run get SWC_DRAIN_TIMEOUT to
// finish, then the connection is closed with "going away". After a
// hand-over it drains the same way, but for SWC_HANDOVER_TIMEOUT and still
// serving what comes (a stream the listener opened just before it
// switched), then closes the connection without an error. It returns only
// after every stream handler has.
func (c *Connector) serve(ctx context.Context, lk *link) error {
	conn := lk.conn
	c.log.Info("connected", zap.String("server", c.addr), logging.Remote(conn.RemoteAddr().String()),
		zap.String("serial", leafSerial(lk.cert)))
	var (
		wg       sync.WaitGroup     // every stream handler
		tunnels  = newTunnelCount() // the handlers a drain waits for
		draining atomic.Bool
	)
	// The accept loop is serve's: it ends with the connection, and serve
	// waits for it before it waits for the handlers it started.
	accepted := make(chan error, 1)
	wg.Go(func() { c.heartbeat(conn) })
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
				c.handleStream(conn.Context(), lk, st)
			})
		}
	}()
	shutdown := func() bool {
		draining.Store(true)
		return c.drain(tunnels, time.Duration(c.cfg.DrainTimeout), nil, teardown.ConnectorShuttingDown)
	}
	var err error
	select {
	case err = <-accepted:
	case <-ctx.Done():
		if shutdown() {
			linger(conn)
		}
		// Close before Run closes the transport, which would drop the
		// connection without a CONNECTION_CLOSE and leave the listener
		// holding the UID until its idle timeout.
		_ = conn.CloseWithError(wire.CodeGoingAway, teardown.ConnectorShuttingDown)
		err = <-accepted
	case <-lk.handedOver:
		drained := c.drain(tunnels, time.Duration(c.cfg.HandoverTimeout), ctx.Done(), teardown.HandedOver)
		if !drained && ctx.Err() != nil {
			drained = shutdown() // from here on, the shutdown's bound
		}
		if drained {
			linger(conn)
		}
		_ = conn.CloseWithError(wire.CodeNoError, teardown.HandedOver)
		err = <-accepted
	}
	wg.Wait()
	if cause := context.Cause(conn.Context()); cause != nil {
		return cause
	}
	return err
}

// drain waits until the running tunnels end, timeout passes or stop is
// closed (nil: never), and reports whether they all ended. why, in its log
// lines, says what it drains for.
func (c *Connector) drain(tunnels *tunnelCount, timeout time.Duration, stop <-chan struct{}, why string) bool {
	return teardown.Drain{Log: c.log, Why: why, Timeout: timeout, Stop: stop, Running: tunnels.n.Load, Ended: tunnels.changed}.Run()
}

// linger keeps a drained connection open a moment before it is closed (see
// teardown.Linger; sw-listener does the same).
func linger(conn *quic.Conn) { teardown.Linger(conn.Context().Done(), conn) }

// refuseDraining answers a stream opened during the drain without reading
// its header: a probe learns that this connector is going away (so a new
// one of its UID may take its place), a client is reset by the listener,
// which then opens no more streams to this connection.
func (c *Connector) refuseDraining(st *quic.Stream) {
	c.stats.stream(streamGoingAway)
	c.refuse(st, wire.VerdictGoingAway, teardown.ConnectorShuttingDown)
	c.floodLog.Info("stream refused", logging.Stream(int64(st.StreamID())), logging.Reason(teardown.ConnectorShuttingDown))
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

// handleStream reads the header, dials the target, sends the verdict, relays.
func (c *Connector) handleStream(ctx context.Context, lk *link, st *quic.Stream) {
	start := time.Now()
	// Fields rather than a child logger: zap's With encodes them into a
	// buffer of its own, which an idle tunnel would hold for its lifetime.
	id := make([]zap.Field, 0, 8)
	id = append(id, logging.Stream(int64(st.StreamID())))
	tc := relay.OnFreshStack(func() *net.TCPConn { return c.openTarget(ctx, lk, st, start, &id) })
	if tc == nil {
		return
	}
	c.stats.stream(streamOK)
	c.stats.streams.Add(1)
	res := relay.Relay(ctx, &okFirst{Conn: relay.Stream(st)}, relay.TCP(tc), relay.Counters{AToB: &c.stats.bytesUp, BToA: &c.stats.bytesDown})
	c.stats.streams.Add(-1)
	c.floodLog.Info("tunnel closed", append(id, logging.BytesUp(res.AToB), logging.BytesDown(res.BToA),
		logging.Duration(time.Since(start)), logging.Reason(streamReason(res.Err)))...)
}

// openTarget reads the stream's header and dials its target. It answers and
// ends the stream itself and returns nil when it refuses it; a probe and a
// hand-over notice are answered the same way.
func (c *Connector) openTarget(ctx context.Context, lk *link, st *quic.Stream, start time.Time, idp *[]zap.Field) *net.TCPConn {
	id := *idp
	defer func() { *idp = id }()
	// A listener that opens a stream and sends nothing must not pin this
	// goroutine forever.
	_ = st.SetReadDeadline(start.Add(time.Duration(c.cfg.HeaderTimeout)))
	hdr, err := wire.ReadHeader(st)
	_ = st.SetReadDeadline(time.Time{})
	if err != nil {
		c.stats.stream(streamBadHeader)
		c.refuse(st, wire.VerdictBadHeader, err.Error())
		c.floodLog.Warn("stream refused", append(id, logging.Reason(err.Error()))...)
		return nil
	}
	if hdr.Probe {
		// The listener asks whether this connection is still alive
		// (another connection with this UID arrived): yes, and nothing
		// to dial. refuse answers and ends the stream the same way for
		// any verdict. During a hand-over the answer names the one
		// certificate that may take this connection's place.
		v, reason := wire.VerdictOK, ""
		if fp := lk.successor.Load(); fp != nil {
			v, reason = wire.VerdictHandingOver, *fp
		}
		c.refuse(st, v, reason)
		c.log.Debug("probe answered", append(id, zap.Stringer("verdict", v))...)
		return nil
	}
	if hdr.HandedOver {
		// The new connection took this one's place. Honoured only when
		// this connector announced it: nobody else may make it drain.
		if lk.successor.Load() == nil {
			reason := "hand-over notice, but no hand-over was announced"
			c.refuse(st, wire.VerdictBadHeader, reason)
			c.log.Warn("stream refused", append(id, logging.Reason(reason))...)
			return nil
		}
		c.refuse(st, wire.VerdictOK, "")
		lk.notice.Do(func() { close(lk.handedOver) })
		return nil
	}
	target := net.JoinHostPort(hdr.TargetHost, strconv.Itoa(int(hdr.TargetPort)))
	id = append(id, logging.Target(target), logging.Remote(hdr.ClientAddr), logging.Port(int(hdr.OpenedPort)))
	// Before dialling: a target that expects a PROXY header must get a
	// true one or no connection at all.
	proxyHdr, err := proxyHeader(hdr)
	if err != nil {
		c.stats.stream(streamBadHeader)
		c.refuse(st, wire.VerdictBadHeader, err.Error())
		c.floodLog.Warn("stream refused", append(id, logging.Reason(err.Error()))...)
		return nil
	}

	tc, err := c.dial(ctx, hdr, target)
	var refusal *policy.Refusal
	if errors.As(err, &refusal) {
		// The listener learns that much and no more: the detail may say
		// what an internal name resolves to.
		reason := fmt.Sprintf("target %s is not allowed by SWC_ALLOW", target)
		c.stats.stream(streamForbidden)
		c.refuse(st, wire.VerdictForbidden, reason)
		c.floodLog.Warn("stream refused", append(id, logging.Reason(reason+": "+refusal.Detail))...)
		return nil
	}
	if err != nil {
		c.stats.dialFailure(target)
		c.stats.stream(streamDialFailed)
		reason := fmt.Sprintf("dial %s: %v", target, unwrapOpError(err))
		c.refuse(st, wire.VerdictDialFailed, reason)
		c.floodLog.Warn("stream refused", append(id, logging.Reason(reason))...)
		return nil
	}
	if proxyHdr != nil {
		if _, err := proxyHdr.WriteTo(tc); err != nil {
			tc.Close()
			reason := fmt.Sprintf("write PROXY header to %s: %v", target, unwrapOpError(err))
			c.stats.stream(streamDialFailed)
			c.refuse(st, wire.VerdictDialFailed, reason)
			c.floodLog.Warn("stream refused", append(id, logging.Reason(reason))...)
			return nil
		}
	}
	c.floodLog.Info("tunnel opened", id...)
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

// isStatelessReset is the listener saying it no longer knows the connection:
// it crashed and was started again (see heartbeat).
func isStatelessReset(err error) bool {
	var reset *quic.StatelessResetError
	return errors.As(err, &reset)
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
	case isStatelessReset(err):
		return "the listener no longer knows this connection (stateless reset): it restarted without closing it"
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
		return teardown.ConnectorShuttingDown
	case errors.As(err, &se) && se.Remote:
		return "listener reset the stream: " + wire.CodeString(uint64(se.ErrorCode))
	default:
		return err.Error()
	}
}
