// Package listener is sw-listener as a library: New(cfg, log).Run(ctx).
//
// Connectors dial in over QUIC with a client certificate; each is bound to
// its UID. The HTTP API opens TCP ports; every TCP connection accepted on one
// becomes one QUIC stream to the port's connector, which dials the target.
package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/listener/api"
	"github.com/socket-warp/socket-warp/listener/auth"
	"github.com/socket-warp/socket-warp/listener/port"
	"github.com/socket-warp/socket-warp/listener/reconcile"
	"github.com/socket-warp/socket-warp/listener/registry"
	"github.com/socket-warp/socket-warp/listener/store"
	"github.com/socket-warp/socket-warp/shared/debugserver"
	"github.com/socket-warp/socket-warp/shared/logging"
	"github.com/socket-warp/socket-warp/shared/memtrim"
	"github.com/socket-warp/socket-warp/shared/metrics"
	"github.com/socket-warp/socket-warp/shared/quicconf"
	"github.com/socket-warp/socket-warp/shared/teardown"
	"github.com/socket-warp/socket-warp/shared/tlsutil"
	"github.com/socket-warp/socket-warp/shared/udpsock"
	"github.com/socket-warp/socket-warp/shared/wire"
)

// ErrShuttingDown is returned by API calls that arrive during shutdown.
var ErrShuttingDown = fmt.Errorf("listener is shutting down: %w", port.ErrUnavailable)

// Listener is one sw-listener.
type Listener struct {
	cfg       Config
	log       *zap.Logger
	floodLog  *zap.Logger // for lines anyone can cause at will: refusals, each client of an opened port (logging.Flood)
	certs     *tlsutil.Reloader
	verifier  auth.Verifier
	scep      *auth.SCEP // nil without SWL_SCEP_URL
	crl       *auth.CRL  // nil without SWL_CRL_PATH / SWL_CRL_URL
	sessions  registry.Registry
	openAddrs []string

	transports []*quic.Transport
	quicLns    []*quic.Listener
	apiLns     []net.Listener
	api        *echo.Echo
	pprof      *debugserver.Server // nil without SWL_PPROF_ADDR

	store      store.Store           // the opened ports: what the API writes
	reconciler *reconcile.Reconciler // makes ports match store
	ports      *portTable

	probes   uidLocks // one liveness probe per UID at a time
	uidConns uidConns // tunnelled connections per UID, for SWL_MAX_CONNS_PER_UID

	metrics           *prometheus.Registry
	metricsSrv        *metrics.Server // nil without SWL_METRICS_ADDR
	streamOpen        prometheus.Histogram
	outcomes          [numOutcomes]atomic.Int64 // clients of opened ports, by outcome
	refusedConnectors refusalCounts             // by reason
	handOvers         atomic.Int64              // connectors moved to a new connection
	drainReplaced     atomic.Int64              // connections replaced while going away
	surplusClosed     atomic.Int64              // connections left to drain, closed beyond registry.MaxPredecessors
	acceptErrors      [numAcceptKinds]atomic.Int64
	rebinds           atomic.Int64 // dead port sockets bound anew

	// portDownHook, set by a test before Run, runs in the accept loop
	// once the dead socket of port is closed, before it is bound anew.
	portDownHook    func(port int)
	refusedRequests apiRefusalCounts // API requests, by api.RefusalReasons
}

