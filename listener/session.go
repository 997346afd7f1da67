package listener

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/listener/registry"
	"github.com/socket-warp/socket-warp/shared/logging"
	"github.com/socket-warp/socket-warp/shared/teardown"
	"github.com/socket-warp/socket-warp/shared/tlsutil"
	"github.com/socket-warp/socket-warp/shared/wire"
)

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
	s, lifeLog := l.admitConnector(ctx, conn)
	if s == nil {
		return
	}
	leaf := s.TLS.PeerCertificates[0]
	lifeLog.Info("connector connected", zap.String("serial", leaf.SerialNumber.Text(16)), zap.Time("not_after", leaf.NotAfter))
	heartbeats := discardHeartbeats(conn)
	l.holdSession(ctx, s)
	<-heartbeats
	l.sessions.Release(s)
	lifeLog.Info("connector disconnected", logging.Reason(closeReason(context.Cause(conn.Context()))),
		logging.Duration(time.Since(s.Since)))
}

// admitConnector verifies the connection's certificate and claims its UID
// for it: the session, and the logger of its connect and disconnect lines;
// nil if it was refused (and closed).
func (l *Listener) admitConnector(ctx context.Context, conn *quic.Conn) (*registry.Session, *zap.Logger) {
	remote := conn.RemoteAddr().String()
	// The handshake verified the chain but leaves none in the state (see
	// tlsutil); the CRL judges the CAs of the chains.
	state := conn.ConnectionState().TLS
	chains, err := l.certs.VerifyClient(state.PeerCertificates)
	if err != nil {
		// The CA file changed since the handshake.
		l.refuseConnector(conn, []zap.Field{logging.Remote(remote)}, tlsutil.RefusalReason(err), err)
		return nil, nil
	}
	state.VerifiedChains = chains
	uid, err := l.verifier.Verify(ctx, state)
	if err != nil {
		l.refuseConnector(conn, []zap.Field{logging.Remote(remote)}, l.verifyReason(state, err), err)
		return nil, nil
	}
	log := l.log.With(logging.Remote(remote), logging.UID(uid))
	s := &registry.Session{UID: uid, Conn: conn, Remote: remote, Since: time.Now(), TLS: state,
		HandedOver: make(chan *registry.Session, 1)}
	bound, successor := l.bindSession(ctx, s, log)
	if !bound {
		return nil, nil
	}
	// A CRL that replaced the list after Verify checked it was applied by
	// dropRevoked to the sessions bound then, maybe not yet this one; the
	// list is replaced before dropRevoked lists the sessions, so checking
	// again now that this one is bound leaves no gap.
	if l.crl != nil {
		if err := l.crl.Check(s.TLS); err != nil {
			l.sessions.Release(s)
			l.refuseConnector(conn, []zap.Field{logging.Remote(remote), logging.UID(uid)}, l.verifyReason(s.TLS, err), err)
			return nil, nil
		}
	}
	// A successor of a connection left to drain is what a holder of the
	// UID's certificates can make in a loop, as fast as handshakes go
	// (going away, or handing over between two certificates of its own):
	// its lines are sampled. The connections such a loop leaves open are
	// bounded by the registry.
	if successor {
		return s, l.sampled(s)
	}
	return s, log
}

// holdSession returns when the session's connection has ended, closing it
// with "going away" when ctx ends first.
//
// After a hand-over the connection is no longer re-verified: its
// certificate is typically revoked as superseded while its last tunnels
// still run. It lives on the authority of its successor instead, which
// is: it ends when the successor does (refused by a re-check or a CRL, or
// gone) — unless that one was handed over in turn, and passed the
// authority on. Its connector closes it once drained.
func (l *Listener) holdSession(ctx context.Context, s *registry.Session) {
	conn := s.Conn
	var (
		succ          *registry.Session
		successorDone <-chan struct{}
	)
	for {
		select {
		case <-conn.Context().Done():
			return
		case <-ctx.Done():
			_ = conn.CloseWithError(wire.CodeGoingAway, teardown.ListenerShuttingDown)
			return
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
