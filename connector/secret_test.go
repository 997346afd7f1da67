package connector

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/socket-warp/socket-warp/shared/testutil"
)

// TestRenewSecretFileReload: renew_secret_file may be missing at start; what
// it holds later is read by Reload (SIGHUP) without Run, which would also
// watch it; a broken version keeps the previous secret; the secret is in no
// log line and no error.
func TestRenewSecretFileReload(t *testing.T) {
	p := testutil.NewPKI(t)
	cfg := testConfig(t, p, 1)
	cfg.SCEPURL = "http://ca.example:8443/scep"
	cfg.RenewSecretFile = filepath.Join(t.TempDir(), "update-secret")
	log, logs := testutil.Logger(t, "connector")
	c, err := New(cfg, log)
	if err != nil {
		t.Fatalf("New with a renew_secret_file that does not exist yet: %v", err)
	}
	if _, err := c.secret.get(); !errors.Is(err, errNoSecret) || !strings.Contains(err.Error(), cfg.RenewSecretFile) {
		t.Fatalf("secret before the file exists: %v, want errNoSecret naming the file", err)
	}

	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(cfg.RenewSecretFile, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, secret := range []string{"s3cr3t-one", "s3cr3t-two"} {
		write(secret + "\n")
		if err := c.Reload(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-c.secret.changed: // a waiting renewal would try again now
		default:
			t.Fatalf("no notification for %q", secret)
		}
		if got, err := c.secret.get(); got != secret || err != nil {
			t.Fatalf("after Reload: %q, %v; want %q", got, err, secret)
		}
	}

	write("")
	c.Reload()
	write(`s3cr3t\bad`)
	c.Reload()
	if got, err := c.secret.get(); got != "s3cr3t-two" || err != nil {
		t.Fatalf("after an empty and a broken file: %q, %v; want the previous secret kept", got, err)
	}
	for _, e := range logs.All() {
		if line := fmt.Sprintf("%s %v", e.Message, e.ContextMap()); strings.Contains(line, "s3cr3t") {
			t.Errorf("a log line shows the secret: %s", line)
		}
	}

	// A file whose secret can never work stops the start, without showing it.
	_, err = New(cfg, log)
	if err == nil || !strings.Contains(err.Error(), "must not contain a backslash") || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("New with a backslash in the file: %v", err)
	}
}

// check-config says when renew_secret_file gives no secret, never the
// secret.
func TestCheckConfigRenewSecretFile(t *testing.T) {
	p := testutil.NewPKI(t)
	cfg := testConfig(t, p, 1)
	cfg.SCEPURL = "http://ca.example:8443/scep"
	cfg.RenewSecretFile = filepath.Join(t.TempDir(), "update-secret")
	want := func(what string, list []string, part string) {
		t.Helper()
		for _, s := range list {
			if strings.Contains(s, part) && strings.Contains(s, cfg.RenewSecretFile) && !strings.Contains(s, "s3cr3t") {
				return
			}
		}
		t.Errorf("%s: %q, want one naming the file and %q", what, list, part)
	}
	want("missing file", CheckConfig(cfg).Warnings, "renewal waits until the file holds an update secret")
	if err := os.WriteFile(cfg.RenewSecretFile, []byte(`s3cr3t\x`), 0o600); err != nil {
		t.Fatal(err)
	}
	want("backslash", CheckConfig(cfg).Problems, "must not contain a backslash")
	if err := os.WriteFile(cfg.RenewSecretFile, []byte("s3cr3t"), 0o600); err != nil {
		t.Fatal(err)
	}
	if f := CheckConfig(cfg); len(f.Problems)+len(f.Warnings) != 0 {
		t.Errorf("a usable secret file: %+v", f)
	}
}
