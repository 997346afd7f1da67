package e2e

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/connector"
	"github.com/socket-warp/socket-warp/shared/testutil"
)

// echoOnce sends b through a tunnel to an echo server and reads it back,
// leaving the connection open.
func echoOnce(t *testing.T, c *net.TCPConn, b string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte(b)); err != nil {
		t.Fatalf("write %q: %v", b, err)
	}
	got := make([]byte, len(b))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != b {
		t.Fatalf("echo: %q, %v; want %q", got, err, b)
	}
}

// finish half-closes c and expects the tunnel to end cleanly.
func finish(t *testing.T, c *net.TCPConn) {
	t.Helper()
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Fatalf("end of the tunnel: %q, %v; want a clean end", rest, err)
	}
}

func (rl *runningListener) waitRun(t *testing.T) {
	t.Helper()
	select {
	case err := <-rl.done:
		rl.done <- err
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("listener Run did not return")
	}
}

func (rc *runningConnector) waitRun(t *testing.T) {
	t.Helper()
	select {
	case <-rc.done:
	case <-time.After(30 * time.Second):
		t.Fatal("connector Run did not return")
	}
}

// TestListenerShutdownDrainsTunnel: SIGTERM on the listener. Its ports take
// no new client, a tunnel in flight keeps carrying data to its end, Run
// returns then (well before the drain timeout), and the connector is told
// to go away.
func TestListenerShutdownDrainsTunnel(t *testing.T) {
	e := newEnv(t)
	cfg := e.listenerConfig()
	cfg.DrainTimeout = time.Minute
	rl := e.startListener(cfg)
	rc := e.startConnector(e.connectorConfig("swc-1", rl.quicPort()))
	testutil.Eventually(t, "connector bound", func() bool { return rl.Connected("swc-1") })
	port := rl.open(t, "swc-1", testutil.EchoServer(t))
	c := dialPort(t, port)
	echoOnce(t, c, "before")

	rl.cancel()
	testutil.Eventually(t, "listener draining", func() bool { return testutil.Logged(rl.logs, "draining", "tunnels", "1") })
	if nc, err := net.DialTCP("tcp", nil, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); !errors.Is(err, syscall.ECONNREFUSED) {
		if nc != nil {
			nc.Close()
		}
		t.Fatalf("a new client while draining: %v, want connection refused", err)
	}
	echoOnce(t, c, "during the drain")
	finish(t, c)

	rl.waitRun(t)
	if len(rl.logs.FilterMessage("drained").All()) != 1 {
		t.Error(`listener did not log "drained"`)
	}
	testutil.Eventually(t, "connector told to go away", func() bool {
		return testutil.Logged(rc.logs, "connection lost", "reason", "going away")
	})
}

// TestListenerShutdownDrainTimeout: a tunnel that never ends is cut at the
// drain timeout, and the connector is told to go away.
func TestListenerShutdownDrainTimeout(t *testing.T) {
	e := newEnv(t)
	cfg := e.listenerConfig()
	cfg.DrainTimeout = 100 * time.Millisecond
	rl := e.startListener(cfg)
	rc := e.startConnector(e.connectorConfig("swc-1", rl.quicPort()))
	testutil.Eventually(t, "connector bound", func() bool { return rl.Connected("swc-1") })
	c := dialPort(t, rl.open(t, "swc-1", testutil.EchoServer(t)))
	echoOnce(t, c, "never ends")

	rl.cancel()
	rl.waitRun(t)
	if !testutil.Logged(rl.logs, "drain timeout, closing tunnels", "tunnels", "1") {
		t.Error("drain timeout not logged with the tunnel count")
	}
	if _, err := io.ReadAll(c); err == nil {
		t.Error("the tunnel ended cleanly, want it cut")
	}
	testutil.Eventually(t, "connector told to go away", func() bool {
		return testutil.Logged(rc.logs, "connection lost", "reason", "going away")
	})
}

// TestConnectorShutdownDrainsTunnel: SIGTERM on the connector. New clients
// are refused at once (the first by the connector, the next by the listener
// without a stream), the tunnel in flight runs to its end, and then the
// connector closes with "going away".
func TestConnectorShutdownDrainsTunnel(t *testing.T) {
	e := newEnv(t)
	rl := e.startListener(e.listenerConfig())
	ccfg := e.connectorConfig("swc-1", rl.quicPort())
	ccfg.DrainTimeout = connector.Duration(time.Minute)
	rc := e.startConnector(ccfg)
	testutil.Eventually(t, "connector bound", func() bool { return rl.Connected("swc-1") })
	port := rl.open(t, "swc-1", testutil.EchoServer(t))
	c := dialPort(t, port)
	echoOnce(t, c, "before")

	rc.cancel()
	testutil.Eventually(t, "connector draining", func() bool { return testutil.Logged(rc.logs, "draining", "tunnels", "1") })
	if err := clientOutcome(port); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("a new client while the connector drains: %v, want connection reset", err)
	}
	testutil.Eventually(t, "listener logs the connector's refusal", func() bool {
		return testutil.Logged(rl.logs, "tunnel refused by connector", "reason", "going away")
	})
	if err := clientOutcome(port); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the next client: %v, want connection reset", err)
	}
	testutil.Eventually(t, "listener refuses without asking", func() bool {
		return testutil.Logged(rl.logs, "tunnel refused", "reason", "connector going away")
	})

	echoOnce(t, c, "during the drain")
	finish(t, c)
	rc.waitRun(t)
	if len(rc.logs.FilterMessage("drained").All()) != 1 {
		t.Error(`connector did not log "drained"`)
	}
	testutil.Eventually(t, "listener sees the connector go away", func() bool {
		return testutil.Logged(rl.logs, "connector disconnected", "reason", "going away")
	})
	if rl.Connected("swc-1") {
		t.Fatal("swc-1 still bound after its connector left")
	}
}

// TestConnectorRollingRestart: the old connector drains while the new one
// (same certificate) starts. The listener binds the new one at once, new
// clients go to it, and the old one's tunnel finishes undisturbed.
func TestConnectorRollingRestart(t *testing.T) {
	e := newEnv(t)
	rl := e.startListener(e.listenerConfig())
	ccfg := e.connectorConfig("swc-1", rl.quicPort())
	ccfg.DrainTimeout = connector.Duration(time.Minute)
	old := e.startConnector(ccfg)
	testutil.Eventually(t, "connector bound", func() bool { return rl.Connected("swc-1") })
	port := rl.open(t, "swc-1", testutil.EchoServer(t))
	c := dialPort(t, port)
	echoOnce(t, c, "before")

	old.cancel()
	testutil.Eventually(t, "old connector draining", func() bool { return testutil.Logged(old.logs, "draining", "tunnels", "1") })
	next := e.startConnector(ccfg)
	testutil.Eventually(t, "new connector bound", func() bool {
		return testutil.Logged(rl.logs, "draining connection replaced", "reason", "going away")
	})
	if got := roundTrip(t, dialPort(t, port), []byte("to the new one")); string(got) != "to the new one" {
		t.Fatalf("a new client: %q", got)
	}
	if len(next.logs.FilterMessage("tunnel opened").All()) != 1 {
		t.Fatal("the new client did not go through the new connector")
	}

	echoOnce(t, c, "the old one finishes")
	finish(t, c)
	old.waitRun(t)
	testutil.Eventually(t, "old connection's end logged", func() bool {
		return testutil.Logged(rl.logs, "connector disconnected", "reason", "going away")
	})
	if got := roundTrip(t, dialPort(t, port), []byte("still the new one")); string(got) != "still the new one" {
		t.Fatalf("after the old connector left: %q", got)
	}
}
