package relay

import (
	"bytes"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/shared/testutil"
)

// readSizes records the size of the buffer each Read of the wrapped Conn is
// given: the one a blocked Read holds is what an idle tunnel costs.
type readSizes struct {
	Conn
	current atomic.Int64 // buffer of the Read in progress, 0 between Reads
	largest atomic.Int64
}

func (r *readSizes) Read(p []byte) (int, error) {
	r.current.Store(int64(len(p)))
	if int64(len(p)) > r.largest.Load() {
		r.largest.Store(int64(len(p)))
	}
	n, err := r.Conn.Read(p)
	r.current.Store(0)
	return n, err
}

// testHold stands in for holdLarge: each round waits for one idle period,
// and the mechanism is the same whatever its length.
const testHold = 50 * time.Millisecond

// A direction borrows a large buffer for a burst and, once idle, waits with
// the small one; data after the idle period still arrives intact.
func TestRelayIdleDirectionGivesLargeBufferBack(t *testing.T) {
	for _, tp := range topologies {
		t.Run(tp.name, func(t *testing.T) {
			near, far, a, b := tp.build(t)
			ra, rb := &readSizes{Conn: a}, &readSizes{Conn: b}
			startRelayHold(t, ra, rb, Counters{}, testHold)

			for round := range 2 {
				burst := testutil.RandomBytes(t, 4<<20)
				go near.Write(burst)
				got := make([]byte, len(burst))
				if _, err := io.ReadFull(far, got); err != nil {
					t.Fatalf("round %d: read the burst: %v", round, err)
				}
				if !bytes.Equal(got, burst) {
					t.Fatalf("round %d: burst corrupted", round)
				}
				if ra.largest.Load() != largeSize {
					t.Fatalf("round %d: largest read buffer %d during a 4 MiB burst, want %d", round, ra.largest.Load(), largeSize)
				}
				testutil.Eventually(t, "the idle direction to wait with the small buffer", func() bool {
					return ra.current.Load() == smallSize
				})
				// The other direction never carried data: it never borrowed.
				if rb.largest.Load() != smallSize {
					t.Errorf("round %d: idle direction read with a %d-byte buffer, want only %d", round, rb.largest.Load(), smallSize)
				}
				ra.largest.Store(0)
			}
		})
	}
}

// A burst of many tunnels must not leave all its buffers behind.
func TestPoolKeepsAtMostItsBound(t *testing.T) {
	p := newPool(16, 4)
	var bufs []*[]byte
	for range 10 {
		bufs = append(bufs, p.get())
	}
	for _, b := range bufs {
		p.put(b)
	}
	if len(p.free) != 4 {
		t.Fatalf("pool kept %d free buffers, want its bound 4", len(p.free))
	}
	if b := p.get(); len(*b) != 16 {
		t.Fatalf("buffer of %d bytes, want 16", len(*b))
	}
}
