package listener

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/listener/port"
	"github.com/socket-warp/socket-warp/shared/testutil"
	"github.com/socket-warp/socket-warp/shared/wire"
)

func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }

// safety bounds every blocking step so that a bug fails a test instead of
// hanging it. No test asserts anything about how long things take.
const safety = 30 * time.Second

type files struct {
	t             *testing.T
	pki           *testutil.PKI
	cert, key, ca string
}

func newFiles(t *testing.T) files {
	p := testutil.NewPKI(t)
	cert, key := p.ServerCert(t)
	return files{t: t, pki: p, cert: cert, key: key, ca: p.CAPath}
}

// config binds everything on 127.0.0.1 with ports the kernel picks, and
// keeps its state in a new directory each time.
func (f files) config() Config {
	return Config{
		CertPath: f.cert, KeyPath: f.key, CAPath: f.ca,
		Addrs: "127.0.0.1", Port: 0,
		KeepAlive: 50 * time.Second, IdleTimeout: 60 * time.Second, StreamOpenTimeout: 5 * time.Second,
		OpenAddrs: "127.0.0.1", APIAddrs: "127.0.0.1", APIPort: 0,
		LogLevel: "debug", LogFormat: "console",
		StatePath: filepath.Join(f.t.TempDir(), "state.db"),
	}
}

func TestNewNamesBrokenFiles(t *testing.T) {
	f := newFiles(t)
	dir := t.TempDir()
	noCert, noKey, noCA := filepath.Join(dir, "no.crt"), filepath.Join(dir, "no.key"), filepath.Join(dir, "no-ca.crt")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM at all\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	otherCert, _ := f.pki.ClientCert(t, "swc-1")
	for _, tc := range []struct {
		name          string
		cert, key, ca string
		want          []string
	}{
		{"missing certificate", noCert, f.key, f.ca, []string{"certificate " + noCert, "no such file"}},
		{"missing key", f.cert, noKey, f.ca, []string{"private key " + noKey, "no such file"}},
		{"missing CA", f.cert, f.key, noCA, []string{"CA certificate " + noCA, "no such file"}},
		{"CA without a certificate", f.cert, f.key, garbage, []string{"CA certificate " + garbage, "no PEM certificate"}},
		{"certificate is garbage", garbage, f.key, f.ca, []string{garbage, f.key}},
		{"key does not match", otherCert, f.key, f.ca, []string{otherCert, f.key, "does not match"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := f.config()
			cfg.CertPath, cfg.KeyPath, cfg.CAPath = tc.cert, tc.key, tc.ca
			l, err := New(cfg, zap.NewNop())
			if l != nil {
				t.Fatal("New returned a listener along with an error")
			}
			testutil.WantErr(t, err, tc.want...)
		})
	}

	cfg := f.config()
	cfg.Addrs = "not-an-ip"
	_, err := New(cfg, zap.NewNop())
	testutil.WantErr(t, err, "SWL_ADDRS")
}

// expectFree checks that New released a socket it bound before failing.
func expectFree(t *testing.T, network string, port int) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var err error
	if network == "udp" {
		var c net.PacketConn
		if c, err = net.ListenPacket("udp", addr); err == nil {
			c.Close()
		}
	} else {
		var ln net.Listener
		if ln, err = net.Listen("tcp", addr); err == nil {
			ln.Close()
		}
	}
	if err != nil {
		t.Fatalf("%s %s still bound after New failed: %v", network, addr, err)
	}
}

