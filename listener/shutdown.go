package listener

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/shared/wire"
)

// refuseConnectors stops accepting connectors. Connections that finished
// their handshake but were never taken from the accept queue are told to go
// away rather than dropped without a word, which would leave their
// connectors waiting for the idle timeout. Accepted connections stay up.
func (l *Listener) refuseConnectors() {
	for _, ln := range l.quicLns {
		ln.Close()
		for {
			conn, err := ln.Accept(context.Background())
			if err != nil {
				break
			}
			_ = conn.CloseWithError(wire.CodeGoingAway, "listener shutting down")
		}
	}
}

// drain closes the ports to new clients, lets their tunnels run until they
// end or SWL_DRAIN_TIMEOUT passes, then ends those left and returns once
// they have. It reports whether they all ended by themselves.
func (l *Listener) drain(bindings map[int]*binding) bool {
	for _, b := range bindings {
		b.stopAccepting()
	}
	count := func() (n int64) {
		for _, b := range bindings {
			n += b.conns.Load()
		}
		return n
	}
	l.log.Info("draining", zap.Int64("tunnels", count()), zap.Duration("timeout", l.cfg.DrainTimeout))
	// The ports accept no more, so each WaitGroup counts down to zero:
	// its accept loops end, then its tunnels.
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for _, b := range bindings {
			b.wg.Wait()
		}
	}()
	t := time.NewTimer(l.cfg.DrainTimeout)
	defer t.Stop()
	var left int64
	select {
	case <-drained:
	case <-t.C:
		left = count() // 0: only accept loops were still ending
	}
	if left > 0 {
		l.log.Warn("drain timeout, closing tunnels", zap.Int64("tunnels", left))
	}
	for _, b := range bindings {
		b.close()
	}
	<-drained
	if left == 0 {
		l.log.Info("drained")
	}
	return left == 0
}

// linger keeps the connections open a moment after a clean drain. quic-go
// drops what it has not sent when a connection closes, and the last bytes
// and FIN of a tunnel that just ended may still be queued; QUIC tells nobody
// when the peer has them. About two probe timeouts (of the slowest
// connection) let them go out and, if lost, go out again. sw-connector does
// the same when it drains.
func (l *Listener) linger() {
	var pto time.Duration
	for _, s := range l.sessions.All() {
		st := s.Conn.ConnectionStats()
		pto = max(pto, st.SmoothedRTT+max(4*st.MeanDeviation, time.Millisecond)+25*time.Millisecond) // max_ack_delay
	}
	if pto == 0 {
		return // no connection
	}
	t := time.NewTimer(min(max(2*pto, 50*time.Millisecond), time.Second))
	defer t.Stop()
	<-t.C
}
