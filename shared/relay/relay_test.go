package relay

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/socket-warp/socket-warp/shared/testutil"
	"github.com/socket-warp/socket-warp/shared/wire"
)

func TestRelayCopiesBytesIntact(t *testing.T) {
	for _, tp := range topologies {
		for _, size := range []struct{ up, down int }{
			{0, 0},
			{1, 1},
			{64 << 10, 64 << 10},
			{8 << 20, 8 << 20},
			// Unequal sizes catch swapped counters, and one side finishing
			// long before the other.
			{1, 64 << 10},
			{8 << 20, 0},
		} {
			t.Run(fmt.Sprintf("%s/up=%d/down=%d", tp.name, size.up, size.down), func(t *testing.T) {
				near, far, a, b := tp.build(t)
				var aToB, bToA, alsoAToB, alsoBToA atomic.Int64
				r := startRelay(t, a, b, Counters{AToB: &aToB, BToA: &bToA,
					Also: &Counters{AToB: &alsoAToB, BToA: &alsoBToA}})

				up, down := testutil.RandomBytes(t, size.up), testutil.RandomBytes(t, size.down)
				nearSent, farSent := goSend(near, up), goSend(far, down)
				nearGot, farGot := goDigest(near), goDigest(far)
				for _, c := range []struct {
					who  *end
					sent <-chan error
					got  <-chan digest
					want []byte
				}{{near, nearSent, farGot, up}, {far, farSent, nearGot, down}} {
					if err := <-c.sent; err != nil {
						t.Errorf("%s send: %v", c.who.name, err)
					}
					d := <-c.got
					if d.err != nil {
						t.Errorf("reading what %s sent: %v", c.who.name, d.err)
					}
					if d.n != int64(len(c.want)) || d.sum != sha256.Sum256(c.want) {
						t.Errorf("%s sent %d bytes; the other side read %d bytes, digest match %v",
							c.who.name, len(c.want), d.n, d.sum == sha256.Sum256(c.want))
					}
				}

				res := r.wait(t)
				if res.Err != nil {
					t.Errorf("Result.Err = %v, want nil", res.Err)
				}
				if res.AToB != int64(size.up) || res.BToA != int64(size.down) {
					t.Errorf("Result AToB=%d BToA=%d, want %d and %d", res.AToB, res.BToA, size.up, size.down)
				}
				if aToB.Load() != int64(size.up) || bToA.Load() != int64(size.down) {
					t.Errorf("Counters AToB=%d BToA=%d, want %d and %d", aToB.Load(), bToA.Load(), size.up, size.down)
				}
				if alsoAToB.Load() != int64(size.up) || alsoBToA.Load() != int64(size.down) {
					t.Errorf("Counters.Also AToB=%d BToA=%d, want %d and %d", alsoAToB.Load(), alsoBToA.Load(), size.up, size.down)
				}
			})
		}
	}
}

// The client shuts its write side first and still gets the whole reply, which
// the far side writes only after it saw the client's EOF.
func TestRelayHalfClose(t *testing.T) {
	for _, tp := range topologies {
		t.Run(tp.name, func(t *testing.T) {
			near, far, a, b := tp.build(t)
			r := startRelay(t, a, b, Counters{})

			request := []byte("GET / HTTP/1.0\r\n\r\n")
			if err := send(near, request); err != nil {
				t.Fatalf("%s send: %v", near.name, err)
			}
			got, err := io.ReadAll(far)
			if err != nil || !bytes.Equal(got, request) {
				t.Fatalf("%s read %q, %v; want %q then EOF", far.name, got, err, request)
			}

			reply := testutil.RandomBytes(t, 256<<10)
			sent := goSend(far, reply)
			got, err = io.ReadAll(near)
			if err != nil || !bytes.Equal(got, reply) {
				t.Fatalf("%s read %d bytes, %v; want the %d-byte reply then EOF", near.name, len(got), err, len(reply))
			}
			if err := <-sent; err != nil {
				t.Fatalf("%s send: %v", far.name, err)
			}

			res := r.wait(t)
			if res.Err != nil {
				t.Errorf("Result.Err = %v, want nil", res.Err)
			}
			if res.AToB != int64(len(request)) || res.BToA != int64(len(reply)) {
				t.Errorf("Result AToB=%d BToA=%d, want %d and %d", res.AToB, res.BToA, len(request), len(reply))
			}
		})
	}
}

