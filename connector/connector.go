// Package connector is sw-connector as a library: New(cfg, log).Run(ctx).
//
// The connector runs inside a network that allows no inbound traffic. It
// dials out to sw-listener over QUIC with its client certificate, keeps that
// connection up forever, and for every stream the listener opens dials the
// target named in the stream header and relays bytes both ways.
package connector

import (
	"context"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

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
	"github.com/socket-warp/socket-warp/shared/teardown"
	"github.com/socket-warp/socket-warp/shared/tlsutil"
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
	return c.reconnect(ctx, certs, &wg)
}

// reconnect connects to the listener, and again after each loss, until ctx
// ends: every failure is retried with backoff; a connection that stayed up
// for a while resets it. The links it starts belong to wg.
func (c *Connector) reconnect(ctx context.Context, certs *tlsutil.Reloader, wg *sync.WaitGroup) error {
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
			reason = c.keep(ctx, lk, certs, changed, wg)
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
