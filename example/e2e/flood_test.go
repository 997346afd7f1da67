package e2e

import (
	"io"
	"math"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest/observer"

	"github.com/socket-warp/socket-warp/shared/logging"
	"github.com/socket-warp/socket-warp/shared/testutil"
)

// floodBound is the most lines a daemon may log while n lines of each of
// messages kinds are logged over elapsed: per message, logging.Flood lets
// FloodFirst through in each second the flood spans (a sampler's second
// starts with its first line, so elapsed spans at most ⌈elapsed⌉+1 of
// them), then one in FloodThereafter; plus a few lines of anything else
// (a daemon saying it listens, or is connected, as the test starts).
func floodBound(messages, n int, elapsed time.Duration) int {
	seconds := int(math.Ceil(elapsed.Seconds())) + 1
	return messages*(logging.FloodFirst*seconds+n/logging.FloodThereafter+1) + 5
}

// linesSince counts the entries logs got after the first skip.
func linesSince(logs *observer.ObservedLogs, skip int) (int, map[string]int) {
	all := logs.All()[skip:]
	by := map[string]int{}
	for _, e := range all {
		by[e.Message]++
	}
	return len(all), by
}

// TestAPIRefusalFloodSampled: one client without the token sends 2,000
// requests. Each is refused and counted; the listener's log keeps a sample.
func TestAPIRefusalFloodSampled(t *testing.T) {
	e := newEnv(t)
	cfg := e.listenerConfig()
	cfg.APIToken = "swl-flood-test-token"
	rl := e.startListener(cfg)
	const n = 2000
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	skip := rl.logs.Len()
	start := time.Now()
	for range n {
		resp, err := client.Get(rl.api + "/list")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("GET /list without the token: %d", resp.StatusCode)
		}
	}
	lines, by := linesSince(rl.logs, skip)
	elapsed := time.Since(start)
	if bound := floodBound(1, n, elapsed); lines > bound || by["api request refused"] == 0 {
		t.Errorf("%d refused requests in %v logged %d lines %v, want 1 to %d", n, elapsed, lines, by, bound)
	}
	m := testutil.Scrape(t, rl.api+"/metrics", string(cfg.APIToken))
	if got, _ := m.Value("socketwarp_listener_api_refusals_total", "reason", "token"); got != n {
		t.Errorf("api refusals counted %v, want %d", got, n)
	}
}

// TestRefusedTargetFloodSampled: clients loop on an opened port whose target
// refuses every connection. Each client is reset and counted by both
// daemons; their logs keep a sample.
func TestRefusedTargetFloodSampled(t *testing.T) {
	e := newEnv(t)
	rl := e.startListener(e.listenerConfig())
	ccfg := e.connectorConfig("swc-1", rl.quicPort())
	ccfg.MetricsAddr = "127.0.0.1:0"
	rc := e.startConnector(ccfg)
	testutil.Eventually(t, "connector bound", func() bool { return rl.Connected("swc-1") })
	closed := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: testutil.FreePort(t)}
	port := rl.open(t, "swc-1", closed)

	const n, workers = 2000, 4
	skipL, skipC := rl.logs.Len(), rc.logs.Len()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range n / workers {
				if err := clientOutcome(port); err == nil {
					errs <- io.ErrUnexpectedEOF // a clean end: not reset
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("a client of a port whose target refuses was not reset: %v", err)
	}
	// Every client has been reset, so each has been logged or dropped
	// by now on both sides: the listener resets it after the verdict,
	// which the connector sends after it has logged.
	// Each client is counted before its line is logged (or dropped).
	cm := func() testutil.Metrics { return testutil.Scrape(t, "http://"+rc.MetricsAddr().String()+"/metrics", "") }
	testutil.Eventually(t, "both daemons count every client", func() bool {
		lm := testutil.Scrape(t, rl.api+"/metrics", "")
		listener, _ := lm.Value("socketwarp_listener_tunnel_connections_total", "outcome", "dial_failed")
		connector, _ := cm().Value("socketwarp_connector_streams_total", "outcome", "dial_failed")
		return rl.Refused().ByConnector == n && listener == n && connector == n
	})
	if got, _ := cm().Value("socketwarp_connector_dial_failures_total", "target", closed.String()); got != n {
		t.Errorf("connector counts %v dial failures of %s, want %d", got, closed, n)
	}

	// Listener: "tunnel opened", then "tunnel refused by connector".
	// Connector: "stream refused".
	linesL, byL := linesSince(rl.logs, skipL)
	linesC, byC := linesSince(rc.logs, skipC)
	elapsed := time.Since(start)
	if bound := floodBound(2, n, elapsed); linesL > bound || byL["tunnel refused by connector"] == 0 {
		t.Errorf("listener: %d clients in %v logged %d lines %v, want 1 to %d", n, elapsed, linesL, byL, bound)
	}
	if bound := floodBound(1, n, elapsed); linesC > bound || byC["stream refused"] == 0 {
		t.Errorf("connector: %d clients in %v logged %d lines %v, want 1 to %d", n, elapsed, linesC, byC, bound)
	}
}

// TestTunnelFloodSampled: clients loop on an opened port whose target
// answers. Each tunnel is counted by both daemons; their logs keep a sample
// of the lines each tunnel causes.
func TestTunnelFloodSampled(t *testing.T) {
	e := newEnv(t)
	rl := e.startListener(e.listenerConfig())
	ccfg := e.connectorConfig("swc-1", rl.quicPort())
	ccfg.MetricsAddr = "127.0.0.1:0"
	rc := e.startConnector(ccfg)
	testutil.Eventually(t, "connector bound", func() bool { return rl.Connected("swc-1") })
	port := rl.open(t, "swc-1", testutil.EchoServer(t))

	const n, workers = 1000, 4
	skipL, skipC := rl.logs.Len(), rc.logs.Len()
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range n / workers {
				c, err := net.DialTCP("tcp", nil, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
				if err != nil {
					t.Error(err)
					return
				}
				if got := roundTrip(t, c, []byte("hi")); string(got) != "hi" {
					t.Errorf("echo %q", got)
				}
				c.Close()
			}
		})
	}
	wg.Wait()
	cm := func() testutil.Metrics { return testutil.Scrape(t, "http://"+rc.MetricsAddr().String()+"/metrics", "") }
	testutil.Eventually(t, "both daemons count every tunnel, closed", func() bool {
		lm := testutil.Scrape(t, rl.api+"/metrics", "")
		ok, _ := lm.Value("socketwarp_listener_tunnel_connections_total", "outcome", "ok")
		active, _ := lm.Value("socketwarp_listener_tunnels", "uid", "swc-1", "port", itoa(port))
		streams, _ := cm().Value("socketwarp_connector_streams_total", "outcome", "ok")
		open, _ := cm().Value("socketwarp_connector_streams")
		return ok == n && active == 0 && streams == n && open == 0
	})
	// Each side: "tunnel opened", "tunnel closed".
	linesL, byL := linesSince(rl.logs, skipL)
	linesC, byC := linesSince(rc.logs, skipC)
	elapsed := time.Since(start)
	for _, side := range []struct {
		name  string
		lines int
		by    map[string]int
	}{{"listener", linesL, byL}, {"connector", linesC, byC}} {
		lines, by := side.lines, side.by
		if bound := floodBound(2, n, elapsed); lines > bound || by["tunnel closed"] == 0 {
			t.Errorf("%s: %d tunnels in %v logged %d lines %v, want 1 to %d", side.name, n, elapsed, lines, by, bound)
		}
	}
}