// New opens the state file, loads the certificates and binds the QUIC and
// API sockets, so that any problem stops the daemon before it claims to be
// running. Run must follow.
func New(cfg Config, log *zap.Logger) (_ *Listener, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &Listener{
		cfg:      cfg,
		log:      log,
		floodLog: logging.Flood(log),
		sessions: registry.NewMemory(),
		ports:    newPortTable(cfg.MaxPorts),
	}
	// First, before anything is loaded, logged or bound: a wrong path,
	// or another listener on the file, is then the only thing New says.
	// The file stays locked until Run ends.
	if err := l.openStore(); err != nil {
		return nil, err
	}
	l.reconciler = reconcile.New(l.store, portBinder{l}, log)
	// Every exit with an error closes what was opened by then; each close
	// skips what is not open.
	defer func() {
		if err != nil {
			l.closeSockets()
			l.closeAuth()
			l.closeStore()
		}
	}()
	if l.certs, err = tlsutil.NewReloader(cfg.CertPath, cfg.KeyPath, cfg.CAPath, log.Named("tls")); err != nil {
		return nil, err
	}
	if err := l.buildVerifier(); err != nil {
		return nil, err
	}
	l.openAddrs, _ = SplitAddrs(cfg.OpenAddrs) // validated above
	l.initMetrics()
	token, err := cfg.apiToken()
	if err != nil {
		return nil, err
	}
	if token == "" && cfg.APIInsecure && len(nonLoopback(cfg.APIAddrs)) > 0 {
		log.Warn("api has no token on a non-loopback address (SWL_API_INSECURE=true): whoever reaches it can open ports",
			zap.String("addrs", cfg.APIAddrs))
	}
	hosts, _ := cfg.apiAllowedHosts() // validated above
	apiOpts := []api.Option{api.WithToken(token), api.WithHealth(l.ready), api.WithAllowedHosts(hosts...),
		api.WithRefusals(l.refusedRequests.add)}
	if cfg.MetricsAddr == "" {
		apiOpts = append(apiOpts, api.WithMetrics(metrics.Handler(l.metrics)))
	}
	l.api = api.New(l, log, apiOpts...)

	tlsConf := l.certs.ServerConfig(l.handshakeRefused)
	quicConf := quicconf.Windows(&quic.Config{
		MaxIdleTimeout:  cfg.IdleTimeout,
		KeepAlivePeriod: cfg.KeepAlive,
		// Streams are opened by the listener only; a connector has no
		// business opening any.
		MaxIncomingStreams:    -1,
		MaxIncomingUniStreams: -1,
		// For the connector's heartbeats (see wire.HeartbeatLen).
		EnableDatagrams: true,
	})
	resetKey, err := loadResetKey(cfg.StatePath, log)
	if err != nil {
		return nil, err
	}
	quicAddrs, _ := SplitAddrs(cfg.Addrs)
	for _, a := range quicAddrs {
		ln, err := l.listenQUIC(hostPort(a, cfg.Port), tlsConf, quicConf, resetKey)
		if err != nil {
			return nil, fmt.Errorf("listen for connectors on udp %s: %w", hostPort(a, cfg.Port), err)
		}
		l.quicLns = append(l.quicLns, ln)
	}
	apiAddrs, _ := SplitAddrs(cfg.APIAddrs)
	for _, a := range apiAddrs {
		ln, err := net.Listen("tcp", hostPort(a, cfg.APIPort))
		if err != nil {
			return nil, fmt.Errorf("listen for the API on tcp %s: %w", hostPort(a, cfg.APIPort), err)
		}
		l.apiLns = append(l.apiLns, ln)
	}
	if cfg.MetricsAddr != "" {
		if l.metricsSrv, err = metrics.Listen("SWL_METRICS_ADDR", cfg.MetricsAddr, l.metrics, l.ready, log); err != nil {
			return nil, err
		}
	}
	if cfg.PprofAddr != "" {
		if l.pprof, err = debugserver.Listen(cfg.PprofAddr, log); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// listenQUIC owns its Transport: closing that, unlike a listener made by
// quic.ListenAddr, ends every connection and goroutine at once instead of
// letting closed connections linger in the background.
func (l *Listener) listenQUIC(addr string, tlsConf *tls.Config, quicConf *quic.Config, resetKey *quic.StatelessResetKey) (*quic.Listener, error) {
	udp, err := udpsock.Listen(addr, l.log)
	if err != nil {
		return nil, err
	}
	tr := &quic.Transport{Conn: udp, StatelessResetKey: resetKey}
	ln, err := tr.Listen(tlsConf, quicConf)
	if err != nil {
		udp.Close()
		return nil, err
	}
	l.transports = append(l.transports, tr)
	return ln, nil
}

func (l *Listener) closeSockets() {
	for _, ln := range l.quicLns {
		ln.Close()
	}
	for _, tr := range l.transports {
		tr.Close()
		tr.Conn.Close()
	}
	for _, ln := range l.apiLns {
		ln.Close()
	}
	if l.metricsSrv != nil {
		l.metricsSrv.Close()
	}
	if l.pprof != nil {
		l.pprof.Close()
	}
}

// QUICAddrs are the bound QUIC addresses (useful with port 0).
func (l *Listener) QUICAddrs() []net.Addr {
	out := make([]net.Addr, len(l.quicLns))
	for i, ln := range l.quicLns {
		out[i] = ln.Addr()
	}
	return out
}

// APIAddrs are the bound API addresses.
func (l *Listener) APIAddrs() []net.Addr {
	out := make([]net.Addr, len(l.apiLns))
	for i, ln := range l.apiLns {
		out[i] = ln.Addr()
	}
	return out
}

// Run serves until ctx ends, then shuts down gracefully: the API stops, no
// connector and no client is accepted any more, the tunnels that run get
// SWL_DRAIN_TIMEOUT to finish, then every tunnel is ended and every
// connection closed with "going away" (its connector comes back at once,
// to the next listener). It returns when all of its goroutines have, the
// verifiers' included.
func (l *Listener) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Tunnels and connector connections outlive ctx by the drain: each
	// has a context of its own, ended after it.
	tunnelCtx, endTunnels := context.WithCancel(context.WithoutCancel(ctx))
	defer endTunnels()
	connCtx, closeConns := context.WithCancel(context.WithoutCancel(ctx))
	defer closeConns()
	var wg sync.WaitGroup
	// Before the API serves its first request.
	if err := l.restore(context.WithoutCancel(ctx), tunnelCtx); err != nil {
		for _, b := range l.ports.stop() {
			b.close()
		}
		l.closeSockets()
		l.closeAuth()
		l.closeStore()
		return err
	}
	reconciled := make(chan struct{})
	go func() {
		defer close(reconciled)
		l.reconciler.Run(ctx)
	}()

	fatal := make(chan error, len(l.apiLns)+1)
	servers := make([]*http.Server, len(l.apiLns))
	for i, ln := range l.apiLns {
		srv := &http.Server{
			Handler:           l.api,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          zap.NewStdLog(l.log.Named("http")),
		}
		servers[i] = srv
		wg.Go(func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				fatal <- fmt.Errorf("serve API on %s: %w", ln.Addr(), err)
				cancel()
			}
		})
	}
	for _, ln := range l.quicLns {
		wg.Go(func() { l.acceptConnectors(ctx, connCtx, ln, &wg) })
	}
	if l.metricsSrv != nil {
		// Until the very end: a scrape during the drain is worth having.
		wg.Go(func() {
			if err := l.metricsSrv.Serve(connCtx); err != nil {
				fatal <- err
				cancel()
			}
		})
	}
	wg.Go(func() { _ = l.certs.Run(ctx) })
	wg.Go(func() { memtrim.Run(ctx, l.log) })
	if l.pprof != nil {
		wg.Go(func() {
			if err := l.pprof.Run(ctx); err != nil {
				l.log.Error("pprof stopped", logging.Reason(err.Error()))
			}
		})
	}
	if l.crl != nil {
		wg.Go(func() { l.crl.Run(ctx) })
	}
	if l.cfg.SCEPURL != "" {
		wg.Go(func() { l.recheckLoop(ctx, l.cfg.VerifyCacheTTL) })
	}
	for _, a := range l.QUICAddrs() {
		l.log.Info("listening for connectors", zap.Stringer("addr", a))
	}
	for _, a := range l.APIAddrs() {
		l.log.Info("api listening", zap.Stringer("addr", a))
	}

	<-ctx.Done()
	l.log.Info("shutting down")
	for _, srv := range servers {
		shutCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
		// Shutdown leaves a connection that has not sent its first request
		// alone until it is 5 s old; Close cuts what Shutdown did not end,
		// so no connection outlives Run.
		if err := srv.Shutdown(shutCtx); err != nil {
			_ = srv.Close()
		}
		done()
	}
	// No port opens or closes from here on.
	<-reconciled
	bindings := l.ports.stop()
	// No new connector and no new client from here on; the tunnels that
	// run drain over the connections that carry them.
	l.refuseConnectors()
	if l.drain(bindings) {
		l.linger()
	}
	endTunnels()
	// serveConnector closes every connection with "going away": its
	// connector comes back at once, to the next listener.
	closeConns()
	wg.Wait()
	l.closeSockets()
	// Every goroutine that could verify has ended: SCEP requests still in
	// flight have nobody waiting for them.
	l.closeAuth()
	l.closeStore()
	select {
	case err := <-fatal:
		return err
	default:
		return nil
	}
}

