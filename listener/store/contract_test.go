package store

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/listener/port"
)

// stores runs f on every implementation: what the reconciler relies on
// holds for each of them.
func stores(t *testing.T, f func(t *testing.T, s Store)) {
	t.Run("bolt", func(t *testing.T) {
		s := open(t, filepath.Join(t.TempDir(), "state.db"))
		defer s.Close()
		f(t, s)
	})
	t.Run("memory", func(t *testing.T) {
		s := NewMemory()
		defer s.Close()
		f(t, s)
	})
}

// keep makes s keep n changes for its watches.
func keep(s Store, n int) {
	switch s := s.(type) {
	case *Bolt:
		s.mirror.keep = n
	case *Memory:
		s.mirror.keep = n
	}
}

func next(t *testing.T, ch <-chan WatchResponse) WatchResponse {
	t.Helper()
	select {
	case resp, ok := <-ch:
		if !ok {
			t.Fatal("watch closed")
		}
		return resp
	case <-time.After(10 * time.Second):
		t.Fatal("no watch response")
		return WatchResponse{}
	}
}

// TestStoreCompareAndSwap: Put creates, or replaces only the record the
// caller saw; Delete removes only the record the caller saw when it names
// one. Every change has a revision above the ones before.
func TestStoreCompareAndSwap(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		ctx := t.Context()
		a := port.Spec{UID: "swc-1", Port: 8080, ConnectAddress: "db", ConnectPort: 5432}
		r1, err := s.Put(ctx, a, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Put(ctx, a, 0); !errors.Is(err, port.ErrAlreadyOpen) {
			t.Fatalf("a second create: %v, want %v", err, port.ErrAlreadyOpen)
		}
		if _, err := s.Put(ctx, a, r1+100); !errors.Is(err, port.ErrAlreadyOpen) {
			t.Fatalf("a replace of a revision never seen: %v, want %v", err, port.ErrAlreadyOpen)
		}
		b := a
		b.ConnectPort = 5433
		r2, err := s.Put(ctx, b, r1)
		if err != nil || r2 <= r1 {
			t.Fatalf("replace of what was seen: revision %d, %v; want above %d", r2, err, r1)
		}
		if _, _, err := s.Delete(ctx, a.Port, r1); !errors.Is(err, ErrConflict) {
			t.Fatalf("delete of a replaced revision: %v, want %v", err, ErrConflict)
		}
		got, r3, err := s.Delete(ctx, a.Port, r2)
		if err != nil || r3 <= r2 || !reflect.DeepEqual(got, b) {
			t.Fatalf("delete: %+v at %d, %v; want %+v above %d", got, r3, err, b, r2)
		}
		if _, _, err := s.Delete(ctx, a.Port, 0); !errors.Is(err, port.ErrNotOpen) {
			t.Fatalf("delete of an absent port: %v, want %v", err, port.ErrNotOpen)
		}
		snap, err := s.List(ctx)
		if err != nil || len(snap.Ports) != 0 || snap.Revision != r3 {
			t.Fatalf("list: %+v, %v; want none at %d", snap, err, r3)
		}
	})
}

// TestStoreWatch: a watch from a revision delivers every change after it,
// in order, one revision per response; one from an earlier List misses
// nothing; one that starts again from the last revision it saw goes on
// where it was; one from a revision no longer kept is told ErrCompacted.
func TestStoreWatch(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		ctx := t.Context()
		snap, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wctx, stop := context.WithCancel(ctx)
		w := s.Watch(wctx, snap.Revision)
		a := port.Spec{UID: "swc-1", Port: 1000, ConnectAddress: "db", ConnectPort: 1}
		r1, _ := s.Put(ctx, a, 0)
		_, r2, _ := s.Delete(ctx, a.Port, 0)
		if resp := next(t, w); resp.Err != nil || len(resp.Events) != 1 ||
			!reflect.DeepEqual(resp.Events[0], Event{Revision: r1, Port: 1000, Spec: a}) {
			t.Fatalf("first response: %+v", resp)
		}
		if resp := next(t, w); len(resp.Events) != 1 || !reflect.DeepEqual(resp.Events[0], Event{Revision: r2, Port: 1000, Deleted: true}) {
			t.Fatalf("second response: %+v", resp)
		}
		stop()
		for range w { // closes once its context ends
		}

		// Resumed from r1: the delete again, then what came meanwhile.
		b := port.Spec{UID: "swc-2", Port: 2000, ConnectAddress: "web", ConnectPort: 2}
		r3, _ := s.Put(ctx, b, 0)
		w = s.Watch(ctx, r1)
		for _, want := range []int64{r2, r3} {
			if resp := next(t, w); len(resp.Events) != 1 || resp.Events[0].Revision != want {
				t.Fatalf("resumed watch: %+v, want revision %d", resp, want)
			}
		}

		keep(s, 4)
		for range 4 {
			if _, _, err := s.Delete(ctx, b.Port, 0); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Put(ctx, b, 0); err != nil {
				t.Fatal(err)
			}
		}
		resp := next(t, s.Watch(ctx, r3))
		if !errors.Is(resp.Err, ErrCompacted) {
			t.Fatalf("watch from a revision no longer kept: %+v, want %v", resp, ErrCompacted)
		}
	})
}

// TestStoreCloseEndsWatches: a watch of a store that closes ends with
// ErrClosed, so its watcher stops instead of waiting for ever.
func TestStoreCloseEndsWatches(t *testing.T) {
	s := NewMemory()
	w := s.Watch(t.Context(), 1)
	s.Close()
	if resp := next(t, w); !errors.Is(resp.Err, ErrClosed) {
		t.Fatalf("watch of a closed store: %+v, want %v", resp, ErrClosed)
	}
	if _, ok := <-w; ok {
		t.Fatal("the watch goes on after its store closed")
	}
}
