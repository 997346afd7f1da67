package listener

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/listener/registry"
	"github.com/socket-warp/socket-warp/shared/logging"
	"github.com/socket-warp/socket-warp/shared/teardown"
	"github.com/socket-warp/socket-warp/shared/wire"
)

// defaultProbeTimeout applies when Config.ProbeTimeout is 0.
const defaultProbeTimeout = 3 * time.Second

// liveness is what a probe found out about a bound connection.
type liveness int

const (
	gone        liveness = iota // no answer: the connector vanished
	alive                       // it answered: the newcomer is the duplicate
	goingAway                   // it answered that it is draining
	handingOver                 // it answered that it moves to a new connection, and named its certificate
)

// bindSession makes s the session of its UID. A UID already bound is taken
// over only from a connection that fails a liveness probe — a connector that
// vanished without a word would otherwise block its own comeback until the
// idle timeout — or whose connector said it is going away, or, in a
// hand-over, by the one certificate the bound connection named as its
// successor's (see isSuccessor). Against a live one s is refused, as one live
// connection per UID requires. It reports whether s is bound, and then
// whether it took the place of a connection left open to drain (going away,
// or handed over). A refused s has been closed.
func (l *Listener) bindSession(ctx context.Context, s *registry.Session, log *zap.Logger) (bool, bool) {
	if _, ok := l.sessions.Claim(s); ok {
		return true, false
	}
	// One newcomer at a time per UID: two of them must not both take the
	// place of the same stale connection, nor probe it twice.
	unlock, ok := l.probes.lock(ctx, s)
	if !ok {
		l.refuseWhileShuttingDown(ctx, s)
		return false, false
	}
	defer unlock()
	for {
		bound, ok := l.sessions.Claim(s)
		if ok {
			return true, false
		}
		state, why, announced := l.probe(ctx, bound)
		if ctx.Err() != nil || s.Conn.Context().Err() != nil {
			l.refuseWhileShuttingDown(ctx, s)
			return false, false
		}
		// Only if bound is still the session: otherwise the UID changed
		// hands (or went free) during the probe, and the new state is
		// judged afresh. The old connection's cleanup compares sessions
		// too, so it cannot unbind s.
		switch state {
		case alive:
			l.refuseDuplicate(s, bound, why)
			return false, false
		case handingOver:
			if !isSuccessor(bound, s, announced) {
				// Someone else than the announced successor: a duplicate,
				// be it with the bound certificate or any other.
				l.refuseDuplicate(s, bound, why+", to another certificate")
				return false, false
			}
			surplus, ok := l.sessions.HandOver(bound, s)
			if !ok {
				continue
			}
			l.handOvers.Add(1)
			// Sampled, as every line a holder of the UID's certificates
			// can repeat at will: two of them hand over to each other in
			// a loop.
			l.sampled(s).Info("connector handed over to a new connection", zap.String("old_remote", bound.Remote),
				zap.String("old_serial", serial(bound)), zap.String("new_serial", serial(s)))
			l.closeSurplus(surplus)
			return true, true
		case goingAway:
			surplus, ok := l.sessions.Drain(bound, s)
			if !ok {
				continue
			}
			// Its tunnels drain on; the connector closes it when done.
			l.drainReplaced.Add(1)
			l.sampled(s).Info("draining connection replaced", zap.String("old_remote", bound.Remote), logging.Reason(why))
			l.closeSurplus(surplus)
			return true, true
		}
		if !l.sessions.Replace(bound, s) {
			continue
		}
		log.Warn("stale connection replaced", zap.String("old_remote", bound.Remote), logging.Reason(why))
		_ = bound.Conn.CloseWithError(wire.CodeReplaced, fmt.Sprintf("replaced by a new connection from %s: %s", s.Remote, why))
		return true, false
	}
}

// sampled is l.floodLog for the lines of s's connection that a holder of
// its UID's certificates can cause at will, however often.
func (l *Listener) sampled(s *registry.Session) *zap.Logger {
	return l.floodLog.With(logging.Remote(s.Remote), logging.UID(s.UID))
}

// closeSurplus closes p, the oldest connection left open to drain of its
// UID, which a newer one pushed beyond registry.MaxPredecessors (nil: none
// did). Its tunnels end with it.
func (l *Listener) closeSurplus(p *registry.Session) {
	if p == nil {
		return
	}
	l.surplusClosed.Add(1)
	reason := fmt.Sprintf("too many connections of uid %s left to finish their tunnels (at most %d besides the bound one): the oldest is closed",
		p.UID, registry.MaxPredecessors)
	l.sampled(p).Warn("draining connection closed", logging.Reason(reason))
	_ = p.Conn.CloseWithError(wire.CodeReplaced, reason)
}

// isSuccessor reports whether s is the successor that bound's connector
// announced, by the fingerprint of its certificate, in a hand-over.
//
// Why this and not "a newer certificate of the same UID wins": the consent
// comes from the connection that holds the UID — authenticated, and alive,
// since it answered — and it names exactly one certificate. Another
// connector with a valid certificate for the UID (a copied key, a second
// machine enrolled under the same UID, a leaked renewed certificate) can
// therefore never push a live connector aside, however new its certificate;
// it is refused as a duplicate, as before hand-overs existed. The successor
// was verified like any newcomer (chain, clientAuth, CRL, SCEP verify)
// before it got here.
func isSuccessor(bound, s *registry.Session, fingerprint string) bool {
	got := wire.CertFingerprint(s.TLS.PeerCertificates[0].Raw)
	// A hand-over to the very certificate that is bound would let a copy
	// of it in: never.
	return got == fingerprint && got != wire.CertFingerprint(bound.TLS.PeerCertificates[0].Raw)
}

