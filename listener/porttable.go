package listener

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/socket-warp/socket-warp/listener/port"
)

// portEntry is one stored port as this listener serves it: bound, or (b
// nil) not servable, err saying why. rev is the store revision of the
// record it serves.
type portEntry struct {
	spec port.Spec
	rev  int64
	b    *binding
	err  error
}

// portTable is the listener's ports as the reconciler made them: the
// ports it serves, and the stored ones it cannot serve with their errors.
// The reconciler is its only writer; the API, /readyz and the metrics read
// it. Its lock guards the map, never any I/O: the reconciler binds and
// closes outside it, so that a slow bind or a close waiting for its
// tunnels holds up no reader.
type portTable struct {
	max int // SWL_MAX_PORTS; 0: no limit

	mu      sync.Mutex // guards the following fields
	ports   map[int]portEntry
	opening int // API opens between their check and their answer: they count against max
	parent  context.Context
	stopped bool
}

func newPortTable(max int) *portTable {
	return &portTable{max: max, ports: map[int]portEntry{}}
}

// start opens the table; parent is the context of every port's tunnels.
func (t *portTable) start(parent context.Context) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.parent = parent
}

// context is the parent of the tunnels, nil before start.
func (t *portTable) context() context.Context {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.parent
}

// stop refuses opens and closes from now on and hands over the bound
// ports, for the caller to drain and close. The reconciler must have
// stopped.
func (t *portTable) stop() []*binding {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	var bound []*binding
	for _, e := range t.ports {
		if e.b != nil {
			bound = append(bound, e.b)
		}
	}
	clear(t.ports)
	return bound
}

// admit checks an open of number before it is written to the store, and
// counts it against SWL_MAX_PORTS until done is called. prev is the store
// revision of a port of that number that cannot be served, which the open
// replaces; 0 if there is none.
func (t *portTable) admit(number int) (prev int64, done func(), err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, exists := t.ports[number]
	switch {
	case t.stopped || t.parent == nil:
		return 0, nil, ErrShuttingDown
	case exists && e.b != nil:
		return 0, nil, port.ErrAlreadyOpen
	case t.max > 0 && t.boundLocked()+t.opening >= t.max:
		return 0, nil, fmt.Errorf("too many open ports (limit %d, SWL_MAX_PORTS): %w", t.max, port.ErrLimit)
	}
	t.opening++
	var once sync.Once
	return e.rev, func() {
		once.Do(func() {
			t.mu.Lock()
			defer t.mu.Unlock()
			t.opening--
		})
	}, nil
}

func (t *portTable) boundLocked() int {
	n := 0
	for _, e := range t.ports {
		if e.b != nil {
			n++
		}
	}
	return n
}

// outcome is why the port stored at rev is not served here: it cannot be
// served, or its address could not be bound when it was. nil if it is
// served, or if the store changed it since rev (another open or close).
func (t *portTable) outcome(number int, rev int64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.ports[number]
	switch {
	case !ok || e.rev != rev:
		return nil
	case e.b == nil:
		return e.err
	default:
		return e.b.startErr
	}
}

// set records e in place of the port of its number; take it out first.
func (t *portTable) set(e portEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.stopped {
		t.ports[e.spec.Port] = e
	}
}

// take removes the port of number and returns it, for the caller to close.
func (t *portTable) take(number int) (portEntry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.ports[number]
	delete(t.ports, number)
	return e, ok
}

// entry is the port of number as it stands.
func (t *portTable) entry(number int) (portEntry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.ports[number]
	return e, ok
}

// get is the bound port of number, nil if there is none.
func (t *portTable) get(number int) *binding {
	e, _ := t.entry(number)
	return e.b
}

// view is the table as it stands, for readers to look at without the lock:
// the bound ports and the ones that cannot be served, or why there are
// none to serve (starting, shutting down).
func (t *portTable) view() ([]*binding, []portEntry, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.stopped:
		return nil, nil, errors.New("shutting down")
	case t.parent == nil:
		return nil, nil, errors.New("starting")
	}
	var (
		bound  []*binding
		failed []portEntry
	)
	for _, e := range t.ports {
		if e.b != nil {
			bound = append(bound, e.b)
		} else {
			failed = append(failed, e)
		}
	}
	return bound, failed, nil
}
