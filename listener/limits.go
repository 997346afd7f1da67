package listener

import (
	"sync"

	"github.com/socket-warp/socket-warp/shared/wire"
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

// Refused returns the refusal counters.
func (l *Listener) Refused() Refusals {
	o := &l.outcomes
	return Refusals{
		PortLimit:    o[outcomePortLimit].Load(),
		UIDLimit:     o[outcomeUIDLimit].Load(),
		NotConnected: o[outcomeNoConnector].Load(),
		StreamFailed: o[outcomeStreamFailed].Load(),
		ByConnector: o[outcomeDialFailed].Load() + o[outcomeForbidden].Load() +
			o[outcomeGoingAway].Load() + o[outcomeRefused].Load(),
	}
}

// outcome is how a client of an opened port fared: tunnelled, or reset and
// why. The counters (Listener.outcomes) are both Refused's and the
// socketwarp_listener_tunnel_connections_total metric's.
type outcome int

const (
	outcomeOK           outcome = iota // the connector dialled the target
	outcomeDialFailed                  // the connector could not dial it
	outcomeForbidden                   // the connector's SWC_ALLOW refuses it
	outcomeGoingAway                   // the connector is shutting down
	outcomeRefused                     // another verdict (bad header)
	outcomeNoConnector                 // no connector bound for the UID, or it is going away
	outcomePortLimit                   // SWL_MAX_CONNS_PER_PORT reached
	outcomeUIDLimit                    // SWL_MAX_CONNS_PER_UID reached
	outcomeStreamFailed                // no stream to the connector (no credit in time, connection lost)
	outcomeAborted                     // the tunnel ended before the connector's verdict
	numOutcomes
)

// outcomeLabels are the metric's label values, by outcome.
var outcomeLabels = [numOutcomes]string{
	outcomeOK: "ok", outcomeDialFailed: "dial_failed", outcomeForbidden: "forbidden",
	outcomeGoingAway: "going_away", outcomeRefused: "refused", outcomeNoConnector: "no_connector",
	outcomePortLimit: "port_limit", outcomeUIDLimit: "uid_limit", outcomeStreamFailed: "stream_failed",
	outcomeAborted: "aborted",
}

// verdictOutcome is the outcome of a connector's non-ok verdict.
func verdictOutcome(v wire.Verdict) outcome {
	switch v {
	case wire.VerdictDialFailed:
		return outcomeDialFailed
	case wire.VerdictForbidden:
		return outcomeForbidden
	case wire.VerdictGoingAway:
		return outcomeGoingAway
	default:
		return outcomeRefused
	}
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
