// Package relay is the one bidirectional copy used by both daemons.
//
// Each direction is copied until EOF and then half-closed on the other side
// (TCP FIN ↔ QUIC stream FIN), so a client that shuts its write side first still
// gets the whole reply. An error in either direction, or cancellation of the
// context, aborts both sides at once (TCP reset, QUIC stream reset), so a broken
// peer never leaves the other half hanging. Relay returns only when both
// directions have ended: no goroutine outlives it.
package relay

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/socket-warp/socket-warp/shared/wire"
)

// Conn is one end of a relay.
type Conn interface {
	io.Reader
	io.Writer
	// CloseWrite sends EOF to the peer while reading goes on.
	CloseWrite() error
	// Abort resets both directions; code is sent where the transport has codes.
	// It must be safe to call concurrently with Read and Write, and more than once.
	Abort(code uint64)
	// Close releases the end after both directions are over.
	Close() error
	// SetReadDeadline bounds the wait of Read; the relay uses it to give
	// large buffers back while a direction is idle.
	SetReadDeadline(t time.Time) error
}

// ErrClosed is reported when the relay was ended by its context (port closed,
// shutdown) rather than by either peer.
var ErrClosed = errors.New("relay closed")

// Counters receive the live byte counts; either field may be nil.
type Counters struct {
	AToB *atomic.Int64
	BToA *atomic.Int64
	// Also, when set, counts the same bytes once more: per port and per
	// connector at once, say.
	Also *Counters
}

// each returns the counters of one direction along the chain.
func (c Counters) each(aToB bool) []*atomic.Int64 {
	var out []*atomic.Int64
	for cur := &c; cur != nil; cur = cur.Also {
		n := cur.BToA
		if aToB {
			n = cur.AToB
		}
		if n != nil {
			out = append(out, n)
		}
	}
	return out
}

// Result says how a relay ended.
type Result struct {
	AToB int64 // bytes copied from a to b
	BToA int64 // bytes copied from b to a
	// Err is nil when both directions ended with EOF; otherwise the first error,
	// ErrClosed when the context ended it.
	Err error
}

// Buffer sizes. An idle tunnel blocks in Read on both directions, and the
// buffer passed to a blocked Read stays resident: with 10,000 idle tunnels a
// 32 KiB buffer per direction would cost 640 MiB once its pages were touched.
// So each direction waits with a small buffer and borrows a large pooled one
// only while data flows, giving it back after holdLarge without data.
const (
	smallSize = 512
	largeSize = 32 << 10
	holdLarge = time.Second
)

var (
	smallPool = newPool(smallSize, 1024)
	largePool = newPool(largeSize, 128)
)

// pool keeps at most a fixed number of free buffers. A sync.Pool would keep
// every buffer a burst of a thousand tunnels borrowed alive across the next
// garbage collection (its victim cache), and an idle daemon collects only
// every two minutes: RSS would stay at its peak long after the tunnels end.
type pool struct {
	size int
	free chan *[]byte
}

func newPool(size, keep int) *pool { return &pool{size: size, free: make(chan *[]byte, keep)} }

func (p *pool) get() *[]byte {
	select {
	case b := <-p.free:
		return b
	default:
		b := make([]byte, p.size)
		return &b
	}
}

func (p *pool) put(b *[]byte) {
	select {
	case p.free <- b:
	default: // enough kept; the collector takes this one
	}
}

// Relay copies a→b and b→a until both directions end. It closes both ends
// before it returns.
func Relay(ctx context.Context, a, b Conn, counters Counters) Result {
	return relay(ctx, a, b, counters, holdLarge)
}

// relay is Relay with the idle period after which a direction gives its
// large buffer back: the package's tests shorten it, so that watching a
// buffer come back does not wait out the production second.
func relay(ctx context.Context, a, b Conn, counters Counters, hold time.Duration) Result {
	var (
		once     sync.Once
		firstErr error
	)
	fail := func(err error, code uint64) {
		once.Do(func() {
			firstErr = err
			a.Abort(code)
			b.Abort(code)
		})
	}
	cancelled := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(cancelled)
		fail(ErrClosed, wire.StreamCodeClosed)
	})

	var bToA int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		bToA = pipe(a, b, counters.each(false), fail, hold)
	}()
	aToB := pipe(b, a, counters.each(true), fail, hold)
	<-done
	// Both directions are over: a late cancellation must not reset streams
	// whose FIN is still in flight, nor outlive this call.
	once.Do(func() {})
	if !stop() {
		<-cancelled
	}
	_ = a.Close()
	_ = b.Close()
	return Result{AToB: aToB, BToA: bToA, Err: firstErr}
}

