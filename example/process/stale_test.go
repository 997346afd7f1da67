package process

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/shared/testutil"
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
	l := start(t, "sw-listener", append(s.listenerEnv(), "SWL_STATE_PATH="+filepath.Join(t.TempDir(), "state.db"))...)
	l.waitFor(t, "api listening")
	c := start(t, "sw-connector", s.connectorEnv()...)
	l.waitFor(t, "connector connected")

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
