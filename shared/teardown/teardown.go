// Package teardown is how both daemons end the tunnels a connection carries:
// the drain with its bound, the linger after a clean drain, and the reasons
// a connection is closed with. sw-listener drains when it stops; sw-connector
// when it stops and after a hand-over.
package teardown

import (
	"time"

	"github.com/quic-go/quic-go"
	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/shared/logging"
)

// The reasons a connection is closed with. The peer logs them, and
// operators grep for them.
const (
	ListenerShuttingDown  = "listener shutting down"
	ConnectorShuttingDown = "connector shutting down"
	HandedOver            = "handed over to a new connection"
)

// Drain is one wait for running tunnels to end.
type Drain struct {
	Log     *zap.Logger
	Why     string        // the reason field of each log line; "": none
	Timeout time.Duration // the bound
	// Stop ends the wait early and quietly (nil: never): the caller goes on
	// to another wait.
	Stop <-chan struct{}
	// Running is how many tunnels still run.
	Running func() int64
	// Ended is signalled (sent to or closed) whenever Idle may have become
	// true.
	Ended <-chan struct{}
	// Idle reports whether everything drained has ended; nil: Running() == 0.
	Idle func() bool
	// End, if set, ends what is left and returns once it has; it runs after
	// the wait, before the "drained" line.
	End func()
}

// Run logs "draining", waits until the tunnels end, the bound passes or Stop
// is closed, and reports whether they all ended. Tunnels still running at
// the bound are logged ("drain timeout, closing tunnels"), not when Stop
// ended the wait.
func (d Drain) Run() bool {
	idle := d.Idle
	if idle == nil {
		idle = func() bool { return d.Running() == 0 }
	}
	d.Log.Info("draining", d.fields(zap.Int64("tunnels", d.Running()), zap.Duration("timeout", d.Timeout))...)
	drained, stopped := d.wait(idle)
	if !drained && !stopped {
		d.Log.Warn("drain timeout, closing tunnels", d.fields(zap.Int64("tunnels", d.Running()))...)
	}
	if d.End != nil {
		d.End()
	}
	if drained {
		d.Log.Info("drained", d.fields()...)
	}
	return drained
}

// wait reports whether the tunnels ended, and whether Stop ended the wait.
// At the bound or Stop, tunnels that ended by then count as drained.
func (d Drain) wait(idle func() bool) (drained, stopped bool) {
	t := time.NewTimer(d.Timeout)
	defer t.Stop()
	for !idle() {
		select {
		case <-d.Ended:
		case <-t.C:
			return d.Running() == 0, false
		case <-d.Stop:
			n := d.Running()
			return n == 0, n != 0
		}
	}
	return true, false
}

func (d Drain) fields(f ...zap.Field) []zap.Field {
	if d.Why != "" {
		f = append(f, logging.Reason(d.Why))
	}
	return f
}

// Linger keeps connections open a moment after a clean drain, or until done
// is closed (nil: never). quic-go drops what it has not sent when a
// connection closes, and the last bytes and FIN of a tunnel that just ended
// may still be queued; QUIC tells nobody when the peer has them. About two
// probe timeouts (of the slowest connection) let them go out and, if lost,
// go out again. Without a connection it returns at once.
func Linger(done <-chan struct{}, conns ...*quic.Conn) {
	var pto time.Duration
	for _, c := range conns {
		pto = max(pto, PTO(c.ConnectionStats()))
	}
	if pto == 0 {
		return
	}
	t := time.NewTimer(LingerTime(pto))
	defer t.Stop()
	select {
	case <-t.C:
	case <-done:
	}
}

// PTO is a connection's probe timeout as RFC 9002 computes it, with quic-go's
// max_ack_delay of 25 ms.
func PTO(st quic.ConnectionStats) time.Duration {
	return st.SmoothedRTT + max(4*st.MeanDeviation, time.Millisecond) + 25*time.Millisecond
}

// LingerTime is how long Linger waits for a probe timeout of pto: two, within
// 50 ms and 1 s.
func LingerTime(pto time.Duration) time.Duration {
	return min(max(2*pto, 50*time.Millisecond), time.Second)
}
