package connector

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/shared/logging"
	"github.com/socket-warp/socket-warp/shared/teardown"
	"github.com/socket-warp/socket-warp/shared/wire"
)

// serve accepts the listener's streams on lk until the connection ends, and
// returns why it ended. When ctx ends first it drains: new streams are
// refused with "going away", the tunnels that run get SWC_DRAIN_TIMEOUT to
// finish, then the connection is closed with "going away". After a
// hand-over it drains the same way, but for SWC_HANDOVER_TIMEOUT and still
// serving what comes (a stream the listener opened just before it
// switched), then closes the connection without an error. It returns only
// after every stream handler has.
func (c *Connector) serve(ctx context.Context, lk *link) error {
	conn := lk.conn
	c.log.Info("connected", zap.String("server", c.addr), logging.Remote(conn.RemoteAddr().String()),
		zap.String("serial", leafSerial(lk.cert)))
	var (
		wg       sync.WaitGroup     // every stream handler
		tunnels  = newTunnelCount() // the handlers a drain waits for
		draining atomic.Bool
	)
	// The accept loop is serve's: it ends with the connection, and serve
	// waits for it before it waits for the handlers it started.
	accepted := make(chan error, 1)
	wg.Go(func() { c.heartbeat(conn) })
	go func() {
		for {
			st, err := conn.AcceptStream(context.Background())
			if err != nil {
				accepted <- err
				return
			}
			if draining.Load() {
				wg.Go(func() { c.refuseDraining(st) })
				continue
			}
			tunnels.start()
			wg.Go(func() {
				defer tunnels.end()
				c.handleStream(conn.Context(), lk, st)
			})
		}
	}()
	shutdown := func() bool {
		draining.Store(true)
		return c.drain(tunnels, time.Duration(c.cfg.DrainTimeout), nil, teardown.ConnectorShuttingDown)
	}
	var err error
	select {
	case err = <-accepted:
	case <-ctx.Done():
		if shutdown() {
			linger(conn)
		}
		// Close before Run closes the transport, which would drop the
		// connection without a CONNECTION_CLOSE and leave the listener
		// holding the UID until its idle timeout.
		_ = conn.CloseWithError(wire.CodeGoingAway, teardown.ConnectorShuttingDown)
		err = <-accepted
	case <-lk.handedOver:
		drained := c.drain(tunnels, time.Duration(c.cfg.HandoverTimeout), ctx.Done(), teardown.HandedOver)
		if !drained && ctx.Err() != nil {
			drained = shutdown() // from here on, the shutdown's bound
		}
		if drained {
			linger(conn)
		}
		_ = conn.CloseWithError(wire.CodeNoError, teardown.HandedOver)
		err = <-accepted
	}
	wg.Wait()
	if cause := context.Cause(conn.Context()); cause != nil {
		return cause
	}
	return err
}

// drain waits until the running tunnels end, timeout passes or stop is
// closed (nil: never), and reports whether they all ended. why, in its log
// lines, says what it drains for.
func (c *Connector) drain(tunnels *tunnelCount, timeout time.Duration, stop <-chan struct{}, why string) bool {
	return teardown.Drain{Log: c.log, Why: why, Timeout: timeout, Stop: stop, Running: tunnels.n.Load, Ended: tunnels.changed}.Run()
}

// linger keeps a drained connection open a moment before it is closed (see
// teardown.Linger; sw-listener does the same).
func linger(conn *quic.Conn) { teardown.Linger(conn.Context().Done(), conn) }

// refuseDraining answers a stream opened during the drain without reading
// its header: a probe learns that this connector is going away (so a new
// one of its UID may take its place), a client is reset by the listener,
// which then opens no more streams to this connection.
func (c *Connector) refuseDraining(st *quic.Stream) {
	c.stats.stream(streamGoingAway)
	c.refuse(st, wire.VerdictGoingAway, teardown.ConnectorShuttingDown)
	c.floodLog.Info("stream refused", logging.Stream(int64(st.StreamID())), logging.Reason(teardown.ConnectorShuttingDown))
}

// tunnelCount counts the stream handlers that run.
type tunnelCount struct {
	n       atomic.Int64
	changed chan struct{} // one ping after any end, so wait re-checks n
}

func newTunnelCount() *tunnelCount { return &tunnelCount{changed: make(chan struct{}, 1)} }

func (t *tunnelCount) start() { t.n.Add(1) }

func (t *tunnelCount) end() {
	t.n.Add(-1)
	select {
	case t.changed <- struct{}{}:
	default:
	}
}