// acceptConnectors accepts until ctx ends; each connection is served until
// connCtx does, which is later: after the drain.
func (l *Listener) acceptConnectors(ctx, connCtx context.Context, ln *quic.Listener, wg *sync.WaitGroup) {
	for {
		conn, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		wg.Go(func() { l.serveConnector(connCtx, conn) })
	}
}

// serveConnector binds the connection to its UID for as long as it lives.
// quic-go's Accept returns only after the handshake completed, so the client
// certificate has been verified before anything here acts on the connection.
func (l *Listener) serveConnector(ctx context.Context, conn *quic.Conn) {
	remote := conn.RemoteAddr().String()
	log := l.log.With(logging.Remote(remote))
	// The handshake verified the chain but leaves none in the state (see
	// tlsutil); the CRL judges the CAs of the chains.
	state := conn.ConnectionState().TLS
	chains, err := l.certs.VerifyClient(state.PeerCertificates)
	if err != nil {
		// The CA file changed since the handshake.
		l.refuseConnector(conn, []zap.Field{logging.Remote(remote)}, tlsutil.RefusalReason(err), err)
		return
	}
	state.VerifiedChains = chains
	uid, err := l.verifier.Verify(ctx, state)
	if err != nil {
		l.refuseConnector(conn, []zap.Field{logging.Remote(remote)}, l.verifyReason(state, err), err)
		return
	}
	log = log.With(logging.UID(uid))
	s := &registry.Session{UID: uid, Conn: conn, Remote: remote, Since: time.Now(), TLS: state,
		HandedOver: make(chan *registry.Session, 1)}
	bound, successor := l.bindSession(ctx, s, log)
	if !bound {
		return
	}
	// A successor of a connection left to drain is what a holder of the
	// UID's certificates can make in a loop, as fast as handshakes go
	// (going away, or handing over between two certificates of its own):
	// its lines are sampled. The connections such a loop leaves open are
	// bounded by the registry.
	lifeLog := log
	if successor {
		lifeLog = l.sampled(s)
	}
	// A CRL that replaced the list after Verify checked it was applied by
	// dropRevoked to the sessions bound then, maybe not yet this one; the
	// list is replaced before dropRevoked lists the sessions, so checking
	// again now that this one is bound leaves no gap.
	if l.crl != nil {
		if err := l.crl.Check(s.TLS); err != nil {
			l.sessions.Release(s)
			l.refuseConnector(conn, []zap.Field{logging.Remote(remote), logging.UID(uid)}, l.verifyReason(s.TLS, err), err)
			return
		}
	}
	leaf := s.TLS.PeerCertificates[0]
	lifeLog.Info("connector connected", zap.String("serial", leaf.SerialNumber.Text(16)), zap.Time("not_after", leaf.NotAfter))
	heartbeats := discardHeartbeats(conn)
	// After a hand-over the connection is no longer re-verified: its
	// certificate is typically revoked as superseded while its last
	// tunnels still run. It lives on the authority of its successor
	// instead, which is: it ends when the successor does (refused by a
	// re-check or a CRL, or gone) — unless that one was handed over in
	// turn, and passed the authority on. Its connector closes it once
	// drained.
	var (
		succ          *registry.Session
		successorDone <-chan struct{}
	)
wait:
	for {
		select {
		case <-conn.Context().Done():
			break wait
		case <-ctx.Done():
			_ = conn.CloseWithError(wire.CodeGoingAway, teardown.ListenerShuttingDown)
			break wait
		case succ = <-s.HandedOver:
			successorDone = succ.Conn.Context().Done()
			v, reason, err := l.ask(ctx, s, wire.HandedOverHeader)
			switch {
			case ctx.Err() != nil:
				// Shutting down: the case above closes it.
			case err != nil:
				// Not told, it would keep the connection for ever.
				_ = conn.CloseWithError(wire.CodeReplaced, "hand-over notice: "+err.Error())
			case v != wire.VerdictOK:
				_ = conn.CloseWithError(wire.CodeReplaced, fmt.Sprintf("hand-over notice: %s: %s", v, reason))
			}
		case <-successorDone:
			if next := succ.Successor.Load(); next != nil {
				succ, successorDone = next, next.Conn.Context().Done()
				continue
			}
			_ = conn.CloseWithError(wire.CodeReplaced, "the connection it was handed over to has ended")
		}
	}
	<-heartbeats
	l.sessions.Release(s)
	lifeLog.Info("connector disconnected", logging.Reason(closeReason(context.Cause(conn.Context()))),
		logging.Duration(time.Since(s.Since)))
}

