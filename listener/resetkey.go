package listener

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/quic-go/quic-go"
	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/shared/pki"
)

// The stateless reset key lets a listener restarted after a crash tell each
// connector, on the connector's next packet, that its connection is gone
// (RFC 9000 §10.3): quic-go derives every connection ID's reset token from
// it, so the tokens a connector holds stay valid only if the key outlives
// the process. Without one a connector of a crashed listener waits for its
// idle timeout, a minute by default.
//
// It is kept in a file of its own beside the state file rather than derived
// from the TLS key: the state directory is already the listener's to keep
// across restarts, and a key derived from the certificate's would change
// with every certificate renewal, or be shared by every listener that
// shares a certificate.

// resetKeyPath is the key's file: SWL_STATE_PATH with ".reset-key" appended.
func resetKeyPath(statePath string) string { return statePath + ".reset-key" }

// loadResetKey reads the stateless reset key, or makes one on the first
// start: 32 random bytes, written 0600 and atomically. A file that exists
// but cannot be read, is no regular file or has the wrong size is an error
// naming it: a new key would silently cost every connector its quick
// recovery from the next crash. One that group or others may read is used,
// with a warning (see readResetKey).
func loadResetKey(statePath string, log *zap.Logger) (*quic.StatelessResetKey, error) {
	path := resetKeyPath(statePath)
	key, perm, err := readResetKey(path)
	if exposed(perm) {
		log.Warn("stateless reset key is open to group or others: chmod 600 it", zap.String("path", path),
			zap.Stringer("mode", perm))
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	key = new(quic.StatelessResetKey)
	if _, err := rand.Read(key[:]); err != nil {
		return nil, fmt.Errorf("SWL_STATE_PATH: stateless reset key %s: %w", path, err)
	}
	// The state file's lock is not taken yet; a second listener racing on
	// a state path that has no key yet could replace this one, but fails
	// on that lock right after.
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("SWL_STATE_PATH: stateless reset key %s: create its directory: %w", path, err)
	}
	if err := pki.WriteFileAtomic(path, key[:], 0o600); err != nil {
		return nil, fmt.Errorf("SWL_STATE_PATH: stateless reset key: %w", err)
	}
	log.Info("stateless reset key created", zap.String("path", path))
	return key, nil
}

// readResetKey reads the key file and returns its permissions; a missing
// file is an error that wraps fs.ErrNotExist.
func readResetKey(path string) (key *quic.StatelessResetKey, perm fs.FileMode, err error) {
	// Non-blocking: opening a named pipe would wait for a writer. Nothing
	// is read before the file is known to be a regular one: a device such
	// as /dev/zero has no end.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, err
	}
	if err != nil {
		return nil, 0, fmt.Errorf("SWL_STATE_PATH: stateless reset key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("SWL_STATE_PATH: stateless reset key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("SWL_STATE_PATH: stateless reset key %s is %s, not a regular file: remove it and a new one is made at start",
			path, fileKind(fi.Mode()))
	}
	key = new(quic.StatelessResetKey)
	if fi.Size() != int64(len(key)) {
		return nil, 0, fmt.Errorf("SWL_STATE_PATH: stateless reset key %s has %d bytes, not %d: remove it and a new one is made at start",
			path, fi.Size(), len(key))
	}
	if _, err := io.ReadFull(f, key[:]); err != nil {
		return nil, 0, fmt.Errorf("SWL_STATE_PATH: stateless reset key %s: %w", path, err)
	}
	return key, fi.Mode().Perm(), nil
}

// exposed reports whether group or others may open a key file of mode perm.
//
// That is a warning, not a refusal as ssh makes of a private key: the key
// lets its reader end a connection whose connection IDs it sees — from the
// path, where dropping packets does as much already. Refusing to start
// would cost every connector its tunnels for a lesser risk.
func exposed(perm fs.FileMode) bool {
	return runtime.GOOS != "windows" && perm&0o077 != 0 // Windows has no such bits
}

// fileKind names what a file that is not a regular one is.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	default:
		return "of mode " + m.String()
	}
}
