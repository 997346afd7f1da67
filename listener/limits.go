package listener

import (
	"sync"
	"sync/atomic"
)

// Refusals counts the clients of opened ports that were reset instead of
// tunnelled, by reason, since the listener was made.
type Refusals struct {
	PortLimit    int64 // SWL_MAX_CONNS_PER_PORT reached
	UIDLimit     int64 // SWL_MAX_CONNS_PER_UID reached
	NotConnected int64 // no connector bound for the port's UID, or it is going away
	StreamFailed int64 // no stream to the connector (no credit in time, connection lost)
	ByConnector  int64 // the connector's verdict: dial failed, forbidden, going away…
}

// Refused returns the refusal counters, for metrics.
func (l *Listener) Refused() Refusals {
	return Refusals{
		PortLimit:    l.refused.portLimit.Load(),
		UIDLimit:     l.refused.uidLimit.Load(),
		NotConnected: l.refused.notConnected.Load(),
		StreamFailed: l.refused.streamFailed.Load(),
		ByConnector:  l.refused.byConnector.Load(),
	}
}

// refusals are the live counters behind Refused.
type refusals struct {
	portLimit, uidLimit, notConnected, streamFailed, byConnector atomic.Int64
}

// uidConns counts the tunnelled connections of every UID across its ports.
// The zero value is ready to use.
type uidConns struct {
	mu sync.Mutex     // guards the following fields
	n  map[string]int // no entry at zero
}

// acquire counts one more connection for uid unless limit (> 0) are open.
func (u *uidConns) acquire(uid string, limit int) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if limit > 0 && u.n[uid] >= limit {
		return false
	}
	if u.n == nil {
		u.n = map[string]int{}
	}
	u.n[uid]++
	return true
}

// release ends a connection acquire counted.
func (u *uidConns) release(uid string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.n[uid]--; u.n[uid] <= 0 {
		delete(u.n, uid)
	}
}
