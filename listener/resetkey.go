package listener

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

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
// but cannot be read or has the wrong size is an error naming it: a new key
// would silently cost every connector its quick recovery from the next crash.
func loadResetKey(statePath string, log *zap.Logger) (*quic.StatelessResetKey, error) {
	path := resetKeyPath(statePath)
	key, err := readResetKey(path)
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

// readResetKey reads the key file; a missing file is an error that wraps
// fs.ErrNotExist.
func readResetKey(path string) (*quic.StatelessResetKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("SWL_STATE_PATH: stateless reset key: %w", err)
	}
	key := new(quic.StatelessResetKey)
	if len(b) != len(key) {
		return nil, fmt.Errorf("SWL_STATE_PATH: stateless reset key %s has %d bytes, not %d: remove it and a new one is made at start",
			path, len(b), len(key))
	}
	copy(key[:], b)
	return key, nil
}
