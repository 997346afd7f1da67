// Package reconcile makes a listener serve what its store holds.
//
// The API writes the desired state, the opened ports, to a store.Store;
// each listener's Reconciler watches that store and makes the listener's
// port table match it: it binds what is missing, closes what is gone and
// records, per port, why one cannot be served. In a single listener the
// store is a bbolt file whose watch is fed in-process; in a cluster every
// replica runs a Reconciler on the same etcd store, so every replica
// serves every opened port.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/listener/port"
	"github.com/socket-warp/socket-warp/listener/store"
	"github.com/socket-warp/socket-warp/shared/backoff"
	"github.com/socket-warp/socket-warp/shared/logging"
)

// Table is what a Reconciler makes match the store: the listener's ports.
// Only the Reconciler's goroutine calls it, one port at a time.
type Table interface {
	// Bind serves spec, stored at revision rev, in place of whatever
	// serves its port now. An error means it cannot be served at all.
	Bind(spec port.Spec, rev int64, cause Cause) error
	// Fail records that spec, stored at rev, cannot be served, and why,
	// in place of whatever serves its port now: GET /list shows it.
	Fail(spec port.Spec, rev int64, cause Cause, err error)
	// Unbind stops serving number: the store no longer holds it.
	Unbind(number int, cause Cause)
}

// Cause tells a Table why a port changes, for its log.
type Cause int

const (
	// Restored: the store as it stood when the listener started.
	Restored Cause = iota
	// Changed: a change made while the listener runs (POST /open,
	// DELETE /close, here or on another replica).
	Changed
)

// ErrStopped is what Wait returns once the Reconciler no longer runs.
var ErrStopped = fmt.Errorf("reconciler stopped: %w", port.ErrUnavailable)

// The pause before a broken watch is resumed or a failed List is retried.
const (
	retryMin = 50 * time.Millisecond
	retryMax = 5 * time.Second
)

// Reconciler follows one store for one table.
type Reconciler struct {
	store store.Store
	table Table
	log   *zap.Logger
	// applied is the revision each port of the table stands at, bound or
	// failed: only Restore and Run's goroutine touch it.
	applied map[int]int64

	mu       sync.Mutex // guards the following fields
	rev      int64      // every change up to it is applied
	advanced chan struct{}
	stopped  bool
}

// New returns a Reconciler of s for t; Restore, then Run, make it work.
func New(s store.Store, t Table, log *zap.Logger) *Reconciler {
	return &Reconciler{store: s, table: t, log: log, applied: map[int]int64{}, advanced: make(chan struct{})}
}

// Restore makes the table match the store as it stands: the first pass,
// before anything is served.
func (r *Reconciler) Restore(ctx context.Context) error {
	snap, err := r.store.List(ctx)
	if err != nil {
		return fmt.Errorf("list the opened ports: %w", err)
	}
	r.sync(snap, Restored)
	return nil
}

// Run follows the store's changes from where Restore left them until ctx
// ends. A watch that breaks is resumed from the last change applied; one
// that is told it is too far behind lists the store again.
func (r *Reconciler) Run(ctx context.Context) {
	defer r.stop()
	bo := backoff.Backoff{Min: retryMin, Max: retryMax}
	for {
		err := r.follow(ctx)
		if errors.Is(err, store.ErrCompacted) {
			err = r.relist(ctx)
		}
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			bo.Reset()
			continue
		case errors.Is(err, store.ErrClosed):
			return
		}
		r.log.Warn("store watch broke, resuming", logging.Reason(err.Error()), zap.Int64("revision", r.Revision()))
		select {
		case <-time.After(bo.Next()):
		case <-ctx.Done():
			return
		}
	}
}

// follow applies the changes of one watch until it ends.
func (r *Reconciler) follow(ctx context.Context) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for resp := range r.store.Watch(wctx, r.Revision()) {
		if resp.Err != nil {
			return resp.Err
		}
		for _, ev := range resp.Events {
			r.apply(ev)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("store watch ended")
}

func (r *Reconciler) relist(ctx context.Context) error {
	snap, err := r.store.List(ctx)
	if err != nil {
		return fmt.Errorf("list the opened ports after the watch fell behind: %w", err)
	}
	r.sync(snap, Changed)
	return nil
}

// apply makes one change real; a change seen already (a watch that
// resumed, or delivered it twice) is skipped.
func (r *Reconciler) apply(ev store.Event) {
	if ev.Revision <= r.Revision() {
		return
	}
	if ev.Deleted {
		if _, ok := r.applied[ev.Port]; ok {
			r.table.Unbind(ev.Port, Changed)
			delete(r.applied, ev.Port)
		}
	} else {
		r.bind(ev.Spec, ev.Revision, Changed)
	}
	r.advance(ev.Revision)
}

// sync makes the table match a whole snapshot: what changed since it was
// applied is bound, what it lacks is closed.
func (r *Reconciler) sync(snap store.Snapshot, cause Cause) {
	want := make(map[int]bool, len(snap.Ports))
	for _, rec := range snap.Ports {
		want[rec.Port] = true
		if rev, ok := r.applied[rec.Port]; ok && rev == rec.Revision {
			continue
		}
		r.bind(rec.Spec, rec.Revision, cause)
	}
	for number := range r.applied {
		if !want[number] {
			r.table.Unbind(number, cause)
			delete(r.applied, number)
		}
	}
	r.advance(snap.Revision)
}

func (r *Reconciler) bind(spec port.Spec, rev int64, cause Cause) {
	if err := r.table.Bind(spec, rev, cause); err != nil {
		r.table.Fail(spec, rev, cause, err)
	}
	r.applied[spec.Port] = rev
}

func (r *Reconciler) advance(rev int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rev > r.rev {
		r.rev = rev
		close(r.advanced)
		r.advanced = make(chan struct{})
	}
}

func (r *Reconciler) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	close(r.advanced)
	r.advanced = make(chan struct{})
}

// Revision is the revision up to which every change is applied.
func (r *Reconciler) Revision() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rev
}

// Wait returns once every change up to rev is applied: what an API call
// that made the change waits for before it answers. It fails with
// ErrStopped once Run has ended.
func (r *Reconciler) Wait(ctx context.Context, rev int64) error {
	for {
		r.mu.Lock()
		done, stopped, advanced := r.rev >= rev, r.stopped, r.advanced
		r.mu.Unlock()
		switch {
		case done:
			return nil
		case stopped:
			return ErrStopped
		}
		select {
		case <-advanced:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}