// serial is the serial number of s's certificate, as the logs show it.
func serial(s *registry.Session) string { return s.TLS.PeerCertificates[0].SerialNumber.Text(16) }

// refuseDuplicate closes s, a newcomer whose UID bound holds and keeps. The
// line is sampled as refuseConnector's are: whoever holds a certificate of
// the UID can come back as often as it likes.
func (l *Listener) refuseDuplicate(s, bound *registry.Session, probe string) {
	reason := fmt.Sprintf("uid %s is already connected from %s", s.UID, bound.Remote)
	l.refusedConnectors.add(reasonDuplicateUID)
	l.floodLog.Warn("connector refused", logging.Remote(s.Remote), logging.UID(s.UID), logging.Reason(reason),
		zap.String("refusal", reasonDuplicateUID), zap.String("probe", probe))
	_ = s.Conn.CloseWithError(wire.CodeDuplicateUID, reason)
}

// refuseWhileShuttingDown closes a newcomer that could not be judged: the
// listener is stopping (or the newcomer already left, and closing is a no-op).
func (l *Listener) refuseWhileShuttingDown(ctx context.Context, s *registry.Session) {
	if ctx.Err() != nil {
		_ = s.Conn.CloseWithError(wire.CodeGoingAway, teardown.ListenerShuttingDown)
	}
}

// probe asks the connector of s whether it is still there: a stream with
// the probe header, answered by any verdict within the probe timeout. An
// older connector, which does not know the probe, answers "bad header" —
// alive all the same. A connector handing over names the certificate of
// its successor, returned as successor. See shared/wire's package
// documentation.
func (l *Listener) probe(ctx context.Context, s *registry.Session) (state liveness, why, successor string) {
	if err := context.Cause(s.Conn.Context()); err != nil {
		return gone, "connection already ended: " + closeReason(err), ""
	}
	if s.Draining.Load() {
		return goingAway, "the connector said it is going away", ""
	}
	v, reason, err := l.ask(ctx, s, wire.ProbeHeader)
	var se *quic.StreamError
	switch {
	case errors.As(err, &se) && se.Remote:
		return alive, fmt.Sprintf("the connector reset the probe (%s)", wire.CodeString(uint64(se.ErrorCode))), ""
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return gone, fmt.Sprintf("no answer to a probe within %s", l.probeTimeout()), ""
	case err != nil:
		return gone, "probe: " + err.Error(), ""
	}
	switch v {
	case wire.VerdictOK:
		return alive, "answered the probe", ""
	case wire.VerdictGoingAway:
		s.Draining.Store(true)
		return goingAway, "the connector answered the probe: going away", ""
	case wire.VerdictHandingOver:
		return handingOver, "the connector answered the probe: handing over to a new connection", reason
	default:
		return alive, fmt.Sprintf("answered the probe: %s: %s", v, reason), ""
	}
}

func (l *Listener) probeTimeout() time.Duration {
	if l.cfg.ProbeTimeout == 0 {
		return defaultProbeTimeout
	}
	return l.cfg.ProbeTimeout
}

// ask sends a control stream — a probe or a hand-over notice — on the
// connection of s and reads the connector's verdict, within the probe
// timeout. The error says which step failed.
func (l *Listener) ask(ctx context.Context, s *registry.Session, hdr wire.Header) (wire.Verdict, string, error) {
	ctx, cancel := context.WithTimeout(ctx, l.probeTimeout())
	defer cancel()
	st, err := s.Conn.OpenStreamSync(ctx)
	if err != nil {
		return 0, "", fmt.Errorf("open stream: %w", err)
	}
	// Nothing but the verdict is read; whatever follows is refused.
	defer st.CancelRead(wire.StreamCodeClosed)
	deadline, _ := ctx.Deadline()
	_ = st.SetDeadline(deadline)
	b, _ := hdr.Append(nil)
	if _, err := st.Write(b); err != nil {
		st.CancelWrite(wire.StreamCodeAborted)
		return 0, "", fmt.Errorf("write: %w", err)
	}
	// The end of this side right behind the header: an older connector
	// drains the stream after its verdict and need not wait for it.
	_ = st.Close()
	v, reason, err := wire.ReadVerdict(st)
	if err != nil {
		return 0, "", fmt.Errorf("read verdict: %w", err)
	}
	return v, reason, nil
}

// uidLocks serialises the liveness probes of each UID. The zero value is
// ready to use.
type uidLocks struct {
	mu   sync.Mutex               // guards the following fields
	busy map[string]chan struct{} // closed when its holder unlocks
}

// lock waits until no other newcomer of s's UID holds the lock and takes
// it. It gives up, reporting false, when ctx ends or s's connection does.
func (u *uidLocks) lock(ctx context.Context, s *registry.Session) (unlock func(), ok bool) {
	for {
		u.mu.Lock()
		held, taken := u.busy[s.UID]
		if !taken {
			if u.busy == nil {
				u.busy = map[string]chan struct{}{}
			}
			done := make(chan struct{})
			u.busy[s.UID] = done
			u.mu.Unlock()
			return func() {
				u.mu.Lock()
				delete(u.busy, s.UID)
				u.mu.Unlock()
				close(done)
			}, true
		}
		u.mu.Unlock()
		select {
		case <-held:
		case <-ctx.Done():
			return nil, false
		case <-s.Conn.Context().Done():
			return nil, false
		}
	}
}
