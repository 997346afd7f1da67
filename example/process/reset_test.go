package process

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/shared/testutil"
)

// TestListenerKilledAndRestarted: a listener killed with -9 says nothing to
// its connectors. Restarted on the same state file and ports, it answers the
// connector's next packet for the old connection with a stateless reset
// (its reset key survives in the state directory), and the connector, with
// its default settings, reconnects at once instead of waiting for its idle
// timeout. The opened port, restored from the state file, carries data again.
func TestListenerKilledAndRestarted(t *testing.T) {
	s := newSetup(t)
	l := start(t, "sw-listener", s.listenerEnv()...)
	l.waitFor(t, "api listening")
	metricsPort := testutil.FreePort(t)
	start(t, "sw-connector", append(withoutRetrySettings(s.connectorEnv()),
		fmt.Sprintf("SWC_METRICS_ADDR=127.0.0.1:%d", metricsPort))...)
	l.waitFor(t, "connector connected")
	port := s.openEcho(t)
	if got := echoThrough(t, port, "before"); got != "before" {
		t.Fatalf("before the kill: %q", got)
	}
	key := s.statePath + ".reset-key"
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != 32 {
		t.Fatalf("stateless reset key beside the state file: %v %v", fi, err)
	}

	l.cmd.Process.Kill() // SIGKILL: no CONNECTION_CLOSE, no goodbye
	l.exit(t)
	killed := time.Now()
	l = start(t, "sw-listener", s.listenerEnv()...)
	// waitFor's own bound (20 s) is the failure guard: without a reset
	// the connector only notices at its idle timeout, a minute later.
	l.waitFor(t, "port restored", "connector connected")
	if got := echoThrough(t, port, "after"); got != "after" {
		t.Fatalf("after the restart: %q", got)
	}
	t.Logf("kill -9 and restart: the opened port carried data again %s after the kill",
		time.Since(killed).Round(10*time.Millisecond))

	m := testutil.Scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort), "")
	if n, _ := m.Value("socketwarp_connector_reconnects_total", "reason", "stateless_reset"); n != 1 {
		t.Fatalf("reconnects after a stateless reset: %v, want 1\n%s", n, m)
	}
}

// withoutRetrySettings drops the short reconnect delays connectorEnv sets, so
// that the connector runs with its defaults.
func withoutRetrySettings(env []string) []string {
	var out []string
	for _, e := range env {
		if !strings.HasPrefix(e, "SWC_RETRY_") {
			out = append(out, e)
		}
	}
	return out
}
