package listener

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/socket-warp/socket-warp/listener/port"
	"github.com/socket-warp/socket-warp/listener/reconcile"
	"github.com/socket-warp/socket-warp/listener/store"
	"github.com/socket-warp/socket-warp/shared/logging"
)

// OpenPort implements api.Service: it writes the port to the store and
// answers once this listener's reconciler has bound it. If this listener
// could not bind it (its address is taken, on some SWL_OPEN_ADDRS address
// or all), the port is removed from the store again and the open fails:
// what the API said it opened is what the listener serves. Opening a port
// that is listed with an error because it cannot be served as stored
// replaces it. Neither the write nor the bind holds up anything but this
// open (portTable).
func (l *Listener) OpenPort(ctx context.Context, p port.Spec) error {
	p.Error = ""
	if l.sessions.Holder(p.UID) == nil {
		return fmt.Errorf("open port %d: uid %s: %w", p.Port, p.UID, port.ErrNotConnected)
	}
	prev, done, err := l.ports.admit(p.Port)
	if err != nil {
		return fmt.Errorf("open port %d: %w", p.Port, err)
	}
	defer done()
	rev, err := l.store.Put(ctx, p, prev)
	switch {
	case errors.Is(err, port.ErrAlreadyOpen):
		return fmt.Errorf("open port %d: %w", p.Port, port.ErrAlreadyOpen)
	case err != nil:
		// %v: a failing state file is the listener's problem (500),
		// whatever the OS said about it.
		return fmt.Errorf("open port %d: not opened: %v", p.Port, err)
	}
	if err := l.reconciled(ctx, rev); err != nil {
		return fmt.Errorf("open port %d: %w", p.Port, err)
	}
	if bindErr := l.ports.outcome(p.Port, rev); bindErr != nil {
		// Given back, and waited for: the next open of the port must
		// find its address as this one did, not held by this one.
		if _, rev, err := l.store.Delete(context.WithoutCancel(ctx), p.Port, rev); err == nil {
			_ = l.reconciled(ctx, rev)
		} else if !errors.Is(err, store.ErrConflict) && !errors.Is(err, port.ErrNotOpen) {
			l.log.Error("port not bound, and could not be removed from the state file", logging.Port(p.Port),
				logging.Reason(err.Error()))
		}
		return fmt.Errorf("open port %d: %w", p.Port, bindErr)
	}
	return nil
}

// reconciled waits until the reconciler has applied the change at rev.
func (l *Listener) reconciled(ctx context.Context, rev int64) error {
	err := l.reconciler.Wait(ctx, rev)
	if errors.Is(err, reconcile.ErrStopped) {
		return ErrShuttingDown
	}
	return err
}

// ClosePort implements api.Service: the port is removed from the store,
// and the answer comes once this listener's reconciler has closed it:
// it stops listening, and every tunnelled connection it carries has
// ended. If the store cannot be changed the port stays open: a restart
// would re-open it, so it must not look closed now. A port that cannot be
// served as stored is only removed.
func (l *Listener) ClosePort(ctx context.Context, number int) (port.Spec, error) {
	if _, _, err := l.ports.view(); err != nil {
		return port.Spec{}, fmt.Errorf("close port %d: %w", number, ErrShuttingDown)
	}
	listed, _ := l.ports.entry(number)
	p, rev, err := l.store.Delete(ctx, number, 0)
	switch {
	case errors.Is(err, port.ErrNotOpen):
		return port.Spec{}, fmt.Errorf("close port %d: %w", number, port.ErrNotOpen)
	case err != nil:
		return port.Spec{}, fmt.Errorf("close port %d: not closed: %v", number, err)
	}
	if listed.b == nil && listed.err != nil && listed.spec == p {
		p.Error = listed.err.Error()
	}
	if err := l.reconciled(ctx, rev); err != nil {
		return port.Spec{}, fmt.Errorf("close port %d: %w", number, err)
	}
	return p, nil
}

// List implements api.Service. A served port whose listening socket died
// has an Error until it is bound anew.
func (l *Listener) List() []port.Spec {
	bound, failed, _ := l.ports.view()
	out := make([]port.Spec, 0, len(bound)+len(failed))
	for _, b := range bound {
		p := b.spec
		p.Error = b.notListening()
		out = append(out, p)
	}
	for _, f := range failed {
		p := f.spec
		p.Error = f.err.Error()
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Port < out[j].Port })
	return out
}

// Live implements api.Service.
func (l *Listener) Live(number int) *port.Live {
	b := l.ports.get(number)
	if b == nil {
		return nil
	}
	return &port.Live{ActiveConnections: b.active.Load(), BytesUp: b.bytesUp.Load(), BytesDown: b.bytesDown.Load()}
}

// Connections implements api.Service: the connected connectors, by UID.
func (l *Listener) Connections() []port.Connection {
	sessions := l.sessions.List()
	out := make([]port.Connection, 0, len(sessions))
	for _, s := range sessions {
		out = append(out, port.Connection{
			UID:            s.UID,
			Remote:         s.Remote,
			ConnectedSince: s.Since.UTC(),
			CertNotAfter:   s.TLS.PeerCertificates[0].NotAfter.UTC(),
			RTTSeconds:     s.Conn.ConnectionStats().SmoothedRTT.Seconds(),
			ActiveStreams:  s.Streams.Load(),
			BytesUp:        s.BytesUp.Load(),
			BytesDown:      s.BytesDown.Load(),
			Draining:       s.Draining.Load(),
		})
	}
	return out
}
