package e2e

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/shared/testutil"
)

// TestConnectorGoneAndBack: the connector's packets stop (a vanished host or
// a NAT that lost its mapping). The listener notices within its idle timeout,
// its ports refuse new clients at once, and when the connector is back the
// same ports work again without a new /open.
func TestConnectorGoneAndBack(t *testing.T) {
	e := newEnv(t)
	lcfg := e.listenerConfig()
	lcfg.KeepAlive, lcfg.IdleTimeout = 200*time.Millisecond, 1*time.Second
	rl := e.startListener(lcfg)
	proxy := testutil.NewUDPProxy(t, rl.QUICAddrs()[0].(*net.UDPAddr))
	ccfg := e.connectorConfig("swc-1", proxy.Addr().Port)
	e.startConnector(ccfg)
	testutil.Eventually(t, "connector bound", func() bool { return rl.Connected("swc-1") })
	port := rl.open(t, "swc-1", testutil.EchoServer(t))
	if got := roundTrip(t, dialPort(t, port), []byte("before")); string(got) != "before" {
		t.Fatalf("before: %q", got)
	}

	proxy.Blackhole(true)
	testutil.Eventually(t, "listener notices the connector is gone", func() bool { return !rl.Connected("swc-1") })
	if !testutil.Logged(rl.logs, "connector disconnected", "reason", "idle timeout") {
		t.Error("listener did not log the idle timeout")
	}

	// The port is still open, but refuses: a reset, not a hang.
	if err := clientOutcome(port); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client on a port without connector: %v, want connection reset", err)
	}
	// The reset goes out before the log line is written.
	testutil.Eventually(t, "listener logs why it refused the client", func() bool {
		return testutil.Logged(rl.logs, "tunnel refused", "reason", "connector not connected")
	})

	proxy.Blackhole(false)
	testutil.Eventually(t, "connector back", func() bool { return rl.Connected("swc-1") })
	if got := roundTrip(t, dialPort(t, port), []byte("after")); string(got) != "after" {
		t.Fatalf("after: %q", got)
	}
}

// clientOutcome connects, sends a little and reads to the end, and returns
// the first error. Linux reports a reset to one call only: the connect, the
// write or the read, whichever the RST reaches first.
func clientOutcome(port int) error {
	c, err := net.DialTCP("tcp", nil, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("hello")); err != nil {
		return err
	}
	_, err = io.ReadAll(c)
	return err
}

// TestListenerRestartConnectorReconnects: the listener stops and a new one
// starts on the same address; the connector comes back on its own.
func TestListenerRestartConnectorReconnects(t *testing.T) {
	e := newEnv(t)
	cfg := e.listenerConfig()
	first := e.startListener(cfg)
	rc := e.startConnector(e.connectorConfig("swc-1", first.quicPort()))
	testutil.Eventually(t, "connector bound", func() bool { return first.Connected("swc-1") })

	cfg.Port = first.quicPort()
	first.stop()
	testutil.Eventually(t, "connector sees the listener going away", func() bool {
		return testutil.Logged(rc.logs, "connection lost", "reason", "going away")
	})

	second := e.startListener(cfg)
	testutil.Eventually(t, "connector bound to the new listener", func() bool { return second.Connected("swc-1") })
	port := second.open(t, "swc-1", testutil.EchoServer(t))
	if got := roundTrip(t, dialPort(t, port), []byte("again")); string(got) != "again" {
		t.Fatalf("through the restarted listener: %q", got)
	}
}
