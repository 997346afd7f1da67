// Package registry keeps which connector (UID) owns which QUIC connection.
//
// The rule is one live connection per UID. Release and Replace compare the
// session, not just the UID, so the cleanup of an old connection can never
// unbind the connection that replaced it, and of two newcomers that found
// the same stale session only one can take its place. Drain and HandOver
// are Replace for a connection left open to finish its tunnels: its
// connector is going away, or moves to a new connection of its own accord.
// Such predecessors are kept track of, at most MaxPredecessors per UID.
package registry

import (
	"crypto/tls"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// Session is one connector's live QUIC connection.
type Session struct {
	UID    string
	Conn   *quic.Conn
	Remote string
	Since  time.Time
	// TLS is the connection's TLS state with the chains its certificate
	// was verified by (the handshake state has none: see tlsutil).
	TLS tls.ConnectionState

	Streams atomic.Int64 // tunnelled connections open right now
	// Bytes tunnelled over this connection, counted as they pass.
	BytesUp   atomic.Int64 // client → target
	BytesDown atomic.Int64 // target → client
	// Draining is set once the connector said it is going away: it takes
	// no new tunnel, and a newcomer of the same UID may take its place.
	// A session that was handed over is draining too.
	Draining atomic.Bool
	// HandedOver receives the successor when the session is handed over
	// (HandOver): made by whoever serves the connection, with room for
	// one, as a session is handed over at most once. nil: never told.
	HandedOver chan *Session
	// Successor is the session it was handed over to, nil until then.
	Successor atomic.Pointer[Session]
}

// MaxPredecessors is how many connections of one UID may stay open beside
// the bound one after Drain or HandOver. A connector has one predecessor at
// a time in the flows it makes: a restart (the old process drains while the
// new one is bound) or a hand-over (the old certificate's tunnels finish).
// Two allows for both at once, or for two hand-overs in a row while a long
// tunnel still runs on the first connection. Without a bound, whoever holds
// certificates of a UID could keep any number of connections by answering
// "going away", or by handing over between two certificates in a loop.
const MaxPredecessors = 2

// Registry is which session holds which UID. The listener's sessions claim
// their UID through it; Memory is the single-node implementation, a
// cluster's keeps the claims in etcd (design.md §9).
type Registry interface {
	// Claim makes s the session of its UID. If the UID is held already,
	// nothing changes and the holder is returned: the caller's stale
	// probe decides whether it may take its place (Replace, Drain,
	// HandOver).
	Claim(s *Session) (holder *Session, ok bool)
	// Release gives up the UID of s if, and only if, s still holds it (a
	// successor's claim is never released); it reports whether it did. A
	// predecessor (Drain, HandOver) is forgotten.
	Release(s *Session) bool
	// Replace makes s the holder in place of old, if old still holds it.
	Replace(old, s *Session) bool
	// Drain is Replace for an old session whose connector is going away:
	// it stays open for its tunnels, as a predecessor of s. It returns the
	// predecessor beyond MaxPredecessors, if any, for the caller to close.
	Drain(old, s *Session) (surplus *Session, ok bool)
	// HandOver is Drain for a connector that moved to s of its own accord:
	// old also learns s (Session.HandedOver).
	HandOver(old, s *Session) (surplus *Session, ok bool)
	// Holder is the session holding uid, or nil.
	Holder(uid string) *Session
	// List is the holding sessions, ordered by UID.
	List() []*Session
}

// Memory is the Registry of a single listener: a map.
type Memory struct {
	mu       sync.Mutex // guards the following fields
	sessions map[string]*Session
	// Per UID, the sessions Drain and HandOver replaced while they stay
	// open, oldest first, until their Release; at most MaxPredecessors.
	predecessors map[string][]*Session
}

var _ Registry = (*Memory)(nil)

// NewMemory returns an empty registry.
func NewMemory() *Memory {
	return &Memory{sessions: map[string]*Session{}, predecessors: map[string][]*Session{}}
}

// Claim implements Registry.
func (r *Memory) Claim(s *Session) (bound *Session, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, exists := r.sessions[s.UID]; exists {
		return old, false
	}
	r.sessions[s.UID] = s
	return s, true
}

// Release implements Registry.
func (r *Memory) Release(s *Session) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sessions[s.UID] != s {
		r.forgetLocked(s)
		return false
	}
	delete(r.sessions, s.UID)
	return true
}

func (r *Memory) forgetLocked(s *Session) {
	kept := slices.DeleteFunc(r.predecessors[s.UID], func(p *Session) bool { return p == s })
	if len(kept) == 0 {
		delete(r.predecessors, s.UID)
		return
	}
	r.predecessors[s.UID] = kept
}

// Replace makes s the session of its UID in place of old, if and only if
// old is still the session of that UID. It reports whether it did.
func (r *Memory) Replace(old, s *Session) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.replaceLocked(old, s)
}

func (r *Memory) replaceLocked(old, s *Session) bool {
	if old.UID != s.UID || r.sessions[s.UID] != old {
		return false
	}
	r.sessions[s.UID] = s
	return true
}

// Drain makes s the session of its UID in place of old, as Replace does,
// for an old session whose connector is going away: it stays open for the
// tunnels it carries but takes no new one (Draining), as a predecessor of
// s. It reports whether it did, and returns the predecessor beyond
// MaxPredecessors, if any — the oldest — for the caller to close.
func (r *Memory) Drain(old, s *Session) (surplus *Session, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.replaceLocked(old, s) {
		return nil, false
	}
	old.Draining.Store(true)
	return r.retireLocked(old), true
}

// HandOver makes s the session of its UID in place of old, as Drain does,
// for a connector that moved to s of its own accord: old also learns s on
// its HandedOver channel.
func (r *Memory) HandOver(old, s *Session) (surplus *Session, ok bool) {
	if surplus, ok = r.Drain(old, s); !ok {
		return nil, false
	}
	old.Successor.Store(s)
	// Drain succeeds once per old session, so the room for one suffices.
	select {
	case old.HandedOver <- s:
	default: // nil channel: nobody to tell
	}
	return surplus, true
}

// retireLocked records old among the predecessors of its UID and removes
// the oldest beyond MaxPredecessors, returning it. Predecessors whose
// connection has ended already, and only await their Release, go first
// and are not returned: closing them again is of no use.
func (r *Memory) retireLocked(old *Session) (surplus *Session) {
	kept := slices.DeleteFunc(r.predecessors[old.UID], func(p *Session) bool {
		return p.Conn != nil && p.Conn.Context().Err() != nil
	})
	kept = append(kept, old)
	if len(kept) > MaxPredecessors {
		surplus = kept[0]
		kept = slices.Delete(kept, 0, 1)
	}
	r.predecessors[old.UID] = kept
	return surplus
}

// Holder implements Registry.
func (r *Memory) Holder(uid string) *Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sessions[uid]
}

// List implements Registry.
func (r *Memory) List() []*Session {
	r.mu.Lock()
	out := make([]*Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		out = append(out, s)
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	return out
}
