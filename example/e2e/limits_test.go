package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/shared/testutil"
)

// TestConnectionLimits: clients beyond SWL_MAX_CONNS_PER_PORT or
// SWL_MAX_CONNS_PER_UID are reset at once, logged and counted; once a
// connection ends there is room again.
func TestConnectionLimits(t *testing.T) {
	e := newEnv(t)
	cfg := e.listenerConfig()
	cfg.MaxConnsPerPort, cfg.MaxConnsPerUID = 2, 3
	rl := e.startListener(cfg)
	e.startConnector(e.connectorConfig("swc-1", rl.quicPort()))
	testutil.Eventually(t, "connector bound", func() bool { return rl.Connected("swc-1") })
	target := testutil.EchoServer(t)
	p1, p2 := rl.open(t, "swc-1", target), rl.open(t, "swc-1", target)

	held := dialPort(t, p1)
	echoOnce(t, held, "one")
	echoOnce(t, dialPort(t, p1), "two")
	if err := clientOutcome(p1); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("third client on port %d: %v, want connection reset", p1, err)
	}
	testutil.Eventually(t, "port limit logged", func() bool {
		return testutil.Logged(rl.logs, "tunnel refused", "reason", fmt.Sprintf("limit: 2 connections on port %d", p1))
	})

	echoOnce(t, dialPort(t, p2), "three for the uid")
	if err := clientOutcome(p2); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("fourth client of the uid: %v, want connection reset", err)
	}
	testutil.Eventually(t, "uid limit logged", func() bool {
		return testutil.Logged(rl.logs, "tunnel refused", "reason", "limit: 3 connections for uid swc-1")
	})
	if got := rl.Refused(); got.PortLimit != 1 || got.UIDLimit != 1 || got.NotConnected != 0 || got.ByConnector != 0 {
		t.Fatalf("Refused() = %+v, want one port limit and one uid limit", got)
	}

	finish(t, held)
	testutil.Eventually(t, "room on the port again", func() bool {
		c, err := tryDial(p1)
		if err != nil {
			return false
		}
		defer c.Close()
		return tryEcho(c, "room again") == nil
	})
}

// TestMaxPorts: /open beyond SWL_MAX_PORTS is refused with 409 and says
// why; closing a port makes room.
func TestMaxPorts(t *testing.T) {
	e := newEnv(t)
	cfg := e.listenerConfig()
	cfg.MaxPorts = 1
	rl := e.startListener(cfg)
	e.startConnector(e.connectorConfig("swc-1", rl.quicPort()))
	testutil.Eventually(t, "connector bound", func() bool { return rl.Connected("swc-1") })
	target := testutil.EchoServer(t)
	first := rl.open(t, "swc-1", target)

	port := testutil.FreePort(t)
	body := fmt.Sprintf(`{"uid":"swc-1","port":%d,"connect_address":"127.0.0.1","connect_port":%d}`, port, target.Port)
	r := call(t, http.MethodPost, rl.api+"/open", body)
	if msg := r.errorText(t); r.status != http.StatusConflict || !strings.Contains(msg, "too many open ports (limit 1, SWL_MAX_PORTS)") {
		t.Fatalf("open beyond the limit: %d %q", r.status, msg)
	}
	if r := call(t, http.MethodDelete, rl.api+"/close", fmt.Sprintf(`{"port":%d}`, first)); r.status != http.StatusOK {
		t.Fatalf("close: %d %s", r.status, r.body)
	}
	if r := call(t, http.MethodPost, rl.api+"/open", body); r.status != http.StatusOK {
		t.Fatalf("open after a close: %d %s", r.status, r.body)
	}
}

func tryDial(port int) (*net.TCPConn, error) {
	return net.DialTCP("tcp", nil, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
}

// tryEcho is echoOnce for polling: it reports instead of failing the test.
func tryEcho(c *net.TCPConn, b string) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(b)); err != nil {
		return err
	}
	got := make([]byte, len(b))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if string(got) != b {
		return fmt.Errorf("echo %q, want %q", got, b)
	}
	return nil
}
