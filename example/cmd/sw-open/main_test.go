package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/connector"
	"github.com/socket-warp/socket-warp/listener"
	"github.com/socket-warp/socket-warp/shared/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }

const token = "test-token-0123456789"

// lockedBuffer is stderr shared by run's goroutine and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type fixture struct {
	pki  *testutil.PKI
	l    *listener.Listener
	api  string
	quic int
}

// startListener runs a real sw-listener with an API token until the test ends.
func startListener(t *testing.T) *fixture {
	p := testutil.NewPKI(t)
	cert, key := p.ServerCert(t)
	cfg := listener.Config{
		CertPath: cert, KeyPath: key, CAPath: p.CAPath,
		Addrs: "127.0.0.1", KeepAlive: 50 * time.Second, IdleTimeout: 60 * time.Second,
		StreamOpenTimeout: 5 * time.Second, OpenAddrs: "127.0.0.1", APIAddrs: "127.0.0.1",
		APIToken: token, LogLevel: "debug", LogFormat: "console",
		StatePath: filepath.Join(t.TempDir(), "state.db"),
	}
	log, _ := testutil.Logger(t, "listener")
	l, err := listener.New(cfg, log)
	if err != nil {
		t.Fatalf("listener.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = l.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &fixture{pki: p, l: l, api: "http://" + l.APIAddrs()[0].String(),
		quic: l.QUICAddrs()[0].(*net.UDPAddr).Port}
}

func (f *fixture) startConnector(t *testing.T, uid string) {
	cert, key := f.pki.ClientCert(t, uid)
	cfg := connector.Defaults()
	cfg.ClientCertPath, cfg.ClientKeyPath, cfg.CACertPath = cert, key, f.pki.CAPath
	cfg.ServerName, cfg.ServerAddress, cfg.ServicePort = "localhost", "127.0.0.1", f.quic
	cfg.RetryMin, cfg.RetryMax = connector.Duration(20*time.Millisecond), connector.Duration(200*time.Millisecond)
	log, _ := testutil.Logger(t, "connector")
	c, err := connector.New(cfg, log)
	if err != nil {
		t.Fatalf("connector.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func env(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }

func TestOpensOnceTheConnectorIsConnected(t *testing.T) {
	f := startListener(t)
	target := testutil.EchoServer(t)
	port := testutil.FreePort(t)
	argsFor := func(connect string) []string {
		return []string{"-api", f.api, "-uid", "swc-1", "-port", strconv.Itoa(port),
			"-connect", connect, "-retry", "20ms", "-timeout", "1m"}
	}
	args := argsFor(target.String())

	var stdout bytes.Buffer
	stderr := &lockedBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(context.Background(), args, &stdout, stderr, env(map[string]string{envToken: token}))
	}()
	testutil.Eventually(t, "sw-open waits for the connector", func() bool {
		return strings.Contains(stderr.String(), "uid is not connected")
	})
	select {
	case code := <-done:
		t.Fatalf("sw-open exited with %d before the connector connected: %s", code, stderr)
	default:
	}

	f.startConnector(t, "swc-1")
	if code := <-done; code != 0 {
		t.Fatalf("sw-open exited with %d: %s", code, stderr)
	}
	if !strings.Contains(stdout.String(), `"port":`+strconv.Itoa(port)) {
		t.Errorf("stdout %q does not show the opened port", stdout.String())
	}
	if strings.Contains(stderr.String(), token) {
		t.Error("the token appears on stderr")
	}

	// The port carries bytes to the target through the tunnel.
	conn, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	_ = conn.(*net.TCPConn).CloseWrite()
	if got, err := io.ReadAll(conn); err != nil || string(got) != "ping" {
		t.Fatalf("through the tunnel: %q, %v", got, err)
	}

	// Asked again for the same mapping (a listener that restored the port
	// from its state file): done, not an error.
	stdout.Reset()
	if code := run(context.Background(), args, &stdout, stderr, env(map[string]string{envToken: token})); code != 0 {
		t.Fatalf("second sw-open exited with %d: %s", code, stderr)
	}
	// Another mapping on the same port is a conflict retrying will not fix.
	if code := run(context.Background(), argsFor("127.0.0.1:1"), io.Discard, stderr, env(map[string]string{envToken: token})); code != 1 {
		t.Fatalf("sw-open for a taken port exited with %d, want 1", code)
	}
}

func TestFinalRefusalsAndTimeout(t *testing.T) {
	f := startListener(t)
	args := []string{"-api", f.api, "-uid", "swc-1", "-port", strconv.Itoa(testutil.FreePort(t)),
		"-connect", "target:80", "-retry", "20ms"}

	stderr := &lockedBuffer{}
	code := run(context.Background(), append(args, "-timeout", "1m"), io.Discard, stderr, env(map[string]string{envToken: "wrong"}))
	if code != 1 || !strings.Contains(stderr.String(), "401") {
		t.Fatalf("wrong token: exit %d, stderr %s", code, stderr)
	}

	stderr = &lockedBuffer{}
	code = run(context.Background(), append(args, "-timeout", "200ms"), io.Discard, stderr, env(map[string]string{envToken: token}))
	if code != 1 || !strings.Contains(stderr.String(), "gave up") || !strings.Contains(stderr.String(), "uid is not connected") {
		t.Fatalf("connector never connects: exit %d, stderr %s", code, stderr)
	}

	for _, bad := range [][]string{
		{"-uid", "swc-1", "-port", "9000"},
		{"-uid", "swc-1", "-port", "0", "-connect", "a:1"},
		{"-port", "9000", "-connect", "a:1"},
		{"-uid", "swc-1", "-port", "9000", "-connect", "a"},
		{"-uid", "swc-1", "-port", "9000", "-connect", "a:1", "extra"},
	} {
		if code := run(context.Background(), bad, io.Discard, io.Discard, env(nil)); code != 2 {
			t.Errorf("sw-open %q exited with %d, want 2", bad, code)
		}
	}
}
