package registry

import "testing"

func TestBindRefusesSecondSession(t *testing.T) {
	r := New()
	first := &Session{UID: "swc-1"}
	if _, ok := r.Bind(first); !ok {
		t.Fatal("first bind refused")
	}
	second := &Session{UID: "swc-1"}
	bound, ok := r.Bind(second)
	if ok || bound != first {
		t.Fatalf("second bind: ok=%v bound=%p, want refusal naming the first (%p)", ok, bound, first)
	}
	if got := r.Get("swc-1"); got != first {
		t.Fatalf("Get after refused bind = %p, want first", got)
	}
}

func TestUnbindOnlyRemovesItsOwnSession(t *testing.T) {
	r := New()
	old := &Session{UID: "swc-1"}
	r.Bind(old)
	if !r.Unbind(old) {
		t.Fatal("unbind of the bound session failed")
	}
	replacement := &Session{UID: "swc-1"}
	r.Bind(replacement)
	// The old connection's cleanup runs late: it must not unbind the replacement.
	if r.Unbind(old) {
		t.Fatal("a stale session unbound its replacement")
	}
	if r.Get("swc-1") != replacement {
		t.Fatal("replacement lost")
	}
	if got := r.All(); len(got) != 1 || got[0] != replacement {
		t.Fatalf("All = %v", got)
	}
}

func TestAllSorted(t *testing.T) {
	r := New()
	for _, uid := range []string{"c", "a", "b"} {
		r.Bind(&Session{UID: uid})
	}
	var uids []string
	for _, s := range r.All() {
		uids = append(uids, s.UID)
	}
	if len(uids) != 3 || uids[0] != "a" || uids[1] != "b" || uids[2] != "c" {
		t.Fatalf("All order = %v", uids)
	}
}
