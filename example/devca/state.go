package devca

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

// stateVersion is the version of the state file layout.
const stateVersion = 1

// state is the content of the state file. It is only touched with CA.mu held.
type state struct {
	Version    int                      `json:"version"`
	CA         keyPair                  `json:"ca"`
	Server     keyPair                  `json:"server"`
	Settings   settings                 `json:"settings"`
	NextSerial uint64                   `json:"next_serial"`
	CRLNumber  uint64                   `json:"crl_number"`
	Clients    map[string]*clientRecord `json:"clients"`
	Secrets    map[string]*secretRecord `json:"secrets"` // by uid; at most one per uid
	Certs      []*certRecord            `json:"certificates"`
}

type keyPair struct {
	CertPEM string `json:"cert_pem"`
	KeyPEM  string `json:"key_pem"`
}

type settings struct {
	ClientCertValidity duration `json:"client_cert_validity"`
}

type clientRecord struct {
	UID        string         `json:"uid"`
	Attributes map[string]any `json:"attributes"`
	CreatedAt  time.Time      `json:"created_at"`
}

type secretRecord struct {
	Type          string    `json:"type"` // SecretActivate or SecretUpdate
	Salt          []byte    `json:"salt"`
	Hash          []byte    `json:"sha256"` // SHA-256(salt || secret)
	CreatedAt     time.Time `json:"created_at"`
	ExpiresAt     time.Time `json:"expires_at"`
	PendingPeriod duration  `json:"pending_period"`
}

type certRecord struct {
	Serial    string     `json:"serial"` // lowercase hex
	UID       string     `json:"uid"`
	NotBefore time.Time  `json:"not_before"`
	NotAfter  time.Time  `json:"not_after"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	Reason    int        `json:"reason,omitempty"` // CRL reason code
	DER       []byte     `json:"der"`
}

// duration is a time.Duration written as a Go duration string ("1h30m0s").
type duration time.Duration

func (d duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = duration(v)
	return nil
}

// clone returns a deep copy, so that a change can be prepared and saved before
// it replaces the live state.
func (st *state) clone() (*state, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	var c state
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	c.normalize()
	return &c, nil
}

func (st *state) normalize() {
	if st.Clients == nil {
		st.Clients = map[string]*clientRecord{}
	}
	if st.Secrets == nil {
		st.Secrets = map[string]*secretRecord{}
	}
	for _, c := range st.Clients {
		if c.Attributes == nil {
			c.Attributes = map[string]any{}
		}
	}
}

// readState loads and decodes the state file; errors name the file.
func readState(path string) (*state, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("devca: read state file %s: %w", path, err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("devca: state file %s is corrupt: %w", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("devca: state file %s: unsupported version %d (want %d)", path, st.Version, stateVersion)
	}
	st.normalize()
	return &st, nil
}

// writeState encodes st and writes it to path atomically. With create set it
// fails with ErrStateExists rather than replace an existing file.
func writeState(path string, st *state, create bool) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("devca: encode state: %w", err)
	}
	b = append(b, '\n')
	if err := writeFileAtomic(path, b, create); err != nil {
		if errors.Is(err, ErrStateExists) {
			return err
		}
		return fmt.Errorf("devca: write state file %s: %w", path, err)
	}
	return nil
}

// writeFileAtomic writes data to a temporary file (mode 0600) beside path,
// fsyncs it and moves it into place, then fsyncs the directory. Readers see
// either the old or the new content, never a mix. With noReplace set, the
// file is put in place with a hard link, which fails if path exists.
func writeFileAtomic(path string, data []byte, noReplace bool) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err = f.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if noReplace {
		if err = os.Link(tmp, path); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%w: %s", ErrStateExists, path)
			}
			// No hard links here: create the file exclusively instead.
			if err = writeExclusive(path, data); err != nil {
				return err
			}
		}
		_ = os.Remove(tmp)
	} else if err = os.Rename(tmp, path); err != nil {
		return err
	}
	syncDir(dir)
	return nil
}

// writeExclusive creates path (which must not exist) with data, mode 0600.
func writeExclusive(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: %s", ErrStateExists, path)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return err
	}
	return f.Close()
}

// syncDir makes a rename durable; not every platform can open a directory for
// that, so failures are ignored.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}
