package enroll

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/socket-warp/socket-warp/shared/pki"
)

// newPair is a Result without SCEP: WriteFiles does not care where the pair
// came from, and ECDSA keys are quick to make.
func newPair(t *testing.T, cn string) *Result {
	t.Helper()
	ca, err := pki.NewCA("files test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(pki.LeafOptions{CommonName: cn, Usage: pki.Client})
	if err != nil {
		t.Fatal(err)
	}
	return &Result{Key: leaf.Key, Cert: leaf.Cert, CA: []*x509.Certificate{ca.Cert}}
}

// loaded returns the CN of the pair in dir, or fails if it is not a pair.
func loaded(t *testing.T, dir string) string {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatalf("the files in %s are not a pair: %v", dir, err)
	}
	return pair.Leaf.Subject.CommonName
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n []string
	for _, e := range entries {
		n = append(n, e.Name())
	}
	return n
}

// withHook makes WriteFiles fail at step.
func withHook(t *testing.T, step string) {
	t.Helper()
	writeHook = func(s string) error {
		if s == step {
			return errors.New("injected failure at " + s)
		}
		return nil
	}
	t.Cleanup(func() { writeHook = nil })
}

func TestWriteFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki") // created by WriteFiles
	res := newPair(t, "conn-1")
	keyPath, certPath, caPath, err := res.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	for p, mode := range map[string]os.FileMode{keyPath: 0o600, certPath: 0o644, caPath: 0o644} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", p, fi.Mode().Perm(), mode)
		}
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("dir %v, %v; want mode 0700", fi.Mode().Perm(), err)
	}
	if cn := loaded(t, dir); cn != "conn-1" {
		t.Errorf("CN %q", cn)
	}
	caPEM, err := os.ReadFile(caPath)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := pem.Decode(caPEM); b == nil || !slices.Equal(b.Bytes, res.CA[0].Raw) {
		t.Error("ca.crt does not hold the CA")
	}
	if got := names(t, dir); !slices.Equal(got, []string{CAFile, CertFile, KeyFile}) {
		t.Errorf("dir holds %v", got)
	}
}

func TestWriteFilesReplacesPair(t *testing.T) {
	dir := t.TempDir()
	// An old key readable by others: the new one must still be 0600.
	if err := os.WriteFile(filepath.Join(dir, KeyFile), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cn := range []string{"first", "second"} {
		if _, _, _, err := newPair(t, cn).WriteFiles(dir); err != nil {
			t.Fatal(err)
		}
		if got := loaded(t, dir); got != cn {
			t.Errorf("pair %q, want %q", got, cn)
		}
	}
	if fi, _ := os.Stat(filepath.Join(dir, KeyFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", fi.Mode().Perm())
	}
	if got := names(t, dir); !slices.Equal(got, []string{CAFile, CertFile, KeyFile}) {
		t.Errorf("dir holds %v", got)
	}
}

func TestWriteFilesFailsBeforeSwap(t *testing.T) {
	for _, step := range []string{"key staged", "cert staged"} {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			if _, _, _, err := newPair(t, "old").WriteFiles(dir); err != nil {
				t.Fatal(err)
			}
			withHook(t, step)
			if _, _, _, err := newPair(t, "new").WriteFiles(dir); err == nil {
				t.Fatal("no error")
			}
			// The old pair, whole, and nothing staged left behind.
			if got := loaded(t, dir); got != "old" {
				t.Errorf("pair %q, want the old one", got)
			}
			if got := names(t, dir); !slices.Equal(got, []string{CAFile, CertFile, KeyFile}) {
				t.Errorf("dir holds %v", got)
			}
		})
	}
}

func TestWriteFilesInterruptedSwap(t *testing.T) {
	dir := t.TempDir()
	if _, _, _, err := newPair(t, "old").WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	withHook(t, "key renamed")
	_, _, _, err := newPair(t, "new").WriteFiles(dir)
	if err == nil || !strings.Contains(err.Error(), "Recover(") {
		t.Fatalf("err %v, want one that points at Recover", err)
	}
	// The documented window: new key, old certificate, new certificate staged.
	if _, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)); err == nil {
		t.Fatal("the pair is whole; the hook did not interrupt the swap")
	}
	if err := RecoverFiles(dir); err != nil {
		t.Fatal(err)
	}
	if got := loaded(t, dir); got != "new" {
		t.Errorf("pair %q after recovery, want the new one", got)
	}
	if got := names(t, dir); !slices.Equal(got, []string{CAFile, CertFile, KeyFile}) {
		t.Errorf("dir holds %v", got)
	}
}

