package process

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// echoThrough sends msg through the opened port and returns the reply.
func echoThrough(t *testing.T, port int, msg string) string {
	t.Helper()
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	conn.Write([]byte(msg))
	conn.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(conn)
	return string(got)
}

// TestConnectorKilledAndRestarted: kill -9 leaves the listener holding a
// connection nobody answers. The restarted connector is not refused as a
// duplicate until the idle timeout: the listener probes the old connection,
// replaces it, and the opened port works again.
func TestConnectorKilledAndRestarted(t *testing.T) {
	s := newSetup(t)
	l := start(t, "sw-listener", s.listenerEnv()...)
	l.waitFor(t, "api listening")
	c := start(t, "sw-connector", s.connectorEnv()...)
	l.waitFor(t, "connector connected")

	port := s.openEcho(t)
	if got := echoThrough(t, port, "before"); got != "before" {
		t.Fatalf("before the kill: %q", got)
	}

	c.cmd.Process.Kill() // SIGKILL: no goodbye
	c.exit(t)
	start(t, "sw-connector", s.connectorEnv()...)
	l.waitFor(t, "stale connection replaced")
	if got := echoThrough(t, port, "after"); got != "after" {
		t.Fatalf("after the restart: %q", got)
	}
	if strings.Contains(l.output(), "already connected") {
		t.Fatal("the restarted connector was refused as a duplicate")
	}
}
