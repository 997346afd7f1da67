package listener

import (
	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/listener/port"
	"github.com/socket-warp/socket-warp/listener/reconcile"
	"github.com/socket-warp/socket-warp/shared/logging"
)

// portBinder is the listener's side of the reconciler: it binds and closes
// the ports the store holds, outside the port table's lock, and records
// them in the table.
//
// A port whose address is taken (another program on it) is served all the
// same and bound in the background until that works, as if its socket had
// died: a listener that restarted must come back to what it served without
// anyone re-opening it, and a replica of a cluster must not lose a port
// another replica opened. POST /open gives back the port it opened when
// its own bind failed (OpenPort). A port that cannot be served at all is
// kept, logged and listed with its error, until DELETE /close removes it
// or POST /open of the same port replaces it: retrying could not help.
type portBinder struct{ l *Listener }

var _ reconcile.Table = portBinder{}

// Bind implements reconcile.Table.
func (pb portBinder) Bind(p port.Spec, rev int64, cause reconcile.Cause) error {
	l := pb.l
	pb.closeOld(p.Port)
	b, err := l.bind(l.ports.context(), p)
	if err != nil {
		return err
	}
	l.ports.set(portEntry{spec: p, rev: rev, b: b})
	log := l.log.With(logging.UID(p.UID), logging.Port(p.Port), logging.Target(b.target), proxyField(p))
	switch why := b.notListening(); {
	case why != "" && cause == reconcile.Restored:
		log.Error("port restore failed, re-binding", logging.Reason(why),
			zap.String("hint", "it is bound as soon as its address is free; GET /list and /readyz show why meanwhile, DELETE /close forgets it"))
	case why != "":
		// Opened through this listener's API, it is closed again at once.
		log.Warn("port opened but not bound, re-binding", logging.Reason(why))
	case cause == reconcile.Restored:
		log.Info("port restored")
	default:
		log.Info("port opened")
	}
	return nil
}

// Fail implements reconcile.Table.
func (pb portBinder) Fail(p port.Spec, rev int64, cause reconcile.Cause, err error) {
	l := pb.l
	pb.closeOld(p.Port)
	l.ports.set(portEntry{spec: p, rev: rev, err: err})
	msg := "port open failed"
	if cause == reconcile.Restored {
		msg = "port restore failed"
	}
	l.log.Error(msg, logging.UID(p.UID), logging.Port(p.Port), logging.Reason(err.Error()),
		zap.String("hint", "GET /list shows it with its error; POST /open replaces it, DELETE /close forgets it"))
}

// Unbind implements reconcile.Table: the port stops listening and every
// tunnel it carries is ended before it returns.
func (pb portBinder) Unbind(number int, _ reconcile.Cause) {
	e, ok := pb.l.ports.take(number)
	if !ok {
		return
	}
	if e.b == nil {
		pb.l.log.Info("port closed", logging.UID(e.spec.UID), logging.Port(number), logging.Reason("it was not bound: "+e.err.Error()))
		return
	}
	e.b.close()
	pb.l.log.Info("port closed", logging.UID(e.spec.UID), logging.Port(number), logging.Target(e.b.target))
}

// closeOld closes what serves number now, before a new record of it is
// bound: its address must be free for the new one.
func (pb portBinder) closeOld(number int) {
	if e, ok := pb.l.ports.take(number); ok && e.b != nil {
		e.b.close()
	}
}
