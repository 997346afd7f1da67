package enroll

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/socket-warp/socket-warp/shared/pki"
)

// File names WriteFiles uses in its directory.
const (
	KeyFile  = "key.pem"  // PKCS#8 PEM, 0600
	CertFile = "cert.pem" // the issued certificate, 0644
	CAFile   = "ca.crt"   // the GetCACert certificates, 0644

	stagedSuffix = ".new" // key.pem.new, cert.pem.new: a swap in progress
)

// writeHook, when set by a test, runs after each step of WriteFiles and can
// fail it there.
var writeHook func(step string) error

// WriteFiles writes r into dir (created 0700 if missing) as key.pem (0600,
// PKCS#8, loadable by tls.X509KeyPair), cert.pem and ca.crt, and returns their
// paths (caPath is empty when r.CA is). Each file is written atomically (pki.WriteFileAtomic: temp file,
// fsync, rename, mode set before the first byte).
//
// The key and the certificate must also change together: a connector that
// loads a new key with an old certificate (or the reverse) cannot connect, and
// after an enrollment the one-time secret is spent, so the old pair may be the
// only way back and the new one the only way forward. Two files cannot be
// renamed at once, so the swap is staged and can always be finished:
//
//  1. ca.crt is replaced on its own; it does not belong to the pair.
//  2. The new key and certificate are written in full and fsynced under the
//     staged names key.pem.new and cert.pem.new. A failure here removes them;
//     the old pair was never touched.
//  3. key.pem.new is renamed to key.pem, the directory fsynced, then
//     cert.pem.new to cert.pem, the directory fsynced. The key goes first so
//     that, on a first enrollment, cert.pem never exists without its key: a
//     daemon that asks "do I have a certificate yet?" by looking for cert.pem
//     sees either nothing or a whole pair.
//
// A crash (or an error) between the two renames leaves the new key.pem, the
// old cert.pem and the staged cert.pem.new: a mixed pair, but never a lost
// one, because the missing half is on disk under its staged name.
// RecoverFiles finishes the swap. WriteFiles runs it first, and a daemon must
// run it before it loads the pair at start-up.
//
// A reader that loads the two files while the swap runs may also see a mixed
// pair; tls.X509KeyPair refuses it ("private key does not match public key"),
// so a reloader keeps its current pair and tries again later.
func (r *Result) WriteFiles(dir string) (keyPath, certPath, caPath string, err error) {
	if dir == "" {
		dir = "."
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", "", fmt.Errorf("write certificate files: %w", err)
	}
	p := PathsIn(dir)
	if len(r.CA) == 0 {
		p.CA = "" // nothing to write
	}
	if err := r.Write(p); err != nil {
		return "", "", "", err
	}
	return p.Key, p.Cert, p.CA, nil
}

// Paths names the files of a certificate: the daemon's configured
// client_key_path, client_cert_path and ca_cert_path.
type Paths struct {
	Key, Cert string
	CA        string // empty: the CA certificates are not written
}

// PathsIn is key.pem, cert.pem and ca.crt in dir.
func PathsIn(dir string) Paths {
	return Paths{Key: filepath.Join(dir, KeyFile), Cert: filepath.Join(dir, CertFile), CA: filepath.Join(dir, CAFile)}
}

