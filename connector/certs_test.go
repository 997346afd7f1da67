package connector

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/connector/enroll"
)

func TestRenewalDue(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	leaf := &x509.Certificate{NotBefore: nb, NotAfter: nb.Add(300 * 24 * time.Hour)}
	if got, want := renewalDue(leaf, 2.0/3), nb.Add(200*24*time.Hour); !got.Equal(want) {
		t.Fatalf("due %s, want %s", got, want)
	}
}

func TestRefusedRetry(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		left, want time.Duration
	}{
		{100 * 24 * time.Hour, time.Hour},   // far from expiry: hourly
		{50 * time.Minute, 5 * time.Minute}, // a tenth of what is left
		{5 * time.Second, time.Second},      // never below the floor
		{-time.Hour, time.Second},           // already expired
	} {
		if got := refusedRetry(now.Add(tc.left), now, time.Second); got != tc.want {
			t.Errorf("%s left: retry in %s, want %s", tc.left, got, tc.want)
		}
	}
}

func TestWaitOrChange(t *testing.T) {
	changed := make(chan struct{}, 1)
	if !waitOrChange(context.Background(), changed, 0) {
		t.Fatal("a zero wait did not pass")
	}
	changed <- struct{}{}
	if waitOrChange(context.Background(), changed, -1) {
		t.Fatal("a change did not end a wait")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if waitOrChange(ctx, changed, -1) {
		t.Fatal("a cancelled context did not end a wait")
	}
}

func TestCheckEnrollTrust(t *testing.T) {
	dir := t.TempDir()
	cfg := Defaults()
	cfg.CACertPath = filepath.Join(dir, "ca.crt")
	cfg.SCEPURL = "http://ca.example:8443/scep"
	if err := checkEnrollTrust(cfg); err == nil || !strings.Contains(err.Error(), cfg.CACertPath) {
		t.Fatalf("http, no pin, no CA file: %v", err)
	}
	for name, tweak := range map[string]func(*Config){
		"pinned": func(c *Config) { c.CAFingerprint = strings.Repeat("ab", 32) },
		"https":  func(c *Config) { c.SCEPURL = "https://ca.example/scep" },
		"operator's CA file": func(c *Config) {
			if err := os.WriteFile(c.CACertPath, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		},
	} {
		c := cfg
		tweak(&c)
		if err := checkEnrollTrust(c); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		os.Remove(cfg.CACertPath)
	}
}

func TestMakeDirs(t *testing.T) {
	dir := t.TempDir()
	p := enroll.Paths{Key: filepath.Join(dir, "a", "key.pem"), Cert: filepath.Join(dir, "b", "cert.pem")}
	if err := makeDirs(p); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "a"))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("key directory: %v %v", fi, err)
	}
	if err := os.WriteFile(p.Key, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := makeDirs(enroll.Paths{Key: filepath.Join(p.Key, "x")}); err == nil {
		t.Fatal("a directory below a file was created")
	}
}
