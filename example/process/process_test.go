// Package process runs the built sw-listener and sw-connector binaries as
// real processes: what matters here is how processes behave — exit codes,
// signals, the one line a bad start prints.
package process

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/example/devca"
	"github.com/socket-warp/socket-warp/shared/pki"
	"github.com/socket-warp/socket-warp/shared/testutil"
)

var binDir string

const testVersion = "v9.9.9-test"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sw-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// sw-devcerts and sw-echo for the demo script (demo_test.go).
	for _, pkg := range []string{"listener/cmd/sw-listener", "connector/cmd/sw-connector",
		"example/devca/cmd/sw-devca", "example/cmd/sw-devcerts", "example/cmd/sw-echo"} {
		// The version as make build sets it, so --version shows it came through.
		cmd := exec.Command("go", "build", "-ldflags", "-X github.com/socket-warp/socket-warp/shared/cli.Version="+testVersion,
			"-o", dir, "github.com/socket-warp/socket-warp/"+pkg)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n", pkg, err)
			os.Exit(1)
		}
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// proc is a daemon under test with its stderr collected line by line.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	seen chan struct{} // pinged on every new line
	done chan struct{}
	err  error
}

func start(t *testing.T, name string, env ...string) *proc {
	t.Helper()
	return startCmd(t, name, exec.Command(filepath.Join(binDir, name)), env...)
}

// startCmd is start with the command given, e.g. the daemon behind a shell
// that sets a limit first.
func startCmd(t *testing.T, name string, cmd *exec.Cmd, env ...string) *proc {
	t.Helper()
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, seen: make(chan struct{}, 1), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			select {
			case p.seen <- struct{}{}:
			default:
			}
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.output())
		}
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// waitFor waits until the output contains every one of want.
func (p *proc) waitFor(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		out := p.output()
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(out, w)
		}
		if ok {
			return
		}
		select {
		case <-p.seen:
		case <-p.done:
			if out := p.output(); !containsAll(out, want) {
				t.Fatalf("process exited (%v) before printing %q", p.err, want)
			}
			return
		case <-deadline:
			t.Fatalf("timed out waiting for %q", want)
		}
	}
}

func containsAll(s string, want []string) bool {
	for _, w := range want {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}

// exit waits for the process to end and returns its exit code.
func (p *proc) exit(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatal("process did not exit")
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatalf("wait: %v", p.err)
	}
	return 0
}

type setup struct {
	pki                   *testutil.PKI
	serverCert, serverKey string
	clientCert, clientKey string
	quicPort, apiPort     int
	statePath             string
}

func newSetup(t *testing.T) *setup {
	p := testutil.NewPKI(t)
	s := &setup{pki: p, quicPort: testutil.FreeUDPPort(t), apiPort: testutil.FreePort(t), statePath: filepath.Join(t.TempDir(), "state.db")}
	s.serverCert, s.serverKey = p.ServerCert(t)
	s.clientCert, s.clientKey = p.ClientCert(t, "swc-proc")
	return s
}

// openEcho opens a port through the connector "swc-proc" to an echo
// server and returns it.
func (s *setup) openEcho(t *testing.T) int {
	t.Helper()
	target := testutil.EchoServer(t)
	port := testutil.FreePort(t)
	body := fmt.Sprintf(`{"uid":"swc-proc","port":%d,"connect_address":"127.0.0.1","connect_port":%d}`, port, target.Port)
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/open", s.apiPort), "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("open: %d", resp.StatusCode)
	}
	return port
}

func (s *setup) listenerEnv() []string {
	return []string{
		"SWL_CERT_PATH=" + s.serverCert, "SWL_KEY_PATH=" + s.serverKey, "SWL_CA_PATH=" + s.pki.CAPath,
		"SWL_ADDRS=127.0.0.1", fmt.Sprintf("SWL_PORT=%d", s.quicPort), "SWL_STATE_PATH=" + s.statePath,
		fmt.Sprintf("APIS_PORT=%d", s.apiPort), "SWL_OPEN_ADDRS=127.0.0.1",
	}
}

func (s *setup) connectorEnv() []string {
	return []string{
		"SWC_SETTINGS=", // no file: everything from the environment
		"SWC_CLIENT_CERT_PATH=" + s.clientCert, "SWC_CLIENT_KEY_PATH=" + s.clientKey,
		"SWC_CA_CERT_PATH=" + s.pki.CAPath, "SWC_SERVER_NAME=localhost", "SWC_SERVER_ADDRESS=127.0.0.1",
		fmt.Sprintf("SWC_SERVICE_PORT=%d", s.quicPort), "SWC_RETRY_MIN=50ms", "SWC_RETRY_MAX=500ms",
	}
}