// closeReason words a QUIC connection's end for the log.
func closeReason(err error) string {
	var (
		app  *quic.ApplicationError
		idle *quic.IdleTimeoutError
	)
	switch {
	case errors.As(err, &idle):
		return "idle timeout: no packet from the connector"
	case errors.As(err, &app):
		who := "listener"
		if app.Remote {
			who = "connector"
		}
		if app.ErrorMessage != "" {
			return fmt.Sprintf("closed by %s: %s (%s)", who, wire.CodeString(uint64(app.ErrorCode)), app.ErrorMessage)
		}
		return fmt.Sprintf("closed by %s: %s", who, wire.CodeString(uint64(app.ErrorCode)))
	case err == nil:
		return "closed"
	default:
		return err.Error()
	}
}

// OpenPort implements api.Service: it writes the port to the store and
// answers once this listener's reconciler has bound it. If this listener
// could not bind it (its address is taken, on some SWL_OPEN_ADDRS address
// or all), the port is removed from the store again and the open fails:
// what the API said it opened is what the listener serves. Opening a port
// that is listed with an error because it cannot be served as stored
// replaces it. Neither the write nor the bind holds up anything but this
// open (portTable).
func (l *Listener) OpenPort(ctx context.Context, p port.Spec) error {
	p.Error = ""
	if l.sessions.Holder(p.UID) == nil {
		return fmt.Errorf("open port %d: uid %s: %w", p.Port, p.UID, port.ErrNotConnected)
	}
	prev, done, err := l.ports.admit(p.Port)
	if err != nil {
		return fmt.Errorf("open port %d: %w", p.Port, err)
	}
	defer done()
	rev, err := l.store.Put(ctx, p, prev)
	switch {
	case errors.Is(err, port.ErrAlreadyOpen):
		return fmt.Errorf("open port %d: %w", p.Port, port.ErrAlreadyOpen)
	case err != nil:
		// %v: a failing state file is the listener's problem (500),
		// whatever the OS said about it.
		return fmt.Errorf("open port %d: not opened: %v", p.Port, err)
	}
	if err := l.reconciled(ctx, rev); err != nil {
		return fmt.Errorf("open port %d: %w", p.Port, err)
	}
	if bindErr := l.ports.outcome(p.Port, rev); bindErr != nil {
		// Given back, and waited for: the next open of the port must
		// find its address as this one did, not held by this one.
		if _, rev, err := l.store.Delete(context.WithoutCancel(ctx), p.Port, rev); err == nil {
			_ = l.reconciled(ctx, rev)
		} else if !errors.Is(err, store.ErrConflict) && !errors.Is(err, port.ErrNotOpen) {
			l.log.Error("port not bound, and could not be removed from the state file", logging.Port(p.Port),
				logging.Reason(err.Error()))
		}
		return fmt.Errorf("open port %d: %w", p.Port, bindErr)
	}
	return nil
}

