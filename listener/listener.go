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
	"github.com/socket-warp/socket-warp/shared/tlsutil"
	"github.com/socket-warp/socket-warp/shared/udpsock"
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
	if err := l.buildAPI(); err != nil {
		return nil, err
	}
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
	if err := l.listen(tlsConf, quicConf, resetKey); err != nil {
		return nil, err
	}
	return l, nil
}

// buildAPI makes the API handler (not yet serving).
func (l *Listener) buildAPI() error {
	cfg, log := l.cfg, l.log
	token, err := cfg.apiToken()
	if err != nil {
		return err
	}
	if token == "" && cfg.APIInsecure && len(nonLoopback(cfg.APIAddrs)) > 0 {
		log.Warn("api has no token on a non-loopback address (SWL_API_INSECURE=true): whoever reaches it can open ports",
			zap.String("addrs", cfg.APIAddrs))
	}
	hosts, _ := cfg.apiAllowedHosts() // validated by New
	apiOpts := []api.Option{api.WithToken(token), api.WithHealth(l.ready), api.WithAllowedHosts(hosts...),
		api.WithRefusals(l.refusedRequests.add)}
	if cfg.MetricsAddr == "" {
		apiOpts = append(apiOpts, api.WithMetrics(metrics.Handler(l.metrics)))
	}
	l.api = api.New(l, log, apiOpts...)
	return nil
}

// listen binds the connectors' QUIC sockets, the API's and the metrics and
// debug servers'.
func (l *Listener) listen(tlsConf *tls.Config, quicConf *quic.Config, resetKey *quic.StatelessResetKey) (err error) {
	cfg, log := l.cfg, l.log
	quicAddrs, _ := SplitAddrs(cfg.Addrs)
	for _, a := range quicAddrs {
		ln, err := l.listenQUIC(hostPort(a, cfg.Port), tlsConf, quicConf, resetKey)
		if err != nil {
			return fmt.Errorf("listen for connectors on udp %s: %w", hostPort(a, cfg.Port), err)
		}
		l.quicLns = append(l.quicLns, ln)
	}
	apiAddrs, _ := SplitAddrs(cfg.APIAddrs)
	for _, a := range apiAddrs {
		ln, err := net.Listen("tcp", hostPort(a, cfg.APIPort))
		if err != nil {
			return fmt.Errorf("listen for the API on tcp %s: %w", hostPort(a, cfg.APIPort), err)
		}
		l.apiLns = append(l.apiLns, ln)
	}
	if cfg.MetricsAddr != "" {
		if l.metricsSrv, err = metrics.Listen("SWL_METRICS_ADDR", cfg.MetricsAddr, l.metrics, l.ready, log); err != nil {
			return err
		}
	}
	if cfg.PprofAddr != "" {
		if l.pprof, err = debugserver.Listen(cfg.PprofAddr, log); err != nil {
			return err
		}
	}
	return nil
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
	// Until the API has answered its last request: an open it wrote to
	// the store is bound, as it would be when it came in a moment earlier.
	reconcileCtx, stopReconciling := context.WithCancel(context.WithoutCancel(ctx))
	defer stopReconciling()
	reconciled := make(chan struct{})
	go func() {
		defer close(reconciled)
		l.reconciler.Run(reconcileCtx)
	}()

	fatal := make(chan error, len(l.apiLns)+1)
	fail := func(err error) {
		fatal <- err
		cancel()
	}
	stopAPI := l.serveAPI(&wg, fail)
	for _, ln := range l.quicLns {
		wg.Go(func() { l.acceptConnectors(ctx, connCtx, ln, &wg) })
	}
	l.runBackground(ctx, connCtx, &wg, fail)
	for _, a := range l.QUICAddrs() {
		l.log.Info("listening for connectors", zap.Stringer("addr", a))
	}
	for _, a := range l.APIAddrs() {
		l.log.Info("api listening", zap.Stringer("addr", a))
	}

	<-ctx.Done()
	l.log.Info("shutting down")
	stopAPI()
	// No port opens or closes from here on.
	stopReconciling()
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

// ReloadCertificates re-reads the certificate, key and CA files (SIGHUP).
// New handshakes use the new material; established connections stay up; a
// broken file is logged and the previous material kept.
func (l *Listener) ReloadCertificates() error { return l.certs.Reload() }

// Connected reports whether uid has a live connection.
func (l *Listener) Connected(uid string) bool { return l.sessions.Holder(uid) != nil }

// serveAPI serves the API on its sockets, on goroutines of wg; stop ends
// it, and every connection to it.
func (l *Listener) serveAPI(wg *sync.WaitGroup, fail func(error)) (stop func()) {
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
				fail(fmt.Errorf("serve API on %s: %w", ln.Addr(), err))
			}
		})
	}
	return func() {
		for _, srv := range servers {
			shutCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
			// Shutdown leaves a connection that has not sent its first
			// request alone until it is 5 s old; Close cuts what Shutdown
			// did not end, so no connection outlives Run.
			if err := srv.Shutdown(shutCtx); err != nil {
				_ = srv.Close()
			}
			done()
		}
	}
}

// runBackground starts, on wg, what runs beside the connections until ctx
// ends: certificate reloads, memory trimming, the CRL and the re-checks,
// the debug server; the metrics server until connCtx ends, after the
// drain (a scrape during it is worth having).
func (l *Listener) runBackground(ctx, connCtx context.Context, wg *sync.WaitGroup, fail func(error)) {
	if l.metricsSrv != nil {
		wg.Go(func() {
			if err := l.metricsSrv.Serve(connCtx); err != nil {
				fail(err)
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
}
