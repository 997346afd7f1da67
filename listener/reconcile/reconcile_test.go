package reconcile

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"
	"testing/synctest"

	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/listener/port"
	"github.com/socket-warp/socket-warp/listener/store"
	"github.com/socket-warp/socket-warp/shared/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }

// table is a Table in memory: what is bound, what failed, and every call.
type table struct {
	mu      sync.Mutex
	bound   map[int]int64 // port → revision
	failed  map[int]error
	binds   int
	unbinds int
	refuse  map[int]error // ports whose Bind fails
}

func newTable() *table {
	return &table{bound: map[int]int64{}, failed: map[int]error{}, refuse: map[int]error{}}
}

func (t *table) Bind(p port.Spec, rev int64, _ Cause) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.binds++
	if err := t.refuse[p.Port]; err != nil {
		return err
	}
	delete(t.failed, p.Port)
	t.bound[p.Port] = rev
	return nil
}

func (t *table) Fail(p port.Spec, _ int64, _ Cause, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.bound, p.Port)
	t.failed[p.Port] = err
}

func (t *table) Unbind(number int, _ Cause) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.unbinds++
	delete(t.bound, number)
	delete(t.failed, number)
}

// state is what the table holds: bound ports by revision, failed ports,
// and how many binds and unbinds it was asked for.
func (t *table) state() (map[int]int64, map[int]error, int, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.bound), maps.Clone(t.failed), t.binds, t.unbinds
}

// watchFaults is a store whose watches deliver every event twice and
// break on demand: with an error (a lost connection), or as compacted.
type watchFaults struct {
	*store.Memory
	mu      sync.Mutex
	breaks  chan error // the next watch response is this error
	watches []int64    // the revision each watch started after
	// compacted: the changes up to it are no longer kept.
	compacted int64
}