// TestSignalsExitCleanly: SIGTERM on the connector closes its connection
// with "going away" (the listener unbinds it at once, not after its idle
// timeout) and exits 0; SIGINT on the listener exits 0.
func TestSignalsExitCleanly(t *testing.T) {
	s := newSetup(t)
	l := start(t, "sw-listener", s.listenerEnv()...)
	l.waitFor(t, "api listening")
	c := start(t, "sw-connector", s.connectorEnv()...)
	l.waitFor(t, "connector connected")
	c.waitFor(t, "connected")

	// A tunnel works between the two processes.
	port := s.openEcho(t)
	if got := echoThrough(t, port, "between processes"); got != "between processes" {
		t.Fatalf("echo through the processes: %q", got)
	}

	c.cmd.Process.Signal(syscall.SIGTERM)
	if code := c.exit(t); code != 0 {
		t.Fatalf("connector exit code after SIGTERM: %d", code)
	}
	l.waitFor(t, "connector disconnected", "going away")

	l.cmd.Process.Signal(syscall.SIGINT)
	if code := l.exit(t); code != 0 {
		t.Fatalf("listener exit code after SIGINT: %d", code)
	}
	if !strings.Contains(l.output(), "shutting down") {
		t.Fatal("listener did not log its shutdown")
	}
}

// TestBadStartIsOneLine: a missing certificate or a bad settings file stops
// the daemon at once with one line naming the file and the problem.
func TestBadStartIsOneLine(t *testing.T) {
	s := newSetup(t)
	missing := filepath.Join(t.TempDir(), "nope.crt")
	badJSON := filepath.Join(t.TempDir(), "settings.json")
	os.WriteFile(badJSON, []byte(`{"server_name": "x",, }`), 0o644)
	unknownKey := filepath.Join(t.TempDir(), "settings.json")
	os.WriteFile(unknownKey, []byte(`{"server_nme": "x"}`), 0o644)
	wrongType := filepath.Join(t.TempDir(), "settings.json")
	os.WriteFile(wrongType, []byte(`{"service_port": "abc"}`), 0o644)
	notADir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notADir, nil, 0o644)

	for _, tc := range []struct {
		name, bin string
		env       []string
		want      []string
	}{
		{"listener missing certificate", "sw-listener",
			append(s.listenerEnv(), "SWL_CERT_PATH="+missing), []string{missing, "no such file"}},
		{"listener missing CA", "sw-listener",
			append(s.listenerEnv(), "SWL_CA_PATH="+missing), []string{missing, "no such file"}},
		{"listener bad duration", "sw-listener",
			append(s.listenerEnv(), "SWL_KEEPALIVE=soon"), []string{`sw-listener: configuration: SWL_KEEPALIVE: "soon" is not a duration such as "20s"`}},
		{"listener bad number", "sw-listener",
			append(s.listenerEnv(), "SWL_PORT=abc"), []string{`sw-listener: configuration: SWL_PORT: "abc" is not a number`}},
		{"listener fraction for a whole number", "sw-listener",
			append(s.listenerEnv(), "SWL_MAX_PORTS=1.5"), []string{`SWL_MAX_PORTS: "1.5" is not a whole number`}},
		{"listener bad boolean", "sw-listener",
			append(s.listenerEnv(), "SWL_API_INSECURE=yes"), []string{`SWL_API_INSECURE: "yes" is not true or false`}},
		{"listener unusable state path", "sw-listener",
			append(s.listenerEnv(), "SWL_STATE_PATH="+filepath.Join(notADir, "state.db")), []string{"SWL_STATE_PATH", notADir, "not a directory"}},
		{"listener state path is a directory", "sw-listener",
			append(s.listenerEnv(), "SWL_STATE_PATH="+t.TempDir()), []string{"SWL_STATE_PATH"}},
		{"listener keepalive not below idle timeout", "sw-listener",
			append(s.listenerEnv(), "SWL_KEEPALIVE=90s"), []string{"SWL_KEEPALIVE=1m30s must be shorter than SWL_IDLE_TIMEOUT=1m0s"}},
		{"connector missing key", "sw-connector",
			append(s.connectorEnv(), "SWC_CLIENT_KEY_PATH="+missing), []string{missing, "no such file"}},
		{"connector settings syntax error", "sw-connector",
			append(s.connectorEnv(), "SWC_SETTINGS="+badJSON), []string{badJSON, "line 1"}},
		{"connector settings unknown key", "sw-connector",
			append(s.connectorEnv(), "SWC_SETTINGS="+unknownKey), []string{unknownKey, "server_nme"}},
		{"connector settings value of the wrong type", "sw-connector",
			append(s.connectorEnv(), "SWC_SETTINGS="+wrongType), []string{wrongType, `key "service_port" must be a whole number, not string`}},
		{"connector bad duration", "sw-connector",
			append(s.connectorEnv(), "SWC_KEEPALIVE=soon"), []string{`sw-connector: configuration: SWC_KEEPALIVE: "soon" is not a duration such as "20s"`}},
		{"connector bad fraction", "sw-connector",
			append(s.connectorEnv(), "SWC_RENEW_AT=most"), []string{`SWC_RENEW_AT: "most" is not a number`}},
		{"connector settings file named but missing", "sw-connector",
			append(s.connectorEnv(), "SWC_SETTINGS="+missing), []string{missing, "no such file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t, tc.bin, tc.env...)
			if code := p.exit(t); code == 0 {
				t.Fatal("exit code 0 after a bad start")
			}
			out := strings.TrimRight(p.output(), "\n")
			if strings.Count(out, "\n") != 0 {
				t.Fatalf("want one line, got:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Fatalf("%q does not mention %q", out, w)
				}
			}
		})
	}
}