func TestNewPortInUse(t *testing.T) {
	f := newFiles(t)

	t.Run("udp", func(t *testing.T) {
		busy, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		cfg := f.config()
		cfg.Port = busy.LocalAddr().(*net.UDPAddr).Port
		_, err = New(cfg, zap.NewNop())
		testutil.WantErr(t, err, fmt.Sprintf("udp 127.0.0.1:%d", cfg.Port), "address already in use")
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("error %v does not wrap EADDRINUSE", err)
		}
	})

	t.Run("second QUIC address", func(t *testing.T) {
		// The first address binds, the second (the same again) cannot: the
		// first socket must be released.
		cfg := f.config()
		cfg.Addrs, cfg.Port = "127.0.0.1,127.0.0.1", testutil.FreeUDPPort(t)
		_, err := New(cfg, zap.NewNop())
		testutil.WantErr(t, err, fmt.Sprintf("udp 127.0.0.1:%d", cfg.Port), "address already in use")
		expectFree(t, "udp", cfg.Port)
	})

	t.Run("tcp API", func(t *testing.T) {
		busy := testutil.Listen(t)
		cfg := f.config()
		cfg.Port = testutil.FreeUDPPort(t)
		cfg.APIPort = busy.Addr().(*net.TCPAddr).Port
		_, err := New(cfg, zap.NewNop())
		testutil.WantErr(t, err, fmt.Sprintf("tcp 127.0.0.1:%d", cfg.APIPort), "address already in use")
		// The QUIC socket bound before the API failed is released too.
		expectFree(t, "udp", cfg.Port)
	})

	t.Run("second API address", func(t *testing.T) {
		cfg := f.config()
		cfg.Port = testutil.FreeUDPPort(t)
		cfg.APIAddrs, cfg.APIPort = "127.0.0.1,127.0.0.1", testutil.FreePort(t)
		_, err := New(cfg, zap.NewNop())
		testutil.WantErr(t, err, fmt.Sprintf("tcp 127.0.0.1:%d", cfg.APIPort), "address already in use")
		expectFree(t, "udp", cfg.Port)
		expectFree(t, "tcp", cfg.APIPort)
	})
}

// TestRunWithoutConnections: a listener that never saw a connector shuts
// down cleanly and releases its sockets.
func TestRunWithoutConnections(t *testing.T) {
	f := newFiles(t)
	cfg := f.config()
	cfg.Port, cfg.APIPort = testutil.FreeUDPPort(t), testutil.FreePort(t)
	l, err := New(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if got := l.QUICAddrs(); len(got) != 1 || got[0].(*net.UDPAddr).Port != cfg.Port {
		t.Fatalf("QUICAddrs = %v, want port %d", got, cfg.Port)
	}
	if got := l.APIAddrs(); len(got) != 1 || got[0].(*net.TCPAddr).Port != cfg.APIPort {
		t.Fatalf("APIAddrs = %v, want port %d", got, cfg.APIPort)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	cancel()
	waitRun(t, done)
	expectFree(t, "udp", cfg.Port)
	expectFree(t, "tcp", cfg.APIPort)
	if err := l.OpenPort(context.Background(), port.Spec{UID: "swc-1", Port: 1, ConnectAddress: "a", ConnectPort: 1}); !errors.Is(err, port.ErrNotConnected) {
		t.Fatalf("Open after Run: %v", err)
	}
}

// metricValue is the value of l's metric name with the given labels (as
// "k", "v", ...); 0 when there is no such sample.
func metricValue(t *testing.T, l *Listener, name string, labels ...string) float64 {
	t.Helper()
	v, _ := testutil.Gather(t, l.Metrics()).Value(name, labels...)
	return v
}

// connectorConn dials the listener as a connector with CN=uid and returns
// the connection; the test plays the connector's side of every stream.
func connectorConn(t *testing.T, f files, l *Listener, uid string) *quic.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), safety)
	defer cancel()
	return testutil.QUICDial(t, ctx, l.QUICAddrs()[0], f.pki.ClientTLS(t, uid), &quic.Config{MaxIncomingUniStreams: -1})
}