// pipe copies src to dst until EOF, then half-closes dst. Any other error
// aborts the whole relay through fail. A large buffer goes back after hold
// without data.
func pipe(dst, src Conn, counters []*atomic.Int64, fail func(error, uint64), hold time.Duration) int64 {
	small := smallPool.get()
	defer smallPool.put(small)
	var (
		large    *[]byte   // borrowed while data flows
		deadline time.Time // when a Read with large gives up waiting
		total    int64
	)
	defer func() {
		if large != nil {
			largePool.put(large)
		}
	}()
	for {
		buf := *small
		if large != nil {
			buf = *large
			// Refreshing the deadline on every Read would cost a timer
			// operation per Read; every half period is enough to keep
			// a flowing direction from ever seeing it.
			if now := time.Now(); deadline.Sub(now) < hold/2 {
				deadline = now.Add(hold)
				if err := src.SetReadDeadline(deadline); err != nil {
					fail(err, wire.StreamCodeAborted)
					return total
				}
			}
		}
		n, rerr := src.Read(buf)
		if n > 0 {
			w, werr := dst.Write(buf[:n])
			total += int64(w)
			for _, c := range counters {
				c.Add(int64(w))
			}
			if werr != nil {
				fail(werr, wire.StreamCodeAborted)
				return total
			}
		}
		switch {
		case rerr == nil:
			if large == nil && n == len(buf) {
				// A full small read: more is likely waiting.
				large = largePool.get()
			}
			continue
		case rerr == io.EOF:
			if err := dst.CloseWrite(); err != nil {
				fail(err, wire.StreamCodeAborted)
			}
			return total
		case large != nil && errors.Is(rerr, os.ErrDeadlineExceeded):
			// Idle for hold: wait on with the small buffer only.
			largePool.put(large)
			large, deadline = nil, time.Time{}
			if err := src.SetReadDeadline(time.Time{}); err != nil {
				fail(err, wire.StreamCodeAborted)
				return total
			}
			continue
		default:
			fail(rerr, wire.StreamCodeAborted)
			return total
		}
	}
}

// TCP adapts a TCP connection. Abort resets it (linger 0) so the peer sees the
// failure instead of a clean end.
func TCP(c *net.TCPConn) Conn { return tcpConn{c} }

type tcpConn struct{ *net.TCPConn }

func (c tcpConn) Abort(uint64) {
	_ = c.SetLinger(0)
	_ = c.TCPConn.Close()
}

// Stream adapts a QUIC stream. Close on a quic-go stream only ends the send
// side, which is exactly a half-close.
func Stream(s *quic.Stream) Conn { return streamConn{s} }

type streamConn struct{ *quic.Stream }

func (s streamConn) CloseWrite() error { return s.Stream.Close() }

func (s streamConn) Abort(code uint64) {
	s.CancelRead(quic.StreamErrorCode(code))
	s.CancelWrite(quic.StreamErrorCode(code))
}

// Close has nothing left to do: each direction ended either at EOF or in
// Abort, so both sides of the stream are already finished.
func (s streamConn) Close() error { return nil }

// OnFreshStack runs f on a goroutine of its own and waits for it.
//
// A goroutine's stack grows to the deepest call it ever made and shrinks only
// slowly (a collection halves it when three quarters are unused). A tunnel
// goroutine that reads a header, dials, and logs before it relays would keep
// an 8 KiB stack for the tunnel's whole idle life; with that setup done here,
// the relaying goroutine's stack stays the size relaying needs.
func OnFreshStack[T any](f func() T) T {
	done := make(chan T, 1)
	go func() { done <- f() }()
	return <-done
}

// SetUp is OnFreshStack for a tunnel's set-up that also adds to what the
// tunnel carries on with, such as the fields its later log lines repeat
// (target, client address, stream): f gets them and returns them with what
// it appended.
func SetUp[T, F any](carry F, f func(F) (T, F)) (T, F) {
	type result struct {
		v     T
		carry F
	}
	r := OnFreshStack(func() result {
		v, c := f(carry)
		return result{v, c}
	})
	return r.v, r.carry
}