func TestWriteFilesRecoversFirst(t *testing.T) {
	dir := t.TempDir()
	if _, _, _, err := newPair(t, "old").WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	withHook(t, "key renamed")
	if _, _, _, err := newPair(t, "interrupted").WriteFiles(dir); err == nil {
		t.Fatal("no error")
	}
	writeHook = nil
	if _, _, _, err := newPair(t, "next").WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	if got := loaded(t, dir); got != "next" {
		t.Errorf("pair %q", got)
	}
	if got := names(t, dir); !slices.Equal(got, []string{CAFile, CertFile, KeyFile}) {
		t.Errorf("dir holds %v", got)
	}
}

// TestRecoverFiles builds the states a crash can leave and checks each ends
// as a whole pair.
func TestRecoverFiles(t *testing.T) {
	type files map[string][]byte
	pemOf := func(r *Result) (key, cert []byte) {
		k, err := pki.KeyPEM(r.Key)
		if err != nil {
			t.Fatal(err)
		}
		return k, pki.CertPEM(r.Cert)
	}
	oldKey, oldCert := pemOf(newPair(t, "old"))
	newKey, newCert := pemOf(newPair(t, "new"))
	staged := func(name string) string { return name + stagedSuffix }

	for name, tc := range map[string]struct {
		before files
		want   string // CN of the pair after recovery; "" for no pair at all
	}{
		"nothing staged": {files{KeyFile: oldKey, CertFile: oldCert}, "old"},
		"crash while staging the key": {
			files{KeyFile: oldKey, CertFile: oldCert, staged(KeyFile): newKey[:len(newKey)/2]}, "old"},
		"crash after staging the key": {
			files{KeyFile: oldKey, CertFile: oldCert, staged(KeyFile): newKey}, "old"},
		"crash while staging the certificate": {
			files{KeyFile: oldKey, CertFile: oldCert, staged(KeyFile): newKey, staged(CertFile): newCert[:len(newCert)/2]}, "old"},
		"crash after staging both": {
			files{KeyFile: oldKey, CertFile: oldCert, staged(KeyFile): newKey, staged(CertFile): newCert}, "new"},
		"crash between the renames": {
			files{KeyFile: newKey, CertFile: oldCert, staged(CertFile): newCert}, "new"},
		"first enrollment, crash after staging the key": {
			files{staged(KeyFile): newKey}, ""},
		"first enrollment, crash between the renames": {
			files{KeyFile: newKey, staged(CertFile): newCert}, "new"},
		"leftover temp files": {
			files{KeyFile: oldKey, CertFile: oldCert, ".key.pem.new.tmp123": newKey[:10], ".ca.crt.tmp9": []byte("x")}, "old"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			for n, data := range tc.before {
				if err := os.WriteFile(filepath.Join(dir, n), data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := RecoverFiles(dir); err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if got := names(t, dir); len(got) != 0 {
					t.Errorf("dir holds %v, want nothing", got)
				}
				return
			}
			if got := loaded(t, dir); got != tc.want {
				t.Errorf("pair %q, want %q", got, tc.want)
			}
			if got := names(t, dir); !slices.Equal(got, []string{CertFile, KeyFile}) {
				t.Errorf("dir holds %v", got)
			}
		})
	}
}

func TestWriteFilesRefusesMismatchedResult(t *testing.T) {
	a, b := newPair(t, "a"), newPair(t, "b")
	dir := t.TempDir()
	if _, _, _, err := (&Result{Key: a.Key, Cert: b.Cert}).WriteFiles(dir); err == nil {
		t.Fatal("wrote a key with another key's certificate")
	}
	if got := names(t, dir); len(got) != 0 {
		t.Errorf("dir holds %v", got)
	}
}

// The daemon's configured paths need not share a directory, and an empty CA
// path leaves an operator's CA file alone.
func TestWriteToConfiguredPaths(t *testing.T) {
	keyDir, certDir := t.TempDir(), t.TempDir()
	caPath := filepath.Join(certDir, "listener-ca.crt")
	if err := os.WriteFile(caPath, []byte("operator's CA"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := Paths{Key: filepath.Join(keyDir, "client.key"), Cert: filepath.Join(certDir, "client.crt")}
	for _, name := range []string{"old", "new"} {
		if err := newPair(t, name).Write(p); err != nil {
			t.Fatal(err)
		}
		if _, err := tls.LoadX509KeyPair(p.Cert, p.Key); err != nil {
			t.Fatalf("%s pair: %v", name, err)
		}
	}
	if fi, err := os.Stat(p.Key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode: %v %v", fi.Mode(), err)
	}
	if b, _ := os.ReadFile(caPath); string(b) != "operator's CA" {
		t.Fatalf("CA file changed: %q", b)
	}
}
