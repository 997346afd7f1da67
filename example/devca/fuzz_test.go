package devca

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/smallstep/scep"
)

// Every truncated prefix of a real request is answered with an error, never
// a panic (the reference's handler crashes on some inputs).
func TestPKIOperationTruncated(t *testing.T) {
	e := newEnv(t, InitOptions{})
	secret := e.register("swc-1")
	raw, _, _ := e.buildPKIMessage("swc-1", secret, request{})
	for n := range len(raw) {
		if _, err := e.ca.pkiOperation(raw[:n]); !errors.Is(err, errBadMessage) {
			t.Fatalf("prefix of %d bytes: %v, want errBadMessage", n, err)
		}
	}
	// The whole message still enrols: no prefix used up the secret.
	e.mustEnroll("swc-1", secret, request{})
}

func FuzzPKIOperation(f *testing.F) {
	path := filepath.Join(f.TempDir(), "state.json")
	ca, err := Init(path, InitOptions{CAKeyBits: 2048}, withCAKey(caKeyA()))
	if err != nil {
		f.Fatal(err)
	}
	defer ca.Close()
	if err := ca.AddClient("swc-1", nil); err != nil {
		f.Fatal(err)
	}
	secret, err := ca.CreateSecret("swc-1", 0)
	if err != nil {
		f.Fatal(err)
	}
	e := &env{t: f, ca: ca}
	for _, typ := range []scep.MessageType{scep.PKCSReq, scep.RenewalReq, scep.UpdateReq} {
		raw, _, _ := e.buildPKIMessage("swc-1", secret, request{typ: typ})
		f.Add(raw)
	}
	f.Add([]byte{})
	f.Add([]byte{0x30, 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		reply, err := ca.pkiOperation(data)
		if err == nil && len(reply) == 0 {
			t.Fatal("no error and no reply")
		}
	})
}

func FuzzDecodeCertHeader(f *testing.F) {
	f.Add("")
	f.Add("%zz")
	f.Add("-----BEGIN%20CERTIFICATE-----%0AMIIB%2B%2F%3D%3D%0A-----END%20CERTIFICATE-----%0A")
	f.Add("-----BEGIN+CERTIFICATE-----%0AAAAA%0A-----END+CERTIFICATE-----")
	f.Fuzz(func(t *testing.T, v string) {
		block, status, msg := decodeCertHeader(v)
		if block == nil && (status != 400 || msg == "") {
			t.Fatalf("no block and status %d %q", status, msg)
		}
		if block != nil && block.Type != "CERTIFICATE" {
			t.Fatalf("block type %q", block.Type)
		}
	})
}
