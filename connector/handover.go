package connector

import (
	"context"
	"crypto/tls"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/shared/backoff"
	"github.com/socket-warp/socket-warp/shared/logging"
	"github.com/socket-warp/socket-warp/shared/tlsutil"
	"github.com/socket-warp/socket-warp/shared/wire"
)

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