// A connection that one side has half-closed lives on for as long as the
// other side keeps talking: the relay returns only when both directions end.
func TestRelayKeepsHalfClosedConnectionOpen(t *testing.T) {
	for _, tp := range topologies {
		for _, nearCloses := range []bool{true, false} {
			name := tp.name + "/far-closes-first"
			if nearCloses {
				name = tp.name + "/near-closes-first"
			}
			t.Run(name, func(t *testing.T) {
				near, far, a, b := tp.build(t)
				r := startRelay(t, a, b, Counters{})
				closer, talker := far, near
				if nearCloses {
					closer, talker = near, far
				}

				if err := send(closer, []byte("bye")); err != nil {
					t.Fatalf("%s send: %v", closer.name, err)
				}
				if got, err := io.ReadAll(talker); err != nil || string(got) != "bye" {
					t.Fatalf("%s read %q, %v; want \"bye\" then EOF", talker.name, got, err)
				}

				var total int
				for i := range 8 {
					chunk := bytes.Repeat([]byte{byte('a' + i)}, 1000*(i+1))
					if _, err := talker.Write(chunk); err != nil {
						t.Fatalf("chunk %d: %s write: %v", i, talker.name, err)
					}
					got := make([]byte, len(chunk))
					if _, err := io.ReadFull(closer, got); err != nil {
						t.Fatalf("chunk %d: %s read: %v", i, closer.name, err)
					}
					if !bytes.Equal(got, chunk) {
						t.Fatalf("chunk %d arrived corrupted", i)
					}
					if r.returned() {
						t.Fatalf("Relay returned while one direction was still open (after chunk %d)", i)
					}
					total += len(chunk)
				}

				if err := talker.CloseWrite(); err != nil {
					t.Fatalf("%s CloseWrite: %v", talker.name, err)
				}
				if rest, err := io.ReadAll(closer); err != nil || len(rest) != 0 {
					t.Fatalf("%s read %d more bytes, %v; want a clean EOF", closer.name, len(rest), err)
				}
				res := r.wait(t)
				if res.Err != nil {
					t.Errorf("Result.Err = %v, want nil", res.Err)
				}
				fromCloser, fromTalker := res.AToB, res.BToA
				if !nearCloses {
					fromCloser, fromTalker = fromTalker, fromCloser
				}
				if fromCloser != 3 || fromTalker != int64(total) {
					t.Errorf("Result AToB=%d BToA=%d: closer sent 3 bytes, talker %d", res.AToB, res.BToA, total)
				}
			})
		}
	}
}

// A peer that resets (TCP RST, QUIC stream reset) aborts the other side too,
// which must see an error rather than a clean EOF.
func TestRelayAbortPropagates(t *testing.T) {
	for _, tp := range topologies {
		for _, nearResets := range []bool{true, false} {
			name := tp.name + "/far-resets"
			if nearResets {
				name = tp.name + "/near-resets"
			}
			t.Run(name, func(t *testing.T) {
				near, far, a, b := tp.build(t)
				r := startRelay(t, a, b, Counters{})
				roundTrip(t, near, far)

				victim, other := far, near
				if nearResets {
					victim, other = near, far
				}
				victim.reset()
				other.expectAborted(t, wire.StreamCodeAborted)

				res := r.wait(t)
				if res.Err == nil || errors.Is(res.Err, ErrClosed) {
					t.Fatalf("Result.Err = %v, want the peer's error", res.Err)
				}
				if victim.stream != nil {
					var se *quic.StreamError
					if !errors.As(res.Err, &se) || !se.Remote || se.ErrorCode != peerCode {
						t.Errorf("Result.Err = %v, want the peer's stream reset with code %#x", res.Err, peerCode)
					}
				}
				if res.AToB != 4 || res.BToA != 4 {
					t.Errorf("Result AToB=%d BToA=%d, want 4 and 4", res.AToB, res.BToA)
				}
			})
		}
	}
}

