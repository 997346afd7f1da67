package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest/observer"

	"github.com/socket-warp/socket-warp/connector"
	"github.com/socket-warp/socket-warp/listener"
	"github.com/socket-warp/socket-warp/shared/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }

type runningListener struct {
	*listener.Listener
	cfg    listener.Config
	logs   *observer.ObservedLogs // printed if the test fails
	api    string                 // http://127.0.0.1:port
	cancel context.CancelFunc
	done   chan error
}

type env struct {
	t                     *testing.T
	pki                   *testutil.PKI // nil when a SCEP CA issues the certificates
	serverCert, serverKey string
	caPath                string
}

func newEnv(t *testing.T) *env {
	p := testutil.NewPKI(t)
	cert, key := p.ServerCert(t)
	return &env{t: t, pki: p, serverCert: cert, serverKey: key, caPath: p.CAPath}
}

func (e *env) listenerConfig() listener.Config {
	return listener.Config{
		CertPath: e.serverCert, KeyPath: e.serverKey, CAPath: e.caPath,
		Addrs: "127.0.0.1", Port: 0,
		KeepAlive: 50 * time.Second, IdleTimeout: 60 * time.Second, StreamOpenTimeout: 5 * time.Second,
		OpenAddrs: "127.0.0.1", APIAddrs: "127.0.0.1", APIPort: 0,
		LogLevel: "debug", LogFormat: "console",
		StatePath: filepath.Join(e.t.TempDir(), "state.db"),
	}
}

func (e *env) startListener(cfg listener.Config) *runningListener {
	e.t.Helper()
	log, obs := testutil.Logger(e.t, "listener")
	l, err := listener.New(cfg, log)
	if err != nil {
		e.t.Fatalf("listener.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rl := &runningListener{Listener: l, cfg: cfg, logs: obs, cancel: cancel, done: make(chan error, 1),
		api: "http://" + l.APIAddrs()[0].String()}
	go func() { rl.done <- l.Run(ctx) }()
	e.t.Cleanup(rl.stop)
	return rl
}

func (rl *runningListener) stop() {
	rl.cancel()
	<-rl.done
	rl.done <- nil // a second stop returns at once
}

func (rl *runningListener) quicPort() int { return rl.QUICAddrs()[0].(*net.UDPAddr).Port }

type runningConnector struct {
	*connector.Connector
	logs   *observer.ObservedLogs // printed if the test fails
	cancel context.CancelFunc
	done   chan struct{}
}

func (e *env) connectorConfig(uid string, quicPort int) connector.Config {
	cert, key := e.pki.ClientCert(e.t, uid)
	c := connector.Defaults()
	c.ClientCertPath, c.ClientKeyPath, c.CACertPath = cert, key, e.pki.CAPath
	c.ServerName, c.ServerAddress, c.ServicePort = "localhost", "127.0.0.1", quicPort
	c.RetryMin, c.RetryMax = connector.Duration(20*time.Millisecond), connector.Duration(200*time.Millisecond)
	return c
}

func (e *env) startConnector(cfg connector.Config) *runningConnector {
	e.t.Helper()
	log, obs := testutil.Logger(e.t, "connector")
	c, err := connector.New(cfg, log)
	if err != nil {
		e.t.Fatalf("connector.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rc := &runningConnector{Connector: c, logs: obs, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(rc.done); c.Run(ctx) }()
	e.t.Cleanup(rc.stop)
	return rc
}

func (rc *runningConnector) stop() {
	rc.cancel()
	<-rc.done
}

// setup starts a listener, one connector for uid and waits until it is bound.
func setup(t *testing.T, uid string) (*env, *runningListener, *runningConnector) {
	e := newEnv(t)
	rl := e.startListener(e.listenerConfig())
	rc := e.startConnector(e.connectorConfig(uid, rl.quicPort()))
	testutil.Eventually(t, "connector "+uid+" bound", func() bool { return rl.Connected(uid) })
	return e, rl, rc
}

type apiResult struct {
	status int
	body   string
}

func (r apiResult) errorText(t *testing.T) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(r.body), &e); err != nil || e.Error == "" {
		t.Fatalf("error body %q is not {\"error\": ...}", r.body)
	}
	return e.Error
}

func call(t *testing.T, method, url, body string) apiResult {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("%s %s: Content-Type %q, want JSON (body %q)", method, url, ct, b)
	}
	return apiResult{resp.StatusCode, string(bytes.TrimSpace(b))}
}

// open opens a port for uid to target and fails the test unless it worked.
func (rl *runningListener) open(t *testing.T, uid string, target *net.TCPAddr) int {
	t.Helper()
	port := testutil.FreePort(t)
	body := fmt.Sprintf(`{"uid":%q,"port":%d,"connect_address":%q,"connect_port":%d}`, uid, port, target.IP.String(), target.Port)
	if r := call(t, http.MethodPost, rl.api+"/open", body); r.status != http.StatusOK {
		t.Fatalf("open: %d %s", r.status, r.body)
	}
	return port
}

func dialPort(t *testing.T, port int) *net.TCPConn {
	t.Helper()
	c, err := net.DialTCP("tcp", nil, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatalf("dial port %d: %v", port, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
