package listener

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/shared/backoff"
	"github.com/socket-warp/socket-warp/shared/logging"
)

// The back-off of an accept loop after a failed accept or re-bind: net/http's
// Server's, 5 ms doubling up to 1 s, until a client is accepted again.
const (
	acceptRetryMin = 5 * time.Millisecond
	acceptRetryMax = time.Second
)

// Kinds of accept failure, the label of
// socketwarp_listener_accept_errors_total.
const (
	acceptTemporary = iota // the socket is fine: retried after a pause
	acceptDied             // the socket is dead: closed and bound anew
	numAcceptKinds
)

var acceptKindLabels = [numAcceptKinds]string{acceptTemporary: "temporary", acceptDied: "died"}

// portSocket is an opened port's listening socket on one address. Its
// accept loop owns it, and replaces it when it dies.
type portSocket struct {
	addr *net.TCPAddr
	mu   sync.Mutex       // guards the following fields
	ln   *net.TCPListener // nil while it is bound anew
	down error            // why it does not listen; nil while it does
}

// listener is the socket in use; nil while it is bound anew.
func (s *portSocket) listener() *net.TCPListener {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ln
}

// err says why the socket does not listen; nil while it does.
func (s *portSocket) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.down
}

// setDown records that the socket does not listen, and why.
func (s *portSocket) setDown(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ln, s.down = nil, err
}

// up makes ln the socket in use, unless the port stopped accepting
// meanwhile: then the caller must close ln.
func (s *portSocket) up(b *binding, ln *net.TCPListener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Under the lock: stopAccepting closes b.stop before it takes the
	// socket in use, so either it closes ln or this sees b.stop closed.
	if b.stopping() {
		return false
	}
	s.ln, s.down = ln, nil
	return true
}

// stopping reports whether the port stopped accepting (closed, or the
// listener draining).
func (b *binding) stopping() bool {
	select {
	case <-b.stop:
		return true
	default:
		return false
	}
}

// wait pauses for d; false if the port stopped accepting meanwhile.
func (b *binding) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-b.stop:
		return false
	}
}

// notListening says why the port does not listen on some of its addresses:
// "" while it listens on all of them.
func (b *binding) notListening() string {
	var why []string
	for _, s := range b.socks {
		if err := s.err(); err != nil {
			why = append(why, err.Error())
		}
	}
	return strings.Join(why, "; ")
}

// notBoundAtStart is why a stored port's socket that could not be bound at
// start does not listen, until it is bound.
const notBoundAtStart = "not bound at start"

// accept takes the clients of the port on one address until it stops
// accepting. A failure that leaves the socket as it was (no descriptor or
// memory left, a client gone before it was taken) is retried after a pause
// that grows while the failures last, as net/http's Server does; the
// clients wait in the backlog meanwhile. Any other failure means the socket
// died: it is bound anew, retried the same way, until that works or the
// port is closed. ln is nil for a stored port whose address could not be
// bound at start (startErr, already logged): it is bound the same way
// first.
func (l *Listener) accept(b *binding, s *portSocket, ln *net.TCPListener, startErr error) {
	bo := backoff.Backoff{Min: acceptRetryMin, Max: acceptRetryMax}
	if ln == nil {
		if ln = l.rebind(b, s, notBoundAtStart, startErr.Error(), &bo); ln == nil {
			return
		}
	}
	for {
		c, err := ln.AcceptTCP()
		if err == nil {
			bo.Reset()
			b.wg.Go(func() { l.tunnel(b, c) })
			continue
		}
		if b.stopping() {
			return
		}
		if temporaryAcceptError(err) {
			l.acceptErrors[acceptTemporary].Add(1)
			delay := bo.Next()
			// Any client can cause it, by connecting often enough.
			l.floodLog.Warn("accept failed, retrying", logging.UID(b.spec.UID), logging.Port(b.spec.Port),
				logging.Reason(err.Error()), zap.Duration("retry_in", delay))
			if !b.wait(delay) {
				return
			}
			continue
		}
		l.acceptErrors[acceptDied].Add(1)
		why := "listener died: " + err.Error()
		s.setDown(errors.New(why + "; re-binding"))
		ln.Close()
		l.log.Error("port stopped listening, re-binding", logging.UID(b.spec.UID), logging.Port(b.spec.Port),
			zap.Stringer("addr", s.addr), logging.Reason(err.Error()))
		if l.portDownHook != nil {
			l.portDownHook(b.spec.Port)
		}
		if ln = l.rebind(b, s, why, "", &bo); ln == nil {
			return
		}
	}
}

// rebind binds the address of a socket that does not listen (why), retrying
// with bo until it works (the new socket) or the port stops accepting (nil).
// The port says it does not listen meanwhile, in GET /list, /readyz and
// the metrics. A failure is logged once per reason, logged being the one
// already logged.
func (l *Listener) rebind(b *binding, s *portSocket, why, logged string, bo *backoff.Backoff) *net.TCPListener {
	log := l.log.With(logging.UID(b.spec.UID), logging.Port(b.spec.Port), zap.Stringer("addr", s.addr))
	last := logged
	for {
		// A pause before the first attempt too: a socket that dies again
		// at once must not make this loop spin.
		if !b.wait(bo.Next()) {
			return nil
		}
		ln, err := net.ListenTCP("tcp", s.addr)
		if err == nil {
			if !s.up(b, ln) {
				ln.Close()
				return nil
			}
			l.rebinds.Add(1)
			log.Info("port listening again")
			return ln
		}
		s.setDown(fmt.Errorf("%s; re-binding: %w", why, err))
		// Once per reason: it is retried every second while it lasts.
		if reason := err.Error(); reason != last {
			last = reason
			log.Warn("port re-binding failed, retrying", logging.Reason(reason))
		}
	}
}

// temporaryAcceptError reports whether accept(2) failed leaving the
// listening socket as it was: for want of descriptors or memory, or for a
// client that went away or whose network failed before it was taken
// (accept(2) on Linux passes on such errors, to be retried).
func temporaryAcceptError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, errno := range []syscall.Errno{
		syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EINTR, syscall.EAGAIN,
		syscall.EPERM, // a firewall rule refused the client
		syscall.EPROTO, syscall.ENOPROTOOPT, syscall.EOPNOTSUPP,
		syscall.ENETDOWN, syscall.ENETUNREACH, syscall.EHOSTDOWN, syscall.EHOSTUNREACH,
	} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}
