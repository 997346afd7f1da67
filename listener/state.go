package listener

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/listener/port"
	"github.com/socket-warp/socket-warp/listener/store"
	"github.com/socket-warp/socket-warp/shared/logging"
)

// stateLockTimeout is how long New waits for the state file's lock: a
// second listener on the same file fails at once instead of hanging.
const stateLockTimeout = time.Second

// failedPort is a stored port that cannot be served as stored (a record
// the stream header refuses). It stays in the store and in GET /list with
// its error until DELETE /close removes it or POST /open of the same port
// replaces it: retrying could not help. A stored port whose address is
// taken is served all the same and bound in the background (bind).
type failedPort struct {
	spec port.Spec
	err  error
}

// openStore opens the state file and reads the ports Run re-opens. An
// unreadable, corrupt or locked file is an error naming the file: the
// listener must never start empty over a store it could not read.
func (l *Listener) openStore() error {
	s, err := store.OpenBolt(l.cfg.StatePath, stateLockTimeout)
	if err != nil {
		return fmt.Errorf("SWL_STATE_PATH: %w", err)
	}
	ports, err := s.List()
	if err != nil {
		s.Close()
		return fmt.Errorf("SWL_STATE_PATH: %w", err)
	}
	l.store, l.stored = s, ports
	return nil
}

// restore re-opens every stored port, whether or not its connector is
// connected (its clients are refused until it is), with parent the context
// of their tunnels, and then opens the port table. A port whose address
// cannot be bound now (another program on it) is bound anew until that
// works, as if its socket had died: the listener that restarted must come
// back to what it served without anyone re-opening it. A port that cannot
// be served at all is kept, logged and listed with its error.
func (l *Listener) restore(parent context.Context) {
	// Said here, not when New opens it first: a certificate or address
	// that fails New after it must be the only thing New says.
	path, _ := filepath.Abs(l.cfg.StatePath)
	l.log.Info("state file opened", zap.String("path", path), zap.Int("ports", len(l.stored)))
	bound, failed := map[int]*binding{}, map[int]failedPort{}
	for _, p := range l.stored {
		log := l.log.With(logging.UID(p.UID), logging.Port(p.Port))
		b, err := l.bind(parent, p, true)
		if err != nil {
			failed[p.Port] = failedPort{spec: p, err: err}
			log.Error("port restore failed", logging.Reason(err.Error()),
				zap.String("hint", "GET /list shows it with its error; POST /open replaces it, DELETE /close forgets it"))
			continue
		}
		bound[p.Port] = b
		if why := b.notListening(); why != "" {
			log.Error("port restore failed, re-binding", logging.Target(b.target), proxyField(p), logging.Reason(why),
				zap.String("hint", "it is bound as soon as its address is free; GET /list and /readyz show why meanwhile, DELETE /close forgets it"))
			continue
		}
		log.Info("port restored", logging.Target(b.target), proxyField(p))
	}
	if max := l.cfg.MaxPorts; max > 0 && len(l.stored) > max {
		// Never dropped: the limit may have been lowered on purpose, and
		// which ports to give up is the operator's call.
		l.log.Warn("more ports restored than SWL_MAX_PORTS allows; /open refuses new ones until some are closed",
			zap.Int("ports", len(l.stored)), zap.Int("max_ports", max))
	}
	l.stored = nil
	l.ports.start(parent, bound, failed)
}

// closeStore releases the state file (and its lock) once nothing can
// change the ports any more.
func (l *Listener) closeStore() {
	if err := l.store.Close(); err != nil {
		l.log.Error("state file close failed", zap.Error(err))
	}
}