// reconciled waits until the reconciler has applied the change at rev.
func (l *Listener) reconciled(ctx context.Context, rev int64) error {
	err := l.reconciler.Wait(ctx, rev)
	if errors.Is(err, reconcile.ErrStopped) {
		return ErrShuttingDown
	}
	return err
}

// ClosePort implements api.Service: the port is removed from the store,
// and the answer comes once this listener's reconciler has closed it:
// it stops listening, and every tunnelled connection it carries has
// ended. If the store cannot be changed the port stays open: a restart
// would re-open it, so it must not look closed now. A port that cannot be
// served as stored is only removed.
func (l *Listener) ClosePort(ctx context.Context, number int) (port.Spec, error) {
	if _, _, err := l.ports.view(); err != nil {
		return port.Spec{}, fmt.Errorf("close port %d: %w", number, ErrShuttingDown)
	}
	listed, _ := l.ports.entry(number)
	p, rev, err := l.store.Delete(ctx, number, 0)
	switch {
	case errors.Is(err, port.ErrNotOpen):
		return port.Spec{}, fmt.Errorf("close port %d: %w", number, port.ErrNotOpen)
	case err != nil:
		return port.Spec{}, fmt.Errorf("close port %d: not closed: %v", number, err)
	}
	if listed.b == nil && listed.err != nil && listed.spec == p {
		p.Error = listed.err.Error()
	}
	if err := l.reconciled(ctx, rev); err != nil {
		return port.Spec{}, fmt.Errorf("close port %d: %w", number, err)
	}
	return p, nil
}

