package listener

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/listener/store"
)

// stateLockTimeout is how long New waits for the state file's lock: a
// second listener on the same file fails at once instead of hanging.
const stateLockTimeout = time.Second

// openStore opens the state file; OpenBolt reads and checks all of it. An
// unreadable, corrupt or locked file is an error naming the file: the
// listener must never start empty over a store it could not read.
func (l *Listener) openStore() error {
	s, err := store.OpenBolt(l.cfg.StatePath, stateLockTimeout)
	if err != nil {
		return fmt.Errorf("SWL_STATE_PATH: %w", err)
	}
	l.store = s
	return nil
}

// restore serves every stored port, whether or not its connector is
// connected (its clients are refused until it is), with parent the context
// of their tunnels: the reconciler's first pass (see portBinder for what
// it does with a port it cannot bind). Then the table takes opens.
func (l *Listener) restore(ctx, parent context.Context) error {
	l.ports.start(parent)
	if err := l.reconciler.Restore(ctx); err != nil {
		return fmt.Errorf("SWL_STATE_PATH: %w", err)
	}
	// Said here, not when New opens it first: a certificate or address
	// that fails New after it must be the only thing New says.
	path, _ := filepath.Abs(l.cfg.StatePath)
	n := len(l.List())
	l.log.Info("state file opened", zap.String("path", path), zap.Int("ports", n))
	if max := l.cfg.MaxPorts; max > 0 && n > max {
		// Never dropped: the limit may have been lowered on purpose, and
		// which ports to give up is the operator's call.
		l.log.Warn("more ports restored than SWL_MAX_PORTS allows; /open refuses new ones until some are closed",
			zap.Int("ports", n), zap.Int("max_ports", max))
	}
	return nil
}

// closeStore releases the state file (and its lock) once nothing can
// change the ports any more.
func (l *Listener) closeStore() {
	if err := l.store.Close(); err != nil {
		l.log.Error("state file close failed", zap.Error(err))
	}
}