// A peer that half-closes and then dies is noticed on the relay's next write
// to it; the other side, which is still talking, is then aborted rather than
// left writing into the void.
func TestRelayResetAfterHalfCloseAborts(t *testing.T) {
	for _, tp := range topologies {
		t.Run(tp.name, func(t *testing.T) {
			near, far, a, b := tp.build(t)
			r := startRelay(t, a, b, Counters{})
			if err := send(near, []byte("bye")); err != nil {
				t.Fatalf("%s send: %v", near.name, err)
			}
			if got, err := io.ReadAll(far); err != nil || string(got) != "bye" {
				t.Fatalf("%s read %q, %v; want \"bye\" then EOF", far.name, got, err)
			}
			near.reset()

			farWrote := make(chan error, 1)
			go func() {
				chunk := make([]byte, 1024)
				for {
					if _, err := far.Write(chunk); err != nil {
						farWrote <- err
						return
					}
				}
			}()
			// far has read its EOF already, so it learns of the abort by a
			// failing write.
			far.checkWriteAborted(t, <-farWrote, wire.StreamCodeAborted)
			if res := r.wait(t); res.Err == nil || errors.Is(res.Err, ErrClosed) {
				t.Errorf("Result.Err = %v, want the failed write", res.Err)
			}
		})
	}
}

// A QUIC peer that resets only its send side (RESET_STREAM): the relay's read
// fails and the relay aborts both sides.
func TestRelayQUICPeerCancelWrite(t *testing.T) {
	client, peer, a, b := topologyNamed(t, "tcp-quic").build(t)
	r := startRelay(t, a, b, Counters{})
	roundTrip(t, client, peer)

	peer.stream.CancelWrite(peerCode)
	client.expectAborted(t, 0)
	// The peer's receive side is still open and learns of the abort too.
	peer.expectAborted(t, wire.StreamCodeAborted)

	res := r.wait(t)
	var se *quic.StreamError
	if !errors.As(res.Err, &se) || !se.Remote || se.ErrorCode != peerCode {
		t.Errorf("Result.Err = %v, want the peer's stream reset with code %#x", res.Err, peerCode)
	}
}

// A QUIC peer that stops reading (STOP_SENDING): the relay's next write to the
// stream fails and the relay aborts both sides.
func TestRelayQUICPeerCancelRead(t *testing.T) {
	client, peer, a, b := topologyNamed(t, "tcp-quic").build(t)
	r := startRelay(t, a, b, Counters{})
	roundTrip(t, client, peer)

	peer.stream.CancelRead(peerCode)
	// The relay notices STOP_SENDING only on its next write to the stream.
	// Its stream's context ends when STOP_SENDING has arrived; then one write
	// from the client makes the relay fail.
	relaySide := b.(streamConn).Stream
	select {
	case <-relaySide.Context().Done():
	case <-time.After(safety):
		t.Fatal("STOP_SENDING never reached the relay's stream")
	}
	if _, err := client.Write([]byte("more")); err != nil {
		t.Fatalf("client write: %v", err)
	}
	client.expectAborted(t, 0)

	res := r.wait(t)
	var se *quic.StreamError
	if !errors.As(res.Err, &se) || !se.Remote || se.ErrorCode != peerCode {
		t.Errorf("Result.Err = %v, want the peer's STOP_SENDING with code %#x", res.Err, peerCode)
	}

	// The peer's send side is still open and gets STOP_SENDING from the relay.
	var err error
	for err == nil {
		_, err = peer.Write(make([]byte, 1024))
	}
	peer.checkWriteAborted(t, err, wire.StreamCodeAborted)
}

