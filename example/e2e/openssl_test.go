package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/connector"
	"github.com/socket-warp/socket-warp/shared/testutil"
)

// makeOpenSSLCerts runs example/openssl/make-certs.sh into a temp dir and
// returns the dir. The script is what the README tells operators to run, so
// this test fails if openssl is missing rather than skipping.
func makeOpenSSLCerts(t *testing.T, uid string) string {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatalf("openssl is not on PATH (%v): install openssl (e.g. apt-get install openssl) to run this test; CI installs it", err)
	}
	script, err := filepath.Abs(filepath.Join("..", "openssl", "make-certs.sh"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out, err := exec.Command("bash", script, dir, uid).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s %s: %v\n%s", script, dir, uid, err, out)
	}
	// The script shows each openssl command it runs: that output is the recipe.
	for _, want := range []string{"+ openssl genpkey", "+ openssl req", "+ openssl x509 -req", "server.crt: OK", "client.crt: OK"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("script output lacks %q:\n%s", want, out)
		}
	}
	return dir
}

// opensslConnectorConfig is env.connectorConfig with the script's client files.
func opensslConnectorConfig(dir string, quicPort int) connector.Config {
	c := connector.Defaults()
	c.ClientCertPath = filepath.Join(dir, "client.crt")
	c.ClientKeyPath = filepath.Join(dir, "client.key")
	c.CACertPath = filepath.Join(dir, "ca.crt")
	c.ServerName, c.ServerAddress, c.ServicePort = "localhost", "127.0.0.1", quicPort
	c.RetryMin, c.RetryMax = connector.Duration(20*time.Millisecond), connector.Duration(200*time.Millisecond)
	return c
}

func TestOpenSSLCertificatesWork(t *testing.T) {
	const uid = "swc-openssl" // not the script's default, so the CN is shown to come from the argument
	dir := makeOpenSSLCerts(t, uid)

	for _, key := range []string{"ca.key", "server.key", "client.key"} {
		fi, err := os.Stat(filepath.Join(dir, key))
		if err != nil {
			t.Fatal(err)
		}
		if mode := fi.Mode().Perm(); mode != 0o600 {
			t.Errorf("%s has mode %#o, want 0600", key, mode)
		}
	}

	// Only the file paths differ from the generated test PKI of the other tests.
	e := &env{t: t, caPath: filepath.Join(dir, "ca.crt"),
		serverCert: filepath.Join(dir, "server.crt"), serverKey: filepath.Join(dir, "server.key")}
	rl := e.startListener(e.listenerConfig())
	e.startConnector(opensslConnectorConfig(dir, rl.quicPort()))
	testutil.Eventually(t, "connector "+uid+" bound", func() bool { return rl.Connected(uid) })

	port := rl.open(t, uid, testutil.EchoServer(t))
	payload := testutil.RandomBytes(t, 256<<10)
	if got := roundTrip(t, dialPort(t, port), payload); string(got) != string(payload) {
		t.Fatalf("echo through the tunnel returned %d bytes that differ from the %d sent", len(got), len(payload))
	}
}