// List implements api.Service. A served port whose listening socket died
// has an Error until it is bound anew.
func (l *Listener) List() []port.Spec {
	bound, failed, _ := l.ports.view()
	out := make([]port.Spec, 0, len(bound)+len(failed))
	for _, b := range bound {
		p := b.spec
		p.Error = b.notListening()
		out = append(out, p)
	}
	for _, f := range failed {
		p := f.spec
		p.Error = f.err.Error()
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Port < out[j].Port })
	return out
}

// Live implements api.Service.
func (l *Listener) Live(number int) *port.Live {
	b := l.ports.get(number)
	if b == nil {
		return nil
	}
	return &port.Live{ActiveConnections: b.active.Load(), BytesUp: b.bytesUp.Load(), BytesDown: b.bytesDown.Load()}
}

// Connections implements api.Service: the connected connectors, by UID.
func (l *Listener) Connections() []port.Connection {
	sessions := l.sessions.List()
	out := make([]port.Connection, 0, len(sessions))
	for _, s := range sessions {
		out = append(out, port.Connection{
			UID:            s.UID,
			Remote:         s.Remote,
			ConnectedSince: s.Since.UTC(),
			CertNotAfter:   s.TLS.PeerCertificates[0].NotAfter.UTC(),
			RTTSeconds:     s.Conn.ConnectionStats().SmoothedRTT.Seconds(),
			ActiveStreams:  s.Streams.Load(),
			BytesUp:        s.BytesUp.Load(),
			BytesDown:      s.BytesDown.Load(),
			Draining:       s.Draining.Load(),
		})
	}
	return out
}

// ReloadCertificates re-reads the certificate, key and CA files (SIGHUP).
// New handshakes use the new material; established connections stay up; a
// broken file is logged and the previous material kept.
func (l *Listener) ReloadCertificates() error { return l.certs.Reload() }

// Connected reports whether uid has a live connection.
func (l *Listener) Connected(uid string) bool { return l.sessions.Holder(uid) != nil }