// Cancelling the context (port closed, shutdown) aborts both sides at once,
// whether the connection is idle or busy, and the result says so.
func TestRelayContextCancelAbortsBothSides(t *testing.T) {
	for _, tp := range topologies {
		for _, busy := range []bool{false, true} {
			name := tp.name + "/idle"
			if busy {
				name = tp.name + "/busy"
			}
			t.Run(name, func(t *testing.T) {
				near, far, a, b := tp.build(t)
				var aToB, bToA atomic.Int64
				r := startRelay(t, a, b, Counters{AToB: &aToB, BToA: &bToA})
				roundTrip(t, near, far)

				var writers sync.WaitGroup
				if busy {
					// Both sides stream data non-stop, so the relay is blocked in
					// flow control somewhere when the context ends.
					for _, e := range []*end{near, far} {
						writers.Add(1)
						go func() {
							defer writers.Done()
							chunk := make([]byte, 16<<10)
							for {
								if _, err := e.Write(chunk); err != nil {
									return
								}
							}
						}()
					}
					// Wait until data flows in both directions.
					for aToB.Load() < 1<<20 || bToA.Load() < 1<<20 {
						if _, err := io.ReadFull(far, make([]byte, 32<<10)); err != nil {
							t.Fatalf("%s read: %v", far.name, err)
						}
						if _, err := io.ReadFull(near, make([]byte, 32<<10)); err != nil {
							t.Fatalf("%s read: %v", near.name, err)
						}
					}
				}

				r.cancel()
				if busy {
					near.expectAbortedWhileWriting(t, wire.StreamCodeClosed)
					far.expectAbortedWhileWriting(t, wire.StreamCodeClosed)
				} else {
					near.expectAborted(t, wire.StreamCodeClosed)
					far.expectAborted(t, wire.StreamCodeClosed)
				}
				writers.Wait() // they end only when their writes fail

				res := r.wait(t)
				if res.Err != ErrClosed {
					t.Errorf("Result.Err = %v, want ErrClosed", res.Err)
				}
				if res.AToB != aToB.Load() || res.BToA != bToA.Load() {
					t.Errorf("Result AToB=%d BToA=%d disagree with Counters %d and %d",
						res.AToB, res.BToA, aToB.Load(), bToA.Load())
				}
			})
		}
	}
}

func TestRelayContextAlreadyDone(t *testing.T) {
	near, far, a, b := topologyNamed(t, "tcp-quic").build(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := Relay(ctx, a, b, Counters{})
	if res.Err != ErrClosed {
		t.Errorf("Result.Err = %v, want ErrClosed", res.Err)
	}
	near.expectAborted(t, wire.StreamCodeClosed)
	far.expectAborted(t, wire.StreamCodeClosed)
}

// fakeConn is a Conn whose Read fails with readErr, or blocks until Abort when
// readErr is nil. It records what Relay does to it.
type fakeConn struct {
	readErr error

	abortOnce sync.Once
	aborted   chan struct{}

	mu        sync.Mutex
	reading   int
	codes     []uint64
	closes    int
	closeLive bool // Close was called while a Read was in progress
}

func newFakeConn(readErr error) *fakeConn {
	return &fakeConn{readErr: readErr, aborted: make(chan struct{})}
}

var errFakeAborted = errors.New("fake conn aborted")

func (c *fakeConn) Read([]byte) (int, error) {
	c.mu.Lock()
	c.reading++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.reading--
		c.mu.Unlock()
	}()
	if c.readErr != nil {
		return 0, c.readErr
	}
	<-c.aborted
	return 0, errFakeAborted
}

func (c *fakeConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *fakeConn) CloseWrite() error           { return nil }

func (c *fakeConn) SetReadDeadline(time.Time) error { return nil }

func (c *fakeConn) Abort(code uint64) {
	c.mu.Lock()
	c.codes = append(c.codes, code)
	c.mu.Unlock()
	c.abortOnce.Do(func() { close(c.aborted) })
}

func (c *fakeConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closes++
	if c.reading > 0 {
		c.closeLive = true
	}
	return nil
}

// The first error wins, both ends are aborted once with StreamCodeAborted, and
// both are closed only after both directions are over.
func TestRelayFirstErrorAbortsBothEnds(t *testing.T) {
	errBoom := errors.New("boom")
	a, b := newFakeConn(errBoom), newFakeConn(nil)
	res := Relay(context.Background(), a, b, Counters{})
	if res.Err != errBoom {
		t.Errorf("Result.Err = %v, want %v", res.Err, errBoom)
	}
	for _, c := range []struct {
		name string
		*fakeConn
	}{{"a", a}, {"b", b}} {
		c.mu.Lock()
		if len(c.codes) != 1 || c.codes[0] != wire.StreamCodeAborted {
			t.Errorf("%s aborted with codes %#x, want exactly one %#x", c.name, c.codes, wire.StreamCodeAborted)
		}
		if c.closes != 1 || c.closeLive {
			t.Errorf("%s: Close called %d times (during a Read: %v), want once after reading ended", c.name, c.closes, c.closeLive)
		}
		c.mu.Unlock()
	}
}
