package listener

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/socket-warp/socket-warp/listener/auth"
	"github.com/socket-warp/socket-warp/listener/registry"
	"github.com/socket-warp/socket-warp/shared/logging"
	"github.com/socket-warp/socket-warp/shared/wire"
)

// buildVerifier chooses who judges a connector after the TLS handshake: the
// SCEP server's verify endpoint when configured, else the certificate CN;
// a CRL, when configured, refuses revoked certificates before either.
func (l *Listener) buildVerifier() error {
	var v auth.Verifier = auth.CommonName{}
	if l.cfg.SCEPURL != "" {
		scep, err := auth.NewSCEP(l.cfg.SCEPURL, auth.SCEPOptions{
			Timeout: l.cfg.VerifyTimeout, CacheTTL: l.cfg.VerifyCacheTTL, Logger: l.log.Named("scep"),
		})
		if err != nil {
			return fmt.Errorf("SWL_SCEP_URL: %w", err)
		}
		v = scep
	}
	if l.cfg.CRLPath != "" || l.cfg.CRLURL != "" {
		cas, err := auth.LoadCertificates(l.cfg.CAPath)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		crl, err := auth.NewCRL(ctx, auth.CRLOptions{
			Path: l.cfg.CRLPath, URL: l.cfg.CRLURL, CAs: cas, Refresh: l.cfg.CRLRefresh,
			Logger: l.log.Named("crl"), OnChange: l.dropRevoked,
		})
		if err != nil {
			return err
		}
		l.crl = crl
		v = auth.WithCRL(v, crl)
	}
	l.verifier = v
	return nil
}

// dropRevoked closes the connections whose certificate the new CRL revokes.
func (l *Listener) dropRevoked() {
	for _, s := range l.sessions.All() {
		if err := l.crl.Check(s.Conn.ConnectionState().TLS); err != nil {
			l.disconnect(s, err.Error())
		}
	}
}

// recheckLoop asks the SCEP server again about every connected connector
// each interval, so that a revoked one is cut off within about that time. A
// definitive "no" disconnects; no answer at all (server down) keeps the
// connection, while new handshakes fail closed.
func (l *Listener) recheckLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, s := range l.sessions.All() {
			uid, err := auth.Recheck(ctx, l.verifier, s.Conn.ConnectionState().TLS)
			switch {
			case ctx.Err() != nil:
				return
			case errors.Is(err, auth.ErrUnavailable):
				l.log.Warn("connector not re-verified: keeping it", logging.UID(s.UID), logging.Reason(err.Error()))
			case err != nil:
				l.disconnect(s, err.Error())
			case uid != s.UID:
				l.disconnect(s, fmt.Sprintf("the verify endpoint now names this certificate %q, not %q", uid, s.UID))
			}
		}
	}
}

func (l *Listener) disconnect(s *registry.Session, reason string) {
	l.log.Warn("connector disconnected: no longer authorized", logging.UID(s.UID), logging.Remote(s.Remote),
		logging.Reason(reason))
	_ = s.Conn.CloseWithError(wire.CodeUnauthorized, reason)
}
