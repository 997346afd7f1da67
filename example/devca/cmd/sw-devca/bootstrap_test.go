package main

import (
	"crypto/sha256"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func readEnrollment(t *testing.T, path string) enrollment {
	t.Helper()
	if fi, err := os.Stat(path); err != nil {
		t.Fatal(err)
	} else if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s mode %v, want 0600", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var e enrollment
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return e
}

func TestBootstrap(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "ca", "devca.json")
	out := filepath.Join(dir, "listener")
	enrollFile := filepath.Join(dir, "connector", "enroll.json")
	args := []string{"bootstrap", "--state", state, "--out", out, "--ca-key-bits", "2048",
		"--dns-name", "localhost", "--ip", "127.0.0.1",
		"--client", "swc-1", "--enroll-file", enrollFile, "--scep-url", "https://ca.example:8443/scep"}
	bootstrap := func() {
		t.Helper()
		if code, _ := h.run(args...); code != 0 {
			t.Fatalf("bootstrap exited with %d: %s", code, h.stderr.String())
		}
	}

	bootstrap()
	first := readEnrollment(t, enrollFile)
	caPEM, err := os.ReadFile(filepath.Join(out, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(caPEM)
	if block == nil {
		t.Fatal("ca.crt holds no PEM block")
	}
	if want := fmt.Sprintf("%x", sha256.Sum256(block.Bytes)); first.CAFingerprint != want {
		t.Errorf("ca_fingerprint %q, want the SHA-256 of ca.crt %q", first.CAFingerprint, want)
	}
	if first.UID != "swc-1" || first.SCEPURL != "https://ca.example:8443/scep" || first.EnrollSecret == "" {
		t.Errorf("enrollment file %+v", first)
	}
	serverKey, err := os.ReadFile(filepath.Join(out, "server.key"))
	if err != nil {
		t.Fatal(err)
	}

	// Again before the connector enrolled (a container restarted): same CA,
	// a new secret that replaces the first.
	bootstrap()
	second := readEnrollment(t, enrollFile)
	if second.EnrollSecret == first.EnrollSecret || second.CAFingerprint != first.CAFingerprint {
		t.Fatalf("second bootstrap: secret replaced %v, same CA %v",
			second.EnrollSecret != first.EnrollSecret, second.CAFingerprint == first.CAFingerprint)
	}
	if key, _ := os.ReadFile(filepath.Join(out, "server.key")); string(key) != string(serverKey) {
		t.Fatal("a second bootstrap replaced the listener's key")
	}

	// Listener files from another CA (a stale volume) are replaced.
	if err := os.WriteFile(filepath.Join(out, "ca.crt"), []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	bootstrap()
	third := readEnrollment(t, enrollFile)
	if got, _ := os.ReadFile(filepath.Join(out, "ca.crt")); string(got) != string(caPEM) {
		t.Fatal("a stale ca.crt was not replaced")
	}

	// Only the newest secret enrolls. serve runs in a subtest, so that it
	// has stopped before bootstrap opens the state file again.
	t.Run("enroll", func(t *testing.T) {
		sh := newHarness(t)
		pub, _ := sh.serve("--state", state, "--addr", "127.0.0.1:0", "--admin-addr", "", "--tls")
		cert := newSCEPClient(t, pub, filepath.Join(out, "ca.crt")).enroll("swc-1", third.EnrollSecret)
		if cert.Subject.CommonName != "swc-1" {
			t.Fatalf("enrolled CN %q", cert.Subject.CommonName)
		}
	})

	// Once enrolled, bootstrap leaves the client and its file alone: no
	// new secret in the state file, which any change would rewrite.
	before, err := os.ReadFile(enrollFile)
	if err != nil {
		t.Fatal(err)
	}
	stateBefore, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	bootstrap()
	if after, _ := os.ReadFile(enrollFile); string(after) != string(before) {
		t.Fatal("bootstrap rewrote the enrollment file of an enrolled client")
	}
	if after, _ := os.ReadFile(state); string(after) != string(stateBefore) {
		t.Error("bootstrap changed the state of an enrolled client")
	}
	h.assertNotLogged(first.EnrollSecret, second.EnrollSecret, third.EnrollSecret)
}

func TestBootstrapUsage(t *testing.T) {
	h := newHarness(t)
	state := filepath.Join(t.TempDir(), "s.json")
	for _, args := range [][]string{
		{"bootstrap"},
		{"bootstrap", "--state", state, "--client", "swc-1"},
		{"bootstrap", "--state", state, "--client", "swc-1", "--enroll-file", "e.json"},
		{"bootstrap", "--state", state, "--client", `a\b`, "--enroll-file", "e.json", "--scep-url", "http://ca/scep"},
		{"bootstrap", "--state", state, "--client", "swc-1", "--enroll-file", "e.json", "--scep-url", "ca:8443"},
		{"bootstrap", "--state", state, "extra"},
	} {
		if code, _ := h.run(args...); code != 2 {
			t.Errorf("sw-devca %q exited with %d, want 2", args, code)
		}
	}
	if _, err := os.Stat(state); err == nil {
		t.Error("a refused bootstrap created the state file")
	}
}
