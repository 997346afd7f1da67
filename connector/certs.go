package connector

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/connector/backoff"
	"github.com/socket-warp/socket-warp/connector/enroll"
	"github.com/socket-warp/socket-warp/shared/logging"
	"github.com/socket-warp/socket-warp/shared/tlsutil"
)

// Certificate lifecycle: a connector deployed with nothing but a UID, a
// one-time secret and the SCEP URL enrolls itself on first start; with a
// renewal secret it renews before expiry. Either way the files are swapped
// as a pair and the next handshake uses them: no restart.

func (c *Connector) paths() enroll.Paths {
	return enroll.Paths{Key: c.cfg.ClientKeyPath, Cert: c.cfg.ClientCertPath}
}

// enrollmentPending reports whether the connector has no certificate yet
// and is configured to get one itself.
func enrollmentPending(cfg Config) (bool, error) {
	haveCert, err := exists(cfg.ClientCertPath)
	if err != nil {
		return false, err
	}
	haveKey, err := exists(cfg.ClientKeyPath)
	if err != nil {
		return false, err
	}
	return cfg.EnrollSecret != "" && !haveCert && !haveKey, nil
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("certificate file %s: %w", path, err)
	}
	return true, nil
}

func (c *Connector) scepOptions(secret string) enroll.Options {
	return enroll.Options{
		URL: c.cfg.SCEPURL, UID: c.cfg.UID, Secret: secret,
		CAFingerprint: c.cfg.CAFingerprint, Log: c.log.Named("scep"),
	}
}

// enrollUntilDone enrolls, retrying with backoff: the SCEP server may not be
// up yet when the connector first starts. It returns nil once the key and
// certificate are written, or ctx's error.
func (c *Connector) enrollUntilDone(ctx context.Context) error {
	bo := &backoff.Backoff{Min: time.Duration(c.cfg.RetryMin), Max: time.Duration(c.cfg.RetryMax)}
	for {
		c.log.Info("enrolling", logging.UID(c.cfg.UID), zap.String("scep_url", c.cfg.SCEPURL))
		res, err := enroll.Enroll(ctx, c.scepOptions(c.cfg.EnrollSecret))
		if err == nil {
			p := c.paths()
			// The SCEP CA also becomes the trust root for the listener,
			// unless the operator already put one there.
			if ok, _ := exists(c.cfg.CACertPath); !ok {
				p.CA = c.cfg.CACertPath
			}
			if err = res.Write(p); err == nil {
				c.log.Info("enrolled", logging.UID(c.cfg.UID), zap.String("serial", res.Cert.SerialNumber.Text(16)),
					zap.Time("not_after", res.Cert.NotAfter), zap.String("cert", p.Cert), zap.String("key", p.Key))
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		delay := bo.Next()
		c.log.Error("enrollment failed", logging.UID(c.cfg.UID), logging.Reason(err.Error()), zap.Duration("retry_in", delay))
		if !sleep(ctx, delay) {
			return ctx.Err()
		}
	}
}

// renewLoop renews the certificate at RenewAt of its lifetime, until ctx
// ends. A certificate replaced from outside (an operator, a reload) moves
// the schedule.
func (c *Connector) renewLoop(ctx context.Context, certs *tlsutil.Reloader) {
	changed := certs.Subscribe()
	bo := &backoff.Backoff{Min: time.Duration(c.cfg.RetryMin), Max: time.Duration(c.cfg.RetryMax)}
	for {
		leaf := certs.Leaf()
		life := leaf.NotAfter.Sub(leaf.NotBefore)
		due := leaf.NotBefore.Add(time.Duration(float64(life) * c.cfg.RenewAt))
		c.log.Info("certificate renewal scheduled", zap.Time("at", due), zap.Time("not_after", leaf.NotAfter))
		t := time.NewTimer(time.Until(due))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-changed:
			t.Stop()
			continue
		case <-t.C:
		}
		for {
			err := c.renew(ctx, certs)
			if err == nil {
				bo.Reset()
				break
			}
			if ctx.Err() != nil {
				return
			}
			delay := bo.Next()
			c.log.Error("certificate renewal failed", logging.Reason(err.Error()), zap.Duration("retry_in", delay),
				zap.Time("not_after", leaf.NotAfter))
			if !sleep(ctx, delay) {
				return
			}
		}
		// Drain the notification our own reload caused.
		select {
		case <-changed:
		default:
		}
	}
}

// renew gets a new certificate for a new key, signed for by the current
// pair, writes both and reloads them.
func (c *Connector) renew(ctx context.Context, certs *tlsutil.Reloader) error {
	cur := certs.Certificate()
	key, ok := cur.PrivateKey.(crypto.Signer)
	if !ok {
		return fmt.Errorf("renew: the current key (%T) cannot sign", cur.PrivateKey)
	}
	opts := c.scepOptions(c.cfg.RenewSecret)
	opts.UID = cur.Leaf.Subject.CommonName
	res, err := enroll.Renew(ctx, opts, cur.Leaf, key, true)
	if err != nil {
		return err
	}
	if err := res.Write(c.paths()); err != nil {
		return err
	}
	if err := certs.Reload(); err != nil {
		return fmt.Errorf("renew: load the new certificate: %w", err)
	}
	c.log.Info("certificate renewed", logging.UID(opts.UID), zap.String("serial", res.Cert.SerialNumber.Text(16)),
		zap.Time("not_after", res.Cert.NotAfter))
	return nil
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
