package listener

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/listener/auth"
	"github.com/socket-warp/socket-warp/listener/registry"
	"github.com/socket-warp/socket-warp/shared/logging"
	"github.com/socket-warp/socket-warp/shared/wire"
)

// Re-verification of connected connectors (recheckLoop).
const (
	// recheckGrace is how many re-checks in a row may end without a verdict
	// (auth.ErrUnavailable: the verify endpoint down, slow or confused)
	// before a connected connector is dropped anyway: 5 ×
	// SWL_VERIFY_CACHE_TTL, about 5 minutes by default. Long enough for a
	// SCEP server restart not to cut every tunnel; bounded, so that a
	// connector revoked while the server is down is not kept for ever.
	recheckGrace = 5
	// recheckParallel bounds the verify requests of one pass: a pass takes
	// about ⌈N/16⌉ × SWL_VERIFY_TIMEOUT at worst instead of N × that, and
	// the server never sees a burst of N requests at once.
	recheckParallel = 16
)

// buildVerifier chooses who judges a connector after the TLS handshake: the
// SCEP server's verify endpoint when configured, else the certificate CN;
// a CRL, when configured, refuses revoked certificates before either. What
// it made is l.closeAuth's to close, also when it fails.
func (l *Listener) buildVerifier() error {
	var v auth.Verifier = auth.CommonName{}
	if l.cfg.SCEPURL != "" {
		scep, err := auth.NewSCEP(l.cfg.SCEPURL, auth.SCEPOptions{
			Timeout: l.cfg.VerifyTimeout, CacheTTL: l.cfg.VerifyCacheTTL, Logger: l.log.Named("scep"),
		})
		if err != nil {
			// Not wrapped: it names the SCEP URL and its value already.
			return err
		}
		l.scep = scep
		v = scep
	}
	if l.cfg.CRLPath != "" || l.cfg.CRLURL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		crl, err := auth.NewCRL(ctx, auth.CRLOptions{
			Path: l.cfg.CRLPath, URL: l.cfg.CRLURL, Refresh: l.cfg.CRLRefresh,
			// The CRL is judged by the CAs of the TLS configuration as
			// they are now, so that it follows SWL_CA_PATH through a
			// rotation, and is read again as soon as that changes (a
			// new server certificate triggers a harmless extra read).
			CAs: l.certs.CACerts, CAsChanged: l.certs.Subscribe(),
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

// closeAuth ends what buildVerifier started: SCEP requests in flight and
// the idle HTTP connections to the SCEP server and the CRL URL. Nothing may
// verify any more.
func (l *Listener) closeAuth() {
	if l.scep != nil {
		l.scep.Close()
	}
	if l.crl != nil {
		l.crl.Close()
	}
}

// dropRevoked closes the connections whose certificate the new CRL revokes.
// A connection bound after it listed the sessions is checked by
// serveConnector itself.
func (l *Listener) dropRevoked() {
	for _, s := range l.sessions.List() {
		if err := l.crl.Check(s.TLS); err != nil {
			l.disconnect(s, err.Error())
		}
	}
}

// recheckLoop asks the SCEP server again about every connected connector
// each interval, so that a revoked one is cut off within about that time. A
// definitive "no" disconnects; no answer at all (server down) keeps the
// connection, for recheckGrace intervals in a row at most, while handshakes
// without a cached answer fail closed (auth.SCEP.Verify).
func (l *Listener) recheckLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	// Per session, how many passes in a row ended without a verdict. Only
	// this goroutine touches it; each pass makes a new one from the
	// sessions it checked, so closed and re-verified sessions leave it.
	misses := map[*registry.Session]int{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		misses = l.recheckPass(ctx, every, misses)
	}
}

// recheckPass re-verifies every bound session, recheckParallel at a time,
// and returns the misses after it. A definitive "no" disconnects at once,
// from the goroutine that heard it. The sessions without a verdict are
// counted after the pass, dropped at their recheckGrace-th miss in a row,
// and summed up in one log line rather than one per connector per pass.
func (l *Listener) recheckPass(ctx context.Context, every time.Duration, misses map[*registry.Session]int) map[*registry.Session]int {
	sessions := l.sessions.List()
	noVerdict := make([]error, len(sessions)) // by index: written by one goroutine each
	// A semaphore and a WaitGroup rather than an errgroup: one connector's
	// outcome must not cancel the others' checks, and there is no error to
	// return, only outcomes per session. The pass owns its goroutines and
	// returns after they have.
	sem := make(chan struct{}, recheckParallel)
	var wg sync.WaitGroup
start:
	for i, s := range sessions {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break start
		}
		wg.Go(func() {
			defer func() { <-sem }()
			noVerdict[i] = l.recheck(ctx, s)
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return misses
	}

	next := map[*registry.Session]int{}
	var kept []string
	var firstErr error
	for i, s := range sessions {
		err := noVerdict[i]
		if err == nil {
			continue
		}
		n := misses[s] + 1
		if n >= recheckGrace {
			reason := fmt.Sprintf("not re-verified for %d checks in a row (%s): %v", n, time.Duration(n)*every, err)
			l.log.Warn("connector dropped: the verify endpoint gives no verdict", logging.UID(s.UID),
				logging.Remote(s.Remote), logging.Reason(reason))
			_ = s.Conn.CloseWithError(wire.CodeUnauthorized, reason)
			continue
		}
		next[s] = n
		kept = append(kept, s.UID)
		if firstErr == nil {
			firstErr = err
		}
	}
	if len(kept) > 0 {
		l.log.Warn("connectors not re-verified: keeping them for now", zap.Int("count", len(kept)),
			zap.Strings("uids", kept[:min(len(kept), 10)]), logging.Reason(firstErr.Error()),
			zap.Duration("grace", recheckGrace*every))
	}
	return next
}

// recheck verifies s again and disconnects it on a definitive "no". It
// returns the error when there was no verdict (auth.ErrUnavailable).
func (l *Listener) recheck(ctx context.Context, s *registry.Session) error {
	if s.Conn.Context().Err() != nil {
		return nil // gone already; serveConnector unbinds it
	}
	uid, err := auth.Recheck(ctx, l.verifier, s.TLS)
	switch {
	case ctx.Err() != nil:
		return nil // shutting down: no verdict to act on
	case errors.Is(err, auth.ErrUnavailable):
		return err
	case err != nil:
		l.disconnect(s, err.Error())
	case uid != s.UID:
		l.disconnect(s, fmt.Sprintf("the verify endpoint now names this certificate %q, not %q", uid, s.UID))
	}
	return nil
}

// disconnect closes a connected connector that is refused now. The line it
// logs says why; serveConnector's "connector disconnected" follows as for
// any end of a connection.
func (l *Listener) disconnect(s *registry.Session, reason string) {
	l.log.Warn("connector no longer authorized", logging.UID(s.UID), logging.Remote(s.Remote),
		logging.Reason(reason))
	_ = s.Conn.CloseWithError(wire.CodeUnauthorized, reason)
}
