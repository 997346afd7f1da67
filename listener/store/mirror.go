package store

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/socket-warp/socket-warp/listener/port"
)

// historyLen is how many changes a mirror keeps for watches to catch up
// on. A watcher further behind is told ErrCompacted and lists again: it
// costs a List, never a lost change.
const historyLen = 1024

// mirror is a store's records in memory, their revisions and the recent
// changes, which it hands to watches. Its lock is held for map and slice
// work only. Writers (Bolt, Memory) queue themselves: each checks with
// mayPut or mayDelete, writes, then applies the change here.
type mirror struct {
	mu      sync.Mutex // guards the following fields
	records map[int]Record
	rev     int64
	history []Event // the newest changes, oldest first, at most keep
	keep    int
	changed chan struct{} // closed, and replaced, by every change
	closed  bool
}

// newMirror holds ports, all at revision 1.
func newMirror(ports []port.Spec) *mirror {
	m := &mirror{records: make(map[int]Record, len(ports)), rev: 1, keep: historyLen, changed: make(chan struct{})}
	for _, p := range ports {
		m.records[p.Port] = Record{Spec: p, Revision: 1}
	}
	return m
}

// mayPut is nil if a Put of number with prev may go ahead.
func (m *mirror) mayPut(number int, prev int64) (Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Record{}, ErrClosed
	}
	r, ok := m.records[number]
	if ok && (prev == 0 || r.Revision != prev) {
		return Record{}, fmt.Errorf("port %d: %w", number, port.ErrAlreadyOpen)
	}
	return r, nil
}

// mayDelete is the record a Delete of number with prev removes, or why it
// may not.
func (m *mirror) mayDelete(number int, prev int64) (Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Record{}, ErrClosed
	}
	r, ok := m.records[number]
	switch {
	case !ok:
		return Record{}, fmt.Errorf("port %d: %w", number, port.ErrNotOpen)
	case prev != 0 && r.Revision != prev:
		return Record{}, fmt.Errorf("port %d: %w", number, ErrConflict)
	}
	return r, nil
}

// apply records a change the writer made durable, gives it the next
// revision and wakes the watches.
func (m *mirror) apply(ev Event) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rev++
	ev.Revision = m.rev
	if ev.Deleted {
		delete(m.records, ev.Port)
	} else {
		m.records[ev.Port] = Record{Spec: ev.Spec, Revision: ev.Revision}
	}
	if len(m.history) >= m.keep {
		m.history = append(m.history[:0], m.history[1:]...)
	}
	m.history = append(m.history, ev)
	close(m.changed)
	m.changed = make(chan struct{})
	return ev.Revision
}

func (m *mirror) snapshot() Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := Snapshot{Ports: make([]Record, 0, len(m.records)), Revision: m.rev}
	for _, r := range m.records {
		s.Ports = append(s.Ports, r)
	}
	sort.Slice(s.Ports, func(i, j int) bool { return s.Ports[i].Port < s.Ports[j].Port })
	return s
}

// since returns the changes after after, or a channel that is closed by
// the next change when there are none yet.
func (m *mirror) since(after int64) ([]Event, <-chan struct{}, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.closed:
		return nil, nil, ErrClosed
	case after >= m.rev:
		return nil, m.changed, nil
	}
	// The oldest change kept is m.rev-len(history)+1; the changes up to
	// after must be at most one older than that.
	first := m.rev - int64(len(m.history)) + 1
	if after < first-1 {
		return nil, nil, ErrCompacted
	}
	kept := m.history[after-first+1:]
	return append([]Event(nil), kept...), nil, nil
}

// watch serves Store.Watch: one goroutine per watch, which ends with ctx
// or the store.
func (m *mirror) watch(ctx context.Context, after int64) <-chan WatchResponse {
	out := make(chan WatchResponse)
	go func() {
		defer close(out)
		for {
			events, changed, err := m.since(after)
			var resp WatchResponse
			switch {
			case err != nil:
				resp.Err = err
			case len(events) == 0:
				select {
				case <-changed:
					continue
				case <-ctx.Done():
					return
				}
			default:
				resp.Events = events
				after = events[len(events)-1].Revision
			}
			// One revision per response, as etcd delivers them.
			for _, r := range split(resp) {
				select {
				case out <- r:
				case <-ctx.Done():
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return out
}

// split cuts a response into one per revision; here every change has a
// revision of its own.
func split(resp WatchResponse) []WatchResponse {
	if resp.Err != nil || len(resp.Events) <= 1 {
		return []WatchResponse{resp}
	}
	out := make([]WatchResponse, len(resp.Events))
	for i, ev := range resp.Events {
		out[i] = WatchResponse{Events: []Event{ev}}
	}
	return out
}

// close ends every watch with ErrClosed and refuses writes.
func (m *mirror) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.closed = true
		close(m.changed)
	}
}