// TestSIGHUPReloadsAndKeepsRunning: a rotated certificate is picked up and a
// SIGHUP re-reads the files instead of killing the process (Go's default).
func TestSIGHUPReloadsAndKeepsRunning(t *testing.T) {
	s := newSetup(t)
	l := start(t, "sw-listener", s.listenerEnv()...)
	l.waitFor(t, "api listening")

	// Replace the server certificate by a new one from the same CA.
	cert, key := s.pki.Issue(t, "server", pki.LeafOptions{CommonName: "localhost", Usage: pki.Server,
		DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if cert != s.serverCert || key != s.serverKey {
		t.Fatalf("rotation wrote %s %s, not the listener's files", cert, key)
	}
	l.waitFor(t, "certificates reloaded")

	for range 3 {
		l.cmd.Process.Signal(syscall.SIGHUP)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/list", s.apiPort))
	if err != nil {
		t.Fatalf("API after SIGHUP: %v", err)
	}
	resp.Body.Close()
	select {
	case <-l.done:
		t.Fatalf("listener died after SIGHUP: %v", l.err)
	default:
	}
	l.cmd.Process.Signal(syscall.SIGTERM)
	if code := l.exit(t); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// TestEnrollCommand: `sw-connector enroll` against a real SCEP CA writes a
// usable pair with the key private; a wrong secret exits non-zero with
// words an operator can act on.
func TestEnrollCommand(t *testing.T) {
	dir := t.TempDir()
	ca, err := devca.Init(filepath.Join(dir, "devca.json"), devca.InitOptions{CAKeyBits: 2048}, devca.WithLogger(zap.NewNop()))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ca.Handler())
	defer func() { srv.Close(); ca.Close() }()
	if err := ca.AddClient("swc-cli", nil); err != nil {
		t.Fatal(err)
	}
	secret, err := ca.CreateSecret("swc-cli", 0)
	if err != nil {
		t.Fatal(err)
	}

	run := func(args ...string) (int, string) {
		cmd := exec.Command(filepath.Join(binDir, "sw-connector"), append([]string{"enroll"}, args...)...)
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), string(out)
	}
	out := filepath.Join(dir, "certs")
	code, text := run("--scep-url", srv.URL+"/scep", "--uid", "swc-cli", "--secret", "wrong", "--out", out)
	if code == 0 || !strings.Contains(text, "wrong or already used secret") {
		t.Fatalf("wrong secret: exit %d, output:\n%s", code, text)
	}
	if strings.Contains(text, secret) {
		t.Fatal("the output shows the secret")
	}
	code, text = run("--scep-url", srv.URL+"/scep", "--uid", "swc-cli", "--secret", secret, "--out", out)
	if code != 0 || !strings.Contains(text, "enrolled swc-cli") {
		t.Fatalf("enroll: exit %d, output:\n%s", code, text)
	}
	if strings.Contains(text, secret) {
		t.Fatal("the output shows the secret")
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(out, "cert.pem"), filepath.Join(out, "key.pem")); err != nil {
		t.Fatalf("enrolled pair: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(out, "key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key.pem: %v", err)
	}
	if code, text = run("--uid", "swc-cli"); code != 2 || !strings.Contains(text, "missing --scep-url, --secret") {
		t.Fatalf("missing flags: exit %d, output:\n%s", code, text)
	}
}

// TestEmptyStateFileRefused: a state file of 0 bytes (truncated, or the
// wrong path) stops sw-listener with one error line naming the file and
// what to do, exit 1, the file left as it was: it never starts with no
// ports over it. It is checked before anything else is loaded or bound, so
// that line is all it writes.
func TestEmptyStateFileRefused(t *testing.T) {
	s := newSetup(t)
	if err := os.WriteFile(s.statePath, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, "sw-listener", s.listenerEnv()...)
	if code := p.exit(t); code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	out := strings.TrimRight(p.output(), "\n")
	want := "sw-listener: SWL_STATE_PATH: state file " + s.statePath + " is empty (0 bytes)"
	if strings.Contains(out, "\n") || !strings.HasPrefix(out, want) || !strings.Contains(out, "remove it to start with no ports") {
		t.Fatalf("want one line %q… saying what to do, got:\n%s", want, out)
	}
	if fi, err := os.Stat(s.statePath); err != nil || fi.Size() != 0 {
		t.Fatalf("the empty state file was written over (%v)", err)
	}
}
