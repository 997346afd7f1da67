package connector

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/shared/logging"
)

// errNoSecret: renew_secret_file holds no usable update secret (yet).
// Asking the SCEP server is pointless until the file changes.
var errNoSecret = errors.New("no update secret")

// renewSecret is the update secret a renewal sends: renew_secret as
// configured, or what renew_secret_file held when last read (load: when the
// file changes, on SIGHUP). An update secret is one-time, so the file is how
// the next one reaches a running connector. The secret itself is never
// logged, nor put in an error.
type renewSecret struct {
	fixed string // renew_secret; "" when the file is used
	path  string // renew_secret_file
	log   *zap.Logger
	// changed receives after load found a new secret: a renewal waiting
	// to retry tries again at once.
	changed chan struct{}

	// loading serialises load, so that an older read cannot overwrite a
	// newer one; only load waits for it, across the file read.
	loading sync.Mutex

	mu    sync.Mutex // guards the following fields; never held across I/O
	value string     // the last usable secret read from the file
	err   error      // why the file gave no usable secret at the last read; nil when it did
}

// newRenewSecret returns nil when neither renew_secret nor renew_secret_file
// is set: no renewal. A file that does not exist yet or is empty is fine
// (the update secret is often created once the connector has enrolled); a
// file whose secret can never work stops the start.
func newRenewSecret(cfg Config, log *zap.Logger) (*renewSecret, error) {
	if cfg.RenewSecret == "" && cfg.RenewSecretFile == "" {
		return nil, nil
	}
	s := &renewSecret{fixed: cfg.RenewSecret, path: cfg.RenewSecretFile, log: log, changed: make(chan struct{}, 1)}
	if s.path == "" {
		return s, nil
	}
	s.load()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil && !errors.Is(s.err, errNoSecret) {
		return nil, s.err
	}
	return s, nil
}

// get is the secret to send now, or why there is none.
func (s *renewSecret) get() (string, error) {
	if s.path == "" {
		return s.fixed, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.value == "" {
		return "", s.err
	}
	return s.value, nil
}

// load reads renew_secret_file again. A new secret replaces the previous
// one, is logged (by file name) and wakes a renewal waiting to retry; a
// file that gives none keeps the previous one, logged once per change of
// the reason.
func (s *renewSecret) load() {
	if s.path == "" {
		return
	}
	s.loading.Lock()
	defer s.loading.Unlock()
	secret, err := readSecretFile(s.path)
	// Only load writes the fields, and loading is held: what is read
	// here stays true until the end.
	s.mu.Lock()
	prevValue, prevErr := s.value, s.err
	if err != nil {
		s.err = err
	} else {
		s.value, s.err = secret, nil
	}
	s.mu.Unlock()

	switch {
	case err != nil && (prevErr == nil || prevErr.Error() != err.Error()):
		if prevValue != "" {
			s.log.Warn("renewal secret file gives no secret: keeping the previous one", logging.Reason(err.Error()))
		} else {
			s.log.Warn("no renewal secret yet: renewal waits until renew_secret_file holds one", logging.Reason(err.Error()))
		}
	case err == nil && secret != prevValue:
		s.log.Info("renewal secret read", zap.String("file", s.path))
		select {
		case s.changed <- struct{}{}:
		default: // a notification is pending already
		}
	}
}

// refusedHint says what to do when the SCEP server refused the secret.
func (s *renewSecret) refusedHint() string {
	if s.path == "" {
		return "; the renew_secret is wrong or already used: create a new update secret and set renew_secret " +
			"(or write it to a renew_secret_file, which is read without a restart)"
	}
	return fmt.Sprintf("; the update secret in renew_secret_file %s is wrong or already used: create a new one and write it there", s.path)
}

// readSecretFile is the file's content without surrounding white space.
// Errors wrap errNoSecret when a later version of the file may do.
func readSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("renew_secret_file (SWC_RENEW_SECRET_FILE): %w (%w)", err, errNoSecret)
	}
	secret := strings.TrimSpace(string(b))
	switch {
	case secret == "":
		return "", fmt.Errorf("renew_secret_file (SWC_RENEW_SECRET_FILE) %s is empty (%w)", path, errNoSecret)
	case strings.Contains(secret, `\`):
		// As renew_secret: a backslash means something else to the
		// reference server (an IDM challenge).
		return "", fmt.Errorf("renew_secret_file (SWC_RENEW_SECRET_FILE) %s: the secret must not contain a backslash", path)
	}
	return secret, nil
}