// TestStreamHeaderAndRefusal plays the connector: the listener sends the
// stream header with the client's address and the opened port, pipelines the
// client's first bytes behind it before any verdict, and turns a refusal
// (here "forbidden", which the real connector never sends) into a reset of
// the client, counted under the connector's verdict.
func TestStreamHeaderAndRefusal(t *testing.T) {
	f := newFiles(t)
	log, _ := testutil.Logger(t, "listener")
	l, err := New(f.config(), log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	conn := connectorConn(t, f, l, "swc-1")
	testutil.Eventually(t, "connector bound", func() bool { return l.Connected("swc-1") })
	number := testutil.FreePort(t)
	spec := port.Spec{UID: "swc-1", Port: number, ConnectAddress: "db.internal", ConnectPort: 5432}
	if err := l.OpenPort(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if got := l.List(); len(got) != 1 || got[0] != spec {
		t.Fatalf("List = %+v, want [%+v]", got, spec)
	}

	client, err := net.DialTCP("tcp", nil, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: number})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	client.SetDeadline(time.Now().Add(safety))
	if _, err := client.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}

	actx, acancel := context.WithTimeout(ctx, safety)
	defer acancel()
	st, err := conn.AcceptStream(actx)
	if err != nil {
		t.Fatal(err)
	}
	st.SetDeadline(time.Now().Add(safety))
	hdr, err := wire.ReadHeader(st)
	if err != nil {
		t.Fatal(err)
	}
	want := wire.Header{TargetHost: "db.internal", TargetPort: 5432, ClientAddr: client.LocalAddr().String(), OpenedPort: uint16(number)}
	if hdr != want {
		t.Fatalf("stream header %+v, want %+v", hdr, want)
	}
	first := make([]byte, 5)
	if _, err := io.ReadFull(st, first); err != nil || string(first) != "hello" {
		t.Fatalf("pipelined client bytes: %q, %v", first, err)
	}

	if _, err := st.Write(wire.AppendVerdict(nil, wire.VerdictForbidden, "target not in policy")); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if _, err := io.ReadAll(client); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client after a refusal: %v, want connection reset", err)
	}
	testutil.Eventually(t, "the connector's verdict counted", func() bool {
		return metricValue(t, l, "socketwarp_listener_tunnel_connections_total", "outcome", "forbidden") == 1
	})

	if _, err := l.ClosePort(ctx, number); err != nil {
		t.Fatal(err)
	}
	if _, err := l.ClosePort(ctx, number); !errors.Is(err, port.ErrNotOpen) {
		t.Fatalf("second ClosePort: %v, want %v", err, port.ErrNotOpen)
	}
	if got := l.List(); len(got) != 0 {
		t.Fatalf("List after ClosePort = %+v", got)
	}
}

// TestPprof: SWL_PPROF_ADDR serves the goroutine profile while the listener
// runs and is released with everything else; a taken address stops New.
func TestPprof(t *testing.T) {
	f := newFiles(t)
	cfg := f.config()
	cfg.PprofAddr = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	l, err := New(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	second := cfg
	second.StatePath = filepath.Join(t.TempDir(), "state.db") // the first holds cfg's locked
	if _, err := New(second, zap.NewNop()); err == nil {
		t.Fatal("a second listener bound the same pprof address")
	} else {
		testutil.WantErr(t, err, "listen for pprof on tcp "+cfg.PprofAddr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	resp, err := http.Get("http://" + cfg.PprofAddr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "goroutine profile: total ") {
		t.Fatalf("goroutine profile: %d %.60q", resp.StatusCode, body)
	}
	cancel()
	waitRun(t, done)
	_, port, _ := net.SplitHostPort(cfg.PprofAddr)
	n, _ := strconv.Atoi(port)
	expectFree(t, "tcp", n)
}

// An API client that connects and never sends a request must not outlive
// Run: http.Server.Shutdown leaves such a connection alone until it is 5 s
// old, and its goroutine would then live on until ReadHeaderTimeout.
func TestRunEndsSilentAPIConnections(t *testing.T) {
	before := goleak.IgnoreCurrent()
	f := newFiles(t)
	cfg := f.config()
	l, err := New(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	api := l.APIAddrs()[0].String()
	silent, err := net.Dial("tcp", api)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	// Answered on a connection queued behind the silent one: by then the
	// server has accepted the silent one too.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: safety}
	resp, err := client.Get("http://" + api + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	waitRun(t, done)
	if err := goleak.Find(before); err != nil {
		t.Fatalf("Run returned with a goroutine of the API still running: %v", err)
	}
}

// waitRun waits for Run, started with its result sent to done, to return
// nil after its context was cancelled.
func waitRun(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(safety):
		t.Fatal("Run did not return after cancel")
	}
}