func (s *watchFaults) Watch(ctx context.Context, after int64) <-chan store.WatchResponse {
	s.mu.Lock()
	s.watches = append(s.watches, after)
	compacted := after < s.compacted
	s.mu.Unlock()
	if compacted {
		out := make(chan store.WatchResponse, 1)
		out <- store.WatchResponse{Err: fmt.Errorf("watch: %w", store.ErrCompacted)}
		close(out)
		return out
	}
	ctx, cancel := context.WithCancel(ctx)
	in := s.Memory.Watch(ctx, after)
	out := make(chan store.WatchResponse)
	go func() {
		defer close(out)
		defer cancel()
		send := func(r store.WatchResponse) bool {
			select {
			case out <- r:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for {
			select {
			case err := <-s.breaks:
				send(store.WatchResponse{Err: err})
				return
			case r, ok := <-in:
				if !ok || !send(r) {
					return
				}
				if r.Err == nil && !send(r) { // twice
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

func (s *watchFaults) started() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.watches...)
}

func spec(n int) port.Spec {
	return port.Spec{UID: "swc-1", Port: n, ConnectAddress: "db", ConnectPort: 5432}
}

// running is a Reconciler of s for tab, restored and running until the
// test ends.
func running(t *testing.T, s store.Store, tab *table) *Reconciler {
	r := New(s, tab, zap.NewNop())
	if err := r.Restore(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func put(t *testing.T, s store.Store, p port.Spec, prev int64) int64 {
	t.Helper()
	rev, err := s.Put(t.Context(), p, prev)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func del(t *testing.T, s store.Store, n int) int64 {
	t.Helper()
	_, rev, err := s.Delete(t.Context(), n, 0)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func wait(t *testing.T, r *Reconciler, rev int64) {
	t.Helper()
	if err := r.Wait(t.Context(), rev); err != nil {
		t.Fatalf("wait for revision %d: %v", rev, err)
	}
}

func wantTable(t *testing.T, tab *table, bound map[int]int64, failed []int, binds, unbinds int) {
	t.Helper()
	b, f, nb, nu := tab.state()
	if !maps.Equal(b, bound) || len(f) != len(failed) || nb != binds || nu != unbinds {
		t.Fatalf("table: bound %v, failed %v, %d binds, %d unbinds; want bound %v, failed %v, %d binds, %d unbinds",
			b, f, nb, nu, bound, failed, binds, unbinds)
	}
	for _, n := range failed {
		if f[n] == nil {
			t.Fatalf("table: port %d did not fail (failed: %v)", n, f)
		}
	}
}

// TestReconcilerFollowsTheStore: what is stored at start is bound; a put is
// bound, a delete closed, each once although the watch delivers it twice;
// a port that cannot be bound is recorded failed, not retried until it
// changes, and bound once it is replaced.
func TestReconcilerFollowsTheStore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &watchFaults{Memory: store.NewMemory(spec(1)), breaks: make(chan error, 1)}
		defer s.Close()
		tab := newTable()
		tab.refuse[3] = errors.New("refused by the stream header")
		r := running(t, s, tab)
		wantTable(t, tab, map[int]int64{1: 1}, nil, 1, 0)

		r2 := put(t, s, spec(2), 0)
		wait(t, r, r2)
		wantTable(t, tab, map[int]int64{1: 1, 2: r2}, nil, 2, 0)

		r3 := del(t, s, 1)
		wait(t, r, r3)
		wantTable(t, tab, map[int]int64{2: r2}, nil, 2, 1)

		r4 := put(t, s, spec(3), 0)
		wait(t, r, r4)
		wantTable(t, tab, map[int]int64{2: r2}, []int{3}, 3, 1)
		synctest.Wait() // the duplicates delivered meanwhile changed nothing
		wantTable(t, tab, map[int]int64{2: r2}, []int{3}, 3, 1)

		delete(tab.refuse, 3)
		fixed := spec(3)
		fixed.ConnectPort = 5433
		r5 := put(t, s, fixed, r4)
		wait(t, r, r5)
		wantTable(t, tab, map[int]int64{2: r2, 3: r5}, nil, 4, 1)
	})
}

// TestReconcilerResumesItsWatch: a watch that breaks is started again from
// the last revision applied, so that the changes made meanwhile are
// applied once each; one told it is too far behind (compacted) lists the
// store again, binding what is new and closing what is gone.
func TestReconcilerResumesItsWatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &watchFaults{Memory: store.NewMemory(), breaks: make(chan error, 1)}
		defer s.Close()
		tab := newTable()
		r := running(t, s, tab)
		r1 := put(t, s, spec(1), 0)
		wait(t, r, r1)

		s.breaks <- errors.New("connection to the store lost")
		synctest.Wait() // broken, waiting to resume
		r2 := put(t, s, spec(2), 0)
		r3 := del(t, s, 1)
		wait(t, r, r3)
		wantTable(t, tab, map[int]int64{2: r2}, nil, 2, 1)
		if got := s.started(); len(got) != 2 || got[1] != r1 {
			t.Fatalf("watches started after revisions %v, want the second after %d", got, r1)
		}

		// Broken while changes are made that it will not be told of.
		s.breaks <- errors.New("connection to the store lost")
		synctest.Wait()
		r4 := put(t, s, spec(4), 0)
		r5 := del(t, s, 2)
		s.mu.Lock()
		s.compacted = r5
		s.mu.Unlock()
		wait(t, r, r5)
		wantTable(t, tab, map[int]int64{4: r4}, nil, 3, 2)
	})
}

// TestReconcilerWaitEnds: Wait fails once the reconciler stopped, and
// with the caller's context.
func TestReconcilerWaitEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := store.NewMemory()
		defer s.Close()
		r := New(s, newTable(), zap.NewNop())
		if err := r.Restore(t.Context()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := r.Wait(ctx, 100); !errors.Is(err, context.Canceled) {
			t.Fatalf("wait with an ended context: %v", err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			r.Run(ctx)
		}()
		<-done
		if err := r.Wait(t.Context(), 100); !errors.Is(err, ErrStopped) {
			t.Fatalf("wait after Run ended: %v, want %v", err, ErrStopped)
		}
	})
}
