package registry

import (
	"sync"
	"testing"
)

func TestBindRefusesSecondSession(t *testing.T) {
	r := NewMemory()
	first := &Session{UID: "swc-1"}
	if _, ok := r.Claim(first); !ok {
		t.Fatal("first bind refused")
	}
	second := &Session{UID: "swc-1"}
	bound, ok := r.Claim(second)
	if ok || bound != first {
		t.Fatalf("second bind: ok=%v bound=%p, want refusal naming the first (%p)", ok, bound, first)
	}
	if got := r.Holder("swc-1"); got != first {
		t.Fatalf("Get after refused bind = %p, want first", got)
	}
}

func TestUnbindOnlyRemovesItsOwnSession(t *testing.T) {
	r := NewMemory()
	old := &Session{UID: "swc-1"}
	r.Claim(old)
	if !r.Release(old) {
		t.Fatal("unbind of the bound session failed")
	}
	replacement := &Session{UID: "swc-1"}
	r.Claim(replacement)
	// The old connection's cleanup runs late: it must not unbind the replacement.
	if r.Release(old) {
		t.Fatal("a stale session unbound its replacement")
	}
	if r.Holder("swc-1") != replacement {
		t.Fatal("replacement lost")
	}
	if got := r.List(); len(got) != 1 || got[0] != replacement {
		t.Fatalf("All = %v", got)
	}
}

func TestAllSorted(t *testing.T) {
	r := NewMemory()
	for _, uid := range []string{"c", "a", "b"} {
		r.Claim(&Session{UID: uid})
	}
	var uids []string
	for _, s := range r.List() {
		uids = append(uids, s.UID)
	}
	if len(uids) != 3 || uids[0] != "a" || uids[1] != "b" || uids[2] != "c" {
		t.Fatalf("All order = %v", uids)
	}
}

func TestReplaceOnlyTheBoundSession(t *testing.T) {
	r := NewMemory()
	stale := &Session{UID: "swc-1"}
	r.Claim(stale)
	first, second := &Session{UID: "swc-1"}, &Session{UID: "swc-1"}
	// Two newcomers found the same stale session: only one takes its place.
	if !r.Replace(stale, first) {
		t.Fatal("replacing the bound session failed")
	}
	if r.Replace(stale, second) {
		t.Fatal("a second newcomer replaced a session that was already replaced")
	}
	if r.Holder("swc-1") != first {
		t.Fatal("the first newcomer is not bound")
	}
	// The stale session's late cleanup leaves its replacement alone.
	if r.Release(stale) {
		t.Fatal("the stale session's cleanup unbound its replacement")
	}
	if got := r.List(); len(got) != 1 || got[0] != first {
		t.Fatalf("All = %v, want only the replacement", got)
	}
}

func TestReplaceUnboundOrOtherUID(t *testing.T) {
	r := NewMemory()
	gone := &Session{UID: "swc-1"}
	r.Claim(gone)
	r.Release(gone)
	// The old session went away on its own: Replace does not bind; the
	// newcomer must Bind like anyone else.
	if r.Replace(gone, &Session{UID: "swc-1"}) {
		t.Fatal("Replace bound a session in place of one that was no longer bound")
	}
	if r.Holder("swc-1") != nil {
		t.Fatal("swc-1 bound")
	}
	other := &Session{UID: "swc-2"}
	r.Claim(other)
	if r.Replace(other, &Session{UID: "swc-3"}) {
		t.Fatal("Replace moved a session to another UID")
	}
	if r.Holder("swc-2") != other || r.Holder("swc-3") != nil {
		t.Fatal("a refused Replace changed the registry")
	}
}

func TestReplaceConcurrentNewcomers(t *testing.T) {
	r := NewMemory()
	stale := &Session{UID: "swc-1"}
	r.Claim(stale)
	const n = 16
	won := make(chan *Session, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			s := &Session{UID: "swc-1"}
			if r.Replace(stale, s) {
				won <- s
			}
			r.Release(stale) // every late cleanup of the stale session
		})
	}
	wg.Wait()
	close(won)
	var winners []*Session
	for s := range won {
		winners = append(winners, s)
	}
	if len(winners) != 1 || r.Holder("swc-1") != winners[0] {
		t.Fatalf("%d newcomers replaced the stale session; bound %p", len(winners), r.Holder("swc-1"))
	}
}

func TestHandOver(t *testing.T) {
	r := NewMemory()
	old := &Session{UID: "swc-1", HandedOver: make(chan *Session, 1)}
	r.Claim(old)
	next := &Session{UID: "swc-1"}
	if _, ok := r.HandOver(old, next); !ok {
		t.Fatal("hand-over of the bound session failed")
	}
	if r.Holder("swc-1") != next || !old.Draining.Load() {
		t.Fatal("after the hand-over the successor is not bound, or the old session takes new tunnels")
	}
	select {
	case got := <-old.HandedOver:
		if got != next {
			t.Fatal("the old session was told another successor")
		}
	default:
		t.Fatal("the old session was not told its successor")
	}
	// Once only, and never from a session that is no longer bound.
	if _, ok := r.HandOver(old, &Session{UID: "swc-1"}); ok || r.Holder("swc-1") != next {
		t.Fatal("a session that was handed over was handed over again")
	}
	// A session nobody listens to is handed over all the same.
	third := &Session{UID: "swc-1"}
	if _, ok := r.HandOver(next, third); !ok || r.Holder("swc-1") != third {
		t.Fatal("hand-over of a session without a HandedOver channel failed")
	}
}

// TestPredecessorsBounded: of the sessions Drain and HandOver leave open,
// a UID keeps the newest MaxPredecessors; each one beyond is returned,
// oldest first, once. A predecessor's Unbind makes room; other UIDs are
// not concerned.
func TestPredecessorsBounded(t *testing.T) {
	r := NewMemory()
	bound := &Session{UID: "swc-1"}
	r.Claim(bound)
	r.Claim(&Session{UID: "swc-2"})
	var left []*Session
	for i := range 6 {
		next := &Session{UID: "swc-1"}
		var surplus *Session
		var ok bool
		if i%2 == 0 {
			surplus, ok = r.Drain(bound, next)
		} else {
			surplus, ok = r.HandOver(bound, next)
		}
		if !ok || !bound.Draining.Load() {
			t.Fatalf("step %d: not replaced, or the old session takes new tunnels", i)
		}
		left = append(left, bound)
		var want *Session
		if len(left) > MaxPredecessors {
			want, left = left[0], left[1:]
		}
		if surplus != want {
			t.Fatalf("step %d: surplus %p, want %p", i, surplus, want)
		}
		bound = next
	}
	// A predecessor that ends makes room: the next one pushes none out.
	r.Release(left[0])
	if surplus, _ := r.Drain(bound, &Session{UID: "swc-1"}); surplus != nil {
		t.Fatalf("surplus %p after a predecessor's Unbind, want none", surplus)
	}
	if surplus, _ := r.Drain(r.Holder("swc-2"), &Session{UID: "swc-2"}); surplus != nil {
		t.Fatal("another UID's predecessors counted")
	}
}
