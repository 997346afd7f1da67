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
	"github.com/socket-warp/socket-warp/shared/wire"
)

// defaultProbeTimeout applies when Config.ProbeTimeout is 0.
const defaultProbeTimeout = 3 * time.Second

// liveness is what a probe found out about a bound connection.
type liveness int

const (
	gone      liveness = iota // no answer: the connector vanished
	alive                     // it answered: the newcomer is the duplicate
	goingAway                 // it answered that it is draining
)

// bindSession makes s the session of its UID. A UID already bound is taken
// over only from a connection that fails a liveness probe — a connector that
// vanished without a word would otherwise block its own comeback until the
// idle timeout — or whose connector said it is going away. Against a live
// one s is refused, as one live connection per UID requires. It reports
// whether s is bound; a refused s has been closed.
func (l *Listener) bindSession(ctx context.Context, s *registry.Session, log *zap.Logger) bool {
	if _, ok := l.sessions.Bind(s); ok {
		return true
	}
	// One newcomer at a time per UID: two of them must not both take the
	// place of the same stale connection, nor probe it twice.
	unlock, ok := l.probes.lock(ctx, s)
	if !ok {
		l.refuseWhileShuttingDown(ctx, s)
		return false
	}
	defer unlock()
	for {
		bound, ok := l.sessions.Bind(s)
		if ok {
			return true
		}
		state, why := l.probe(ctx, bound)
		if ctx.Err() != nil || s.Conn.Context().Err() != nil {
			l.refuseWhileShuttingDown(ctx, s)
			return false
		}
		if state == alive {
			reason := fmt.Sprintf("uid %s is already connected from %s", s.UID, bound.Remote)
			l.refusedConnectors.add(reasonDuplicateUID)
			log.Warn("connector refused", logging.Reason(reason), zap.String("refusal", reasonDuplicateUID), zap.String("probe", why))
			_ = s.Conn.CloseWithError(wire.CodeDuplicateUID, reason)
			return false
		}
		// Only if bound is still the session: otherwise the UID changed
		// hands (or went free) during the probe, and the new state is
		// judged afresh. The old connection's cleanup compares sessions
		// too, so it cannot unbind s.
		if !l.sessions.Replace(bound, s) {
			continue
		}
		if state == goingAway {
			// Its tunnels drain on; the connector closes it when done.
			log.Info("draining connection replaced", zap.String("old_remote", bound.Remote), logging.Reason(why))
			return true
		}
		log.Warn("stale connection replaced", zap.String("old_remote", bound.Remote), logging.Reason(why))
		_ = bound.Conn.CloseWithError(wire.CodeReplaced, fmt.Sprintf("replaced by a new connection from %s: %s", s.Remote, why))
		return true
	}
}

// refuseWhileShuttingDown closes a newcomer that could not be judged: the
// listener is stopping (or the newcomer already left, and closing is a no-op).
func (l *Listener) refuseWhileShuttingDown(ctx context.Context, s *registry.Session) {
	if ctx.Err() != nil {
		_ = s.Conn.CloseWithError(wire.CodeGoingAway, "listener shutting down")
	}
}

// probe asks the connector of s whether it is still there: a stream with
// the probe header, answered by any verdict within the probe timeout. An
// older connector, which does not know the probe, answers "bad header" —
// alive all the same. See shared/wire's package documentation.
func (l *Listener) probe(ctx context.Context, s *registry.Session) (liveness, string) {
	if err := context.Cause(s.Conn.Context()); err != nil {
		return gone, "connection already ended: " + closeReason(err)
	}
	if s.Draining.Load() {
		return goingAway, "the connector said it is going away"
	}
	timeout := l.cfg.ProbeTimeout
	if timeout == 0 {
		timeout = defaultProbeTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	failed := func(step string, err error) (liveness, string) {
		var se *quic.StreamError
		switch {
		case errors.As(err, &se) && se.Remote:
			return alive, fmt.Sprintf("the connector reset the probe (%s)", wire.CodeString(uint64(se.ErrorCode)))
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
			return gone, fmt.Sprintf("no answer to a probe within %s", timeout)
		default:
			return gone, fmt.Sprintf("probe: %s: %v", step, err)
		}
	}

	st, err := s.Conn.OpenStreamSync(ctx)
	if err != nil {
		return failed("open stream", err)
	}
	// Nothing but the verdict is read; whatever follows is refused.
	defer st.CancelRead(wire.StreamCodeClosed)
	deadline, _ := ctx.Deadline()
	_ = st.SetDeadline(deadline)
	hdr, _ := wire.ProbeHeader.Append(nil)
	if _, err := st.Write(hdr); err != nil {
		st.CancelWrite(wire.StreamCodeAborted)
		return failed("write", err)
	}
	// The end of this side right behind the header: an older connector
	// drains the stream after its verdict and need not wait for it.
	_ = st.Close()
	v, reason, err := wire.ReadVerdict(st)
	if err != nil {
		return failed("read verdict", err)
	}
	switch v {
	case wire.VerdictOK:
		return alive, "answered the probe"
	case wire.VerdictGoingAway:
		s.Draining.Store(true)
		return goingAway, "the connector answered the probe: going away"
	default:
		return alive, fmt.Sprintf("answered the probe: %s: %s", v, reason)
	}
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
