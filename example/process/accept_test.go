package process

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/socket-warp/socket-warp/shared/testutil"
)

// openFiles counts the descriptors process pid has open.
func openFiles(t *testing.T, pid int) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// TestAcceptSurvivesRunningOutOfDescriptors: sw-listener under a low
// RLIMIT_NOFILE runs out of descriptors when more clients connect than it
// may hold. accept(2) then fails with EMFILE; the port must not stop
// accepting for good: once the clients leave, the connections waiting in
// the backlog are accepted and every later client is tunnelled.
func TestAcceptSurvivesRunningOutOfDescriptors(t *testing.T) {
	const limit, clients = 64, 150
	s := newSetup(t)
	bin := filepath.Join(binDir, "sw-listener")
	l := startCmd(t, "sw-listener", exec.Command("sh", "-c", fmt.Sprintf(`ulimit -n %d && exec "$0"`, limit), bin), s.listenerEnv()...)
	l.waitFor(t, "api listening")
	start(t, "sw-connector", s.connectorEnv()...)
	l.waitFor(t, "connector connected")
	port := s.openEcho(t)
	if got := echoThrough(t, port, "before"); got != "before" {
		t.Fatalf("echo before: %q", got)
	}

	// More clients than the listener may hold descriptors: the kernel
	// completes their handshakes into the backlog whatever the listener
	// does, and the listener accepts until it has none left.
	held := make([]net.Conn, 0, clients)
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range clients {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	pid := l.cmd.Process.Pid
	testutil.Eventually(t, "the listener out of descriptors", func() bool { return openFiles(t, pid) >= limit })
	for _, c := range held {
		c.Close()
	}
	held = held[:0]

	// The port accepts again: what waited in the backlog, then every new
	// client, each tunnelled.
	for i := range 20 {
		msg := fmt.Sprintf("after %d", i)
		if got := echoThrough(t, port, msg); got != msg {
			t.Fatalf("client %d after the clients left: %q, want %q", i, got, msg)
		}
	}
	m := testutil.Scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", s.apiPort), "")
	if v, _ := m.Value("socketwarp_listener_accept_errors_total", "kind", "temporary"); v == 0 {
		t.Errorf("no temporary accept error counted, so the test did not run out of descriptors:\n%s", m)
	}
	if v, _ := m.Value("socketwarp_listener_ports"); v != 1 {
		t.Errorf("socketwarp_listener_ports = %v, want 1", v)
	}
}
