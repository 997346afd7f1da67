package connector

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/connector/enroll"
	"github.com/socket-warp/socket-warp/shared/backoff"
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

// checkEnrollTrust refuses an enrollment that would make a stranger the
// listener's trust root: with no CA file yet, the SCEP CA is written there,
// and over plain http whoever answers GetCACert would be believed.
func checkEnrollTrust(cfg Config) error {
	haveCA, err := exists(cfg.CACertPath)
	if err != nil {
		return err
	}
	if haveCA || cfg.CAFingerprint != "" || strings.HasPrefix(strings.ToLower(cfg.SCEPURL), "https://") {
		return nil
	}
	return fmt.Errorf("enroll_secret: ca_cert_path %s does not exist, so the SCEP CA would become the listener's trust root, "+
		"and over plain http that trusts whoever answers: set ca_fingerprint (SWC_CA_FINGERPRINT, the SHA-256 of the CA certificate) "+
		"or use an https scep_url", cfg.CACertPath)
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
// certificate are written, or ctx's error. The one-time secret is spent by a
// successful enrollment, so a result that could not be written is kept and
// only the write is retried.
func (c *Connector) enrollUntilDone(ctx context.Context) error {
	bo := &backoff.Backoff{Min: time.Duration(c.cfg.RetryMin), Max: time.Duration(c.cfg.RetryMax)}
	p := c.paths()
	// The SCEP CA also becomes the trust root for the listener, unless the
	// operator already put one there.
	if ok, _ := exists(c.cfg.CACertPath); !ok {
		p.CA = c.cfg.CACertPath
	}
	var res *enroll.Result
	for {
		err := makeDirs(p)
		if err == nil && res == nil {
			c.log.Info("enrolling", logging.UID(c.cfg.UID), zap.String("scep_url", redact(c.cfg.SCEPURL)))
			res, err = enroll.Enroll(ctx, c.scepOptions(c.cfg.EnrollSecret))
		}
		if err == nil {
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

// makeDirs creates the directories of the certificate files (0700: one of
// them holds the key).
func makeDirs(p enroll.Paths) error {
	for _, f := range []string{p.Key, p.Cert, p.CA} {
		if f == "" {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			return fmt.Errorf("create the directory of %s: %w", f, err)
		}
	}
	return nil
}

// redact drops a password from a URL before it is logged.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// renewLoop renews the certificate at RenewAt of its lifetime, until ctx
// ends. A certificate replaced from outside (an operator, a reload) moves
// the schedule, also while a failed renewal waits for its next try.
func (c *Connector) renewLoop(ctx context.Context, certs *tlsutil.Reloader) {
	changed := certs.Subscribe()
	bo := &backoff.Backoff{Min: time.Duration(c.cfg.RetryMin), Max: time.Duration(c.cfg.RetryMax)}
	for {
		leaf := certs.Leaf()
		due := renewalDue(leaf, c.cfg.RenewAt)
		c.log.Info("certificate renewal scheduled", zap.Time("at", due), zap.Time("not_after", leaf.NotAfter))
		if !waitOrChange(ctx, changed, max(time.Until(due), 0)) {
			if ctx.Err() != nil {
				return
			}
			continue // replaced from outside: schedule anew
		}
		for {
			now := time.Now()
			if now.After(leaf.NotAfter) {
				// A RenewalReq is signed with the current certificate; an
				// expired one is refused, so trying again is noise.
				c.log.Error("certificate expired before it could be renewed: enroll again",
					zap.Time("not_after", leaf.NotAfter))
				if !waitOrChange(ctx, changed, -1) && ctx.Err() != nil {
					return
				}
				break
			}
			drain(c.secret.changed) // this attempt sends the current one
			err := c.renew(ctx, certs)
			if err == nil {
				bo.Reset()
				drain(changed) // the notification of our own reload
				break
			}
			if ctx.Err() != nil {
				return
			}
			delay := bo.Next()
			reason := err.Error()
			switch {
			case errors.Is(err, errNoSecret):
				// Only a new renew_secret_file helps, and its change
				// ends the wait: try rarely meanwhile.
				delay = refusedRetry(leaf.NotAfter, now, time.Duration(c.cfg.RetryMin))
			case errors.Is(err, enroll.ErrRefused):
				// A spent or wrong update secret stays refused until an
				// operator sets a new one: try rarely, say what to do.
				delay = refusedRetry(leaf.NotAfter, now, time.Duration(c.cfg.RetryMin))
				reason += c.secret.refusedHint()
			}
			c.log.Error("certificate renewal failed", logging.Reason(reason), zap.Duration("retry_in", delay),
				zap.Time("not_after", leaf.NotAfter))
			if !waitRetry(ctx, changed, c.secret.changed, delay) {
				if ctx.Err() != nil {
					return
				}
				break // replaced from outside
			}
		}
	}
}

// renewalDue is NotBefore + fraction of the lifetime.
func renewalDue(leaf *x509.Certificate, fraction float64) time.Time {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	return leaf.NotBefore.Add(time.Duration(float64(life) * fraction))
}

// refusedRetry spaces out renewals the SCEP server refused: a tenth of the
// time left, at most an hour, at least floor.
func refusedRetry(notAfter, now time.Time, floor time.Duration) time.Duration {
	d := min(notAfter.Sub(now)/10, time.Hour)
	return max(d, floor)
}

// waitOrChange waits d (forever when d < 0) and reports true when it
// passed; false when ctx ended or the certificate changed first.
func waitOrChange(ctx context.Context, changed <-chan struct{}, d time.Duration) bool {
	var timeout <-chan time.Time
	if d >= 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-ctx.Done():
		return false
	case <-changed:
		return false
	case <-timeout:
		return true
	}
}

// waitRetry waits d before a renewal is tried again and reports true when
// it passed or a new update secret arrived (secret: try it at once); false
// when ctx ended or the certificate changed first.
func waitRetry(ctx context.Context, changed, secret <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-changed:
		return false
	case <-secret:
		return true
	case <-t.C:
		return true
	}
}

func drain(ch <-chan struct{}) {
	select {
	case <-ch:
	default:
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
	secret, err := c.secret.get()
	if err != nil {
		return err
	}
	opts := c.scepOptions(secret)
	opts.UID = cur.Leaf.Subject.CommonName
	res, err := enroll.Renew(ctx, opts, cur.Leaf, key, true)
	if err != nil {
		return err
	}
	if err := res.Write(c.paths()); err != nil {
		return err
	}
	// The pair is on disk and the update secret spent: this renewal
	// succeeded even if loading fails now; the file watcher tries again.
	if err := certs.Reload(); err != nil {
		c.log.Warn("renewed certificate written but not loaded yet", logging.Reason(err.Error()))
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