// Write writes r to the paths with the staged swap WriteFiles describes; the
// directories must exist.
func (r *Result) Write(p Paths) error {
	if r == nil || r.Key == nil || r.Cert == nil {
		return errors.New("write certificate files: no key or certificate")
	}
	keyPEM, err := pki.KeyPEM(r.Key)
	if err != nil {
		return err
	}
	certPEM := pki.CertPEM(r.Cert)
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return fmt.Errorf("write certificate files: %w", err)
	}
	var caPEM bytes.Buffer
	for _, c := range r.CA {
		caPEM.Write(pki.CertPEM(c))
	}

	stagedKey, stagedCert := p.Key+stagedSuffix, p.Cert+stagedSuffix
	if err := Recover(p); err != nil {
		return err
	}
	if p.CA != "" && caPEM.Len() > 0 {
		if err := pki.WriteFileAtomic(p.CA, caPEM.Bytes(), 0o644); err != nil {
			return err
		}
	}

	// Stage both halves; on failure drop them, the old pair is untouched.
	stage := func() error {
		if err := pki.WriteFileAtomic(stagedKey, keyPEM, 0o600); err != nil {
			return err
		}
		if err := hook("key staged"); err != nil {
			return err
		}
		if err := pki.WriteFileAtomic(stagedCert, certPEM, 0o644); err != nil {
			return err
		}
		return hook("cert staged")
	}
	if err := stage(); err != nil {
		os.Remove(stagedKey)
		os.Remove(stagedCert)
		return err
	}

	// Swap: key, then certificate. From here a failure leaves the staged
	// certificate for Recover.
	unfinished := func(err error) error {
		return fmt.Errorf("write certificate files: swap interrupted, Recover(%s, %s) finishes it: %w", p.Key, p.Cert, err)
	}
	if err := os.Rename(stagedKey, p.Key); err != nil {
		os.Remove(stagedKey)
		os.Remove(stagedCert)
		return fmt.Errorf("write %s: %w", p.Key, err)
	}
	if err := syncDir(filepath.Dir(p.Key)); err != nil {
		return unfinished(err)
	}
	if err := hook("key renamed"); err != nil {
		return unfinished(err)
	}
	if err := os.Rename(stagedCert, p.Cert); err != nil {
		return unfinished(err)
	}
	if err := syncDir(filepath.Dir(p.Cert)); err != nil {
		return fmt.Errorf("write certificate files: %w", err)
	}
	return nil
}

// RecoverFiles finishes or undoes a WriteFiles that stopped half-way in dir,
// so that key.pem and cert.pem are a pair again. It does nothing when no swap
// was in progress. The rule: take each half from its staged file if there is
// one, else from its current file; if those two make a pair, the staged files
// are complete and win (the swap is rolled forward); otherwise they are
// leftovers of a write that never reached its first rename, and are removed.
func RecoverFiles(dir string) error { return Recover(PathsIn(dir)) }

// Recover is RecoverFiles for files that need not share a directory.
func Recover(p Paths) error {
	keyPath, certPath := p.Key, p.Cert
	stagedKey, stagedCert := keyPath+stagedSuffix, certPath+stagedSuffix

	// Temp files of a pki.WriteFileAtomic that never got to its rename.
	for _, path := range []string{stagedKey, stagedCert, p.CA} {
		if path == "" {
			continue
		}
		tmps, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp*"))
		for _, t := range tmps {
			os.Remove(t)
		}
	}

	keyPEM, haveStagedKey, err := readEither(stagedKey, keyPath)
	if err != nil {
		return err
	}
	certPEM, haveStagedCert, err := readEither(stagedCert, certPath)
	if err != nil {
		return err
	}
	if !haveStagedKey && !haveStagedCert {
		return nil
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		for _, staged := range []string{stagedKey, stagedCert} {
			if err := os.Remove(staged); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("recover certificate files: %w", err)
			}
		}
		if err := syncDir(filepath.Dir(keyPath)); err != nil {
			return err
		}
		return syncDir(filepath.Dir(certPath))
	}
	for _, mv := range []struct {
		staged bool
		from   string
		to     string
	}{{haveStagedKey, stagedKey, keyPath}, {haveStagedCert, stagedCert, certPath}} {
		if !mv.staged {
			continue
		}
		if err := os.Rename(mv.from, mv.to); err != nil {
			return fmt.Errorf("recover certificate files: %w", err)
		}
		if err := syncDir(filepath.Dir(mv.to)); err != nil {
			return fmt.Errorf("recover certificate files: %w", err)
		}
	}
	return nil
}

// readEither reads staged if it exists, else current; a missing current
// file reads as empty.
func readEither(staged, current string) (data []byte, fromStaged bool, err error) {
	data, err = os.ReadFile(staged)
	if err == nil {
		return data, true, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("recover certificate files: %w", err)
	}
	data, err = os.ReadFile(current)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("recover certificate files: %w", err)
	}
	return data, false, nil
}

// syncDir makes renames in dir durable. Windows cannot fsync a directory and
// does not need to.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

func hook(step string) error {
	if writeHook != nil {
		return writeHook(step)
	}
	return nil
}
