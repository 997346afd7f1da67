package listener

import (
	"context"

	"github.com/quic-go/quic-go"

	"github.com/socket-warp/socket-warp/shared/teardown"
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
			_ = conn.CloseWithError(wire.CodeGoingAway, teardown.ListenerShuttingDown)
		}
	}
}

// drain closes the ports to new clients, lets their tunnels run until they
// end or SWL_DRAIN_TIMEOUT passes, then ends those left and returns once
// they have. It reports whether they all ended by themselves.
func (l *Listener) drain(bindings []*binding) bool {
	for _, b := range bindings {
		b.stopAccepting()
	}
	// The ports accept no more, so each WaitGroup counts down to zero:
	// its accept loops end, then its tunnels.
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for _, b := range bindings {
			b.wg.Wait()
		}
	}()
	return teardown.Drain{
		Log:     l.log,
		Timeout: l.cfg.DrainTimeout,
		Running: func() (n int64) {
			for _, b := range bindings {
				n += b.conns.Load()
			}
			return n // at the bound, 0: only accept loops were still ending
		},
		Ended: drained,
		Idle: func() bool {
			select {
			case <-drained:
				return true
			default:
				return false
			}
		},
		End: func() {
			for _, b := range bindings {
				b.close()
			}
			<-drained
		},
	}.Run()
}

// linger keeps the connections open a moment after a clean drain (see
// teardown.Linger); sw-connector does the same when it drains.
func (l *Listener) linger() {
	var conns []*quic.Conn
	for _, s := range l.sessions.List() {
		conns = append(conns, s.Conn)
	}
	teardown.Linger(nil, conns...)
}
