package listener

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/socket-warp/socket-warp/listener/port"
)

// portTable is the listener's opened ports: the bound ones (served), the
// stored ones that cannot be served (failed), and the port numbers an open
// or a close is under way for.
//
// Its lock guards the maps, never any I/O: an open reserves its port number
// under the lock, binds and saves it without, then commits or rolls back
// under the lock again; a close alike. A slow disk thus holds up the opens
// and closes of its port only, never GET /list, /readyz or a scrape. An
// open or close of a port that has one under way waits for its outcome,
// so that every caller gets the answer it would have got had they taken
// turns: 409 for the second of two opens, 404 for the second of two closes.
type portTable struct {
	max int // SWL_MAX_PORTS; 0: no limit

	mu      sync.Mutex // guards the following fields
	bound   map[int]*binding
	failed  map[int]failedPort
	busy    map[int]bool  // port numbers with an open or a close under way
	opening int           // of those, the opens: they count against max
	settled chan struct{} // closed, and replaced, when a busy port settles
	waiting int           // callers waiting for one to settle (tests watch it)
	parent  context.Context
	stopped bool
}

func newPortTable(max int) *portTable {
	return &portTable{max: max, bound: map[int]*binding{}, failed: map[int]failedPort{},
		busy: map[int]bool{}, settled: make(chan struct{})}
}

// start opens the table to opens and closes, with the ports restored:
// bound, or failed. parent is the context of every port's tunnels.
func (t *portTable) start(parent context.Context, bound map[int]*binding, failed map[int]failedPort) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.parent, t.bound, t.failed = parent, bound, failed
}

// stop refuses opens and closes from now on, waits for those under way,
// and hands over the bound ports, for the caller to drain and close.
func (t *portTable) stop() map[int]*binding {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	for len(t.busy) > 0 {
		// Not for long: a bind and a state file write.
		_ = t.waitLocked(context.Background())
	}
	b := t.bound
	t.bound = map[int]*binding{}
	clear(t.failed)
	return b
}

// reserveOpen takes number for an open, which the caller then binds under
// the returned context and saves, and settles with commitOpen or
// abortOpen. It waits for an open or close of number under way, and for
// opens under way that could leave room when the limit is reached.
func (t *portTable) reserveOpen(ctx context.Context, number int) (context.Context, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		full := t.max > 0 && len(t.bound)+t.opening >= t.max
		switch {
		case t.stopped || t.parent == nil:
			return nil, ErrShuttingDown
		case t.busy[number]:
			// Its outcome decides the answer.
		case t.bound[number] != nil:
			return nil, port.ErrAlreadyOpen
		case full && t.opening == 0:
			return nil, fmt.Errorf("too many open ports (limit %d, SWL_MAX_PORTS): %w", t.max, port.ErrLimit)
		case full:
			// An open under way may fail and leave room.
		default:
			t.busy[number] = true
			t.opening++
			return t.parent, nil
		}
		if err := t.waitLocked(ctx); err != nil {
			return nil, err
		}
	}
}

// commitOpen serves b, replacing a failed port of its number.
func (t *portTable) commitOpen(b *binding) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.failed, b.spec.Port)
	t.bound[b.spec.Port] = b
	t.opening--
	t.settleLocked(b.spec.Port)
}

// abortOpen gives up an open of number; the caller closed what it bound.
func (t *portTable) abortOpen(number int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.opening--
	t.settleLocked(number)
}

// reserveClose takes number for a close, which the caller then removes
// from the store and settles with commitClose or abortClose. It returns
// the port: bound, or (b nil) failed. It waits for an open or close of
// number under way.
func (t *portTable) reserveClose(ctx context.Context, number int) (*binding, failedPort, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		b := t.bound[number]
		f, failed := t.failed[number]
		switch {
		case t.busy[number]:
			// Its outcome decides the answer.
		case t.stopped || (b == nil && !failed):
			return nil, failedPort{}, port.ErrNotOpen
		default:
			t.busy[number] = true
			return b, f, nil
		}
		if err := t.waitLocked(ctx); err != nil {
			return nil, failedPort{}, err
		}
	}
}

// commitClose forgets number; the caller closes its binding.
func (t *portTable) commitClose(number int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.bound, number)
	delete(t.failed, number)
	t.settleLocked(number)
}

// abortClose gives up a close of number: the port stays as it was.
func (t *portTable) abortClose(number int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.settleLocked(number)
}

func (t *portTable) settleLocked(number int) {
	delete(t.busy, number)
	close(t.settled)
	t.settled = make(chan struct{})
}

// waitLocked lets go of the lock until a busy port settles or ctx ends.
func (t *portTable) waitLocked(ctx context.Context) error {
	settled := t.settled
	t.waiting++
	t.mu.Unlock()
	var err error
	select {
	case <-settled:
	case <-ctx.Done():
		err = context.Cause(ctx)
	}
	t.mu.Lock()
	t.waiting--
	return err
}

// get is the bound port of number, nil if there is none.
func (t *portTable) get(number int) *binding {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.bound[number]
}

// view is the table as it stands, for readers to look at without the lock:
// the bound ports and the failed ones, or why there are none to serve
// (starting, shutting down).
func (t *portTable) view() ([]*binding, []failedPort, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.stopped:
		return nil, nil, errors.New("shutting down")
	case t.parent == nil:
		return nil, nil, errors.New("starting")
	}
	bound := make([]*binding, 0, len(t.bound))
	for _, b := range t.bound {
		bound = append(bound, b)
	}
	failed := make([]failedPort, 0, len(t.failed))
	for _, f := range t.failed {
		failed = append(failed, f)
	}
	return bound, failed, nil
}
