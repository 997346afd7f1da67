// Package registry keeps which connector (UID) owns which QUIC connection.
//
// The rule is one live connection per UID. Unbind and Replace compare the
// session, not just the UID, so the cleanup of an old connection can never
// unbind the connection that replaced it, and of two newcomers that found
// the same stale session only one can take its place. HandOver is Replace
// for a connector that moves to a new connection of its own accord.
package registry

import (
	"crypto/tls"
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

// Registry maps UIDs to sessions.
type Registry struct {
	mu       sync.Mutex // guards the following fields
	sessions map[string]*Session
}

// New returns an empty registry.
func New() *Registry { return &Registry{sessions: map[string]*Session{}} }

// Bind makes s the session of its UID. If the UID is already bound, nothing
// changes and the bound session is returned.
func (r *Registry) Bind(s *Session) (bound *Session, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, exists := r.sessions[s.UID]; exists {
		return old, false
	}
	r.sessions[s.UID] = s
	return s, true
}

// Unbind removes s if, and only if, it is still the session of its UID.
func (r *Registry) Unbind(s *Session) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sessions[s.UID] != s {
		return false
	}
	delete(r.sessions, s.UID)
	return true
}

// Replace makes s the session of its UID in place of old, if and only if
// old is still the session of that UID. It reports whether it did.
func (r *Registry) Replace(old, s *Session) bool {
	if old.UID != s.UID {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sessions[s.UID] != old {
		return false
	}
	r.sessions[s.UID] = s
	return true
}

// HandOver makes s the session of its UID in place of old, as Replace does,
// for a connector that moved to s of its own accord: old stays open for the
// tunnels it carries but takes no new one (Draining), and learns s on its
// HandedOver channel. It reports whether it did.
func (r *Registry) HandOver(old, s *Session) bool {
	if !r.Replace(old, s) {
		return false
	}
	old.Draining.Store(true)
	old.Successor.Store(s)
	// Replace succeeds once per old session, so the room for one suffices.
	select {
	case old.HandedOver <- s:
	default: // nil channel: nobody to tell
	}
	return true
}

// Get returns the session bound to uid, or nil.
func (r *Registry) Get(uid string) *Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sessions[uid]
}

// All returns the bound sessions ordered by UID.
func (r *Registry) All() []*Session {
	r.mu.Lock()
	out := make([]*Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		out = append(out, s)
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	return out
}
