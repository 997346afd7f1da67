package e2e

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/shared/testutil"
)

// echoChunk writes n bytes through c and reads the echo back, the tunnel
// staying open.
func echoChunk(t *testing.T, c *net.TCPConn, n int) {
	t.Helper()
	payload := testutil.RandomBytes(t, n)
	errc := make(chan error, 1)
	go func() { _, err := c.Write(payload); errc <- err }()
	if _, err := io.ReadFull(c, make([]byte, n)); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
	}
	return resp.StatusCode
}

// A scrape during a transfer shows the tunnel and its bytes growing, on the
// listener (on the API) and on the connector (SWC_METRICS_ADDR); so do
// /connections and /list.
func TestMetricsDuringTransfer(t *testing.T) {
	e := newEnv(t)
	rl := e.startListener(e.listenerConfig())
	ccfg := e.connectorConfig("swc-1", rl.quicPort())
	ccfg.MetricsAddr = "127.0.0.1:0"
	rc := e.startConnector(ccfg)
	connMetrics := "http://" + rc.MetricsAddr().String()
	testutil.Eventually(t, "connector bound", func() bool { return rl.Connected("swc-1") })
	testutil.Eventually(t, "connector ready", func() bool { return getJSON(t, connMetrics+"/readyz", nil) == http.StatusOK })

	port := rl.open(t, "swc-1", testutil.EchoServer(t))
	portLabel := strconv.Itoa(port)
	client := dialPort(t, port)
	const chunk = 64 << 10
	echoChunk(t, client, chunk)

	value := func(m testutil.Metrics, name string, labels ...string) float64 {
		t.Helper()
		v, ok := m.Value(name, labels...)
		if !ok {
			t.Fatalf("%s%v missing from the scrape:\n%s", name, labels, m)
		}
		return v
	}
	var lm testutil.Metrics
	testutil.Eventually(t, "listener counts the first chunk", func() bool {
		lm = testutil.Scrape(t, rl.api+"/metrics", "")
		return value(lm, "socketwarp_listener_tunnel_bytes_total", "uid", "swc-1", "port", portLabel, "direction", "down") >= chunk
	})
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"socketwarp_listener_connectors", nil, 1},
		{"socketwarp_listener_ports", nil, 1},
		{"socketwarp_listener_tunnels", []string{"uid", "swc-1", "port", portLabel}, 1},
		{"socketwarp_listener_tunnel_connections_total", []string{"outcome", "ok"}, 1},
		{"socketwarp_listener_tunnel_connections_total", []string{"outcome", "dial_failed"}, 0},
		{"socketwarp_listener_handshake_refusals_total", []string{"reason", "unknown_authority"}, 0},
		{"socketwarp_listener_stream_open_seconds", nil, 1}, // the histogram's count
	} {
		if got := value(lm, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got := value(lm, "socketwarp_listener_tunnel_bytes_total", "port", portLabel, "direction", "up"); got < chunk {
		t.Errorf("bytes up = %v, want at least %d", got, chunk)
	}
	if rtt := value(lm, "socketwarp_listener_connector_rtt_seconds", "uid", "swc-1"); rtt <= 0 || rtt > 5 {
		t.Errorf("rtt = %vs", rtt)
	}
	for name, typ := range map[string]string{
		"socketwarp_listener_tunnel_bytes_total": "COUNTER", "socketwarp_listener_tunnels": "GAUGE",
		"socketwarp_listener_handshake_refusals_total": "COUNTER", "socketwarp_listener_stream_open_seconds": "HISTOGRAM",
		"socketwarp_listener_connector_rtt_seconds": "GAUGE", "go_goroutines": "GAUGE",
	} {
		if got := lm.Type(name); got != typ {
			t.Errorf("%s is a %q, want %s", name, got, typ)
		}
	}
	var cm testutil.Metrics
	testutil.Eventually(t, "connector counts the first chunk", func() bool {
		cm = testutil.Scrape(t, connMetrics+"/metrics", "")
		return value(cm, "socketwarp_connector_tunnel_bytes_total", "direction", "up") >= chunk
	})
	if got := value(cm, "socketwarp_connector_connected"); got != 1 {
		t.Errorf("connector connected = %v", got)
	}
	if got := value(cm, "socketwarp_connector_streams"); got != 1 {
		t.Errorf("connector streams = %v", got)
	}

	// The same tunnel, still open, carries more: the counters grow live.
	echoChunk(t, client, chunk)
	testutil.Eventually(t, "listener counts the second chunk", func() bool {
		lm = testutil.Scrape(t, rl.api+"/metrics", "")
		return value(lm, "socketwarp_listener_tunnel_bytes_total", "port", portLabel, "direction", "down") >= 2*chunk
	})
	testutil.Eventually(t, "connector counts the second chunk", func() bool {
		cm = testutil.Scrape(t, connMetrics+"/metrics", "")
		return value(cm, "socketwarp_connector_tunnel_bytes_total", "direction", "down") >= 2*chunk
	})

	var conns []struct {
		UID            string    `json:"uid"`
		Remote         string    `json:"remote"`
		ConnectedSince time.Time `json:"connected_since"`
		CertNotAfter   time.Time `json:"cert_not_after"`
		RTTSeconds     float64   `json:"rtt_seconds"`
		ActiveStreams  int64     `json:"active_streams"`
		BytesUp        int64     `json:"bytes_up"`
		BytesDown      int64     `json:"bytes_down"`
	}
	if code := getJSON(t, rl.api+"/connections", &conns); code != http.StatusOK || len(conns) != 1 {
		t.Fatalf("/connections: %d %+v", code, conns)
	}
	c := conns[0]
	if c.UID != "swc-1" || c.Remote == "" || c.ActiveStreams != 1 || c.BytesUp < 2*chunk || c.BytesDown < 2*chunk ||
		c.RTTSeconds <= 0 || !c.CertNotAfter.After(time.Now()) || c.ConnectedSince.After(time.Now()) {
		t.Errorf("/connections entry %+v", c)
	}
	var list []map[string]any
	if code := getJSON(t, rl.api+"/list", &list); code != http.StatusOK || len(list) != 1 {
		t.Fatalf("/list: %d %v", code, list)
	}
	if p := list[0]; p["uid"] != "swc-1" || p["active_connections"] != 1.0 || p["bytes_up"].(float64) < 2*chunk {
		t.Errorf("/list entry %v", p)
	}

	// The tunnel ends; a target that refuses counts as dial_failed on both sides.
	client.Close()
	testutil.Eventually(t, "tunnel gone from the gauge", func() bool {
		lm = testutil.Scrape(t, rl.api+"/metrics", "")
		return value(lm, "socketwarp_listener_tunnels", "port", portLabel) == 0
	})
	closed := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: testutil.FreePort(t)}
	refused := rl.open(t, "swc-1", closed)
	// Reset by the listener, maybe before the dial even returns.
	if c, err := net.DialTCP("tcp", nil, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: refused}); err == nil {
		_, _ = io.ReadAll(c)
		c.Close()
	}
	testutil.Eventually(t, "dial failure counted", func() bool {
		lm = testutil.Scrape(t, rl.api+"/metrics", "")
		return value(lm, "socketwarp_listener_tunnel_connections_total", "outcome", "dial_failed") == 1
	})
	cm = testutil.Scrape(t, connMetrics+"/metrics", "")
	if got := value(cm, "socketwarp_connector_dial_failures_total", "target", closed.String()); got != 1 {
		t.Errorf("connector dial failures for %s = %v", closed, got)
	}

	// A closed port's series are gone.
	if r := call(t, http.MethodDelete, rl.api+"/close", `{"port":`+portLabel+`}`); r.status != http.StatusOK {
		t.Fatalf("close: %d %s", r.status, r.body)
	}
	lm = testutil.Scrape(t, rl.api+"/metrics", "")
	if _, ok := lm.Value("socketwarp_listener_tunnel_bytes_total", "port", portLabel); ok {
		t.Errorf("closed port %d still has series", port)
	}

	// Health: the listener is alive and ready; the connector is ready
	// only while connected.
	for _, path := range []string{"/healthz", "/readyz"} {
		if code := getJSON(t, rl.api+path, nil); code != http.StatusOK {
			t.Errorf("listener %s: %d", path, code)
		}
	}
	rl.stop()
	testutil.Eventually(t, "connector not ready without a listener", func() bool {
		return getJSON(t, connMetrics+"/readyz", nil) == http.StatusServiceUnavailable
	})
	if code := getJSON(t, connMetrics+"/healthz", nil); code != http.StatusOK {
		t.Errorf("connector /healthz: %d", code)
	}
	testutil.Eventually(t, "reconnect after going away counted", func() bool {
		cm = testutil.Scrape(t, connMetrics+"/metrics", "")
		return value(cm, "socketwarp_connector_reconnects_total", "reason", "going_away") == 1
	})
	if got := value(cm, "socketwarp_connector_connected"); got != 0 {
		t.Errorf("connector connected = %v after the listener stopped", got)
	}
}

// SWL_METRICS_ADDR moves /metrics off the API, to an address served
// without the token, which also answers /healthz and /readyz.
func TestListenerMetricsAddr(t *testing.T) {
	e := newEnv(t)
	cfg := e.listenerConfig()
	cfg.MetricsAddr = "127.0.0.1:0"
	rl := e.startListener(cfg)
	addr := rl.MetricsAddr()
	if addr == nil {
		t.Fatal("no metrics address")
	}
	base := "http://" + addr.String()
	m := testutil.Scrape(t, base+"/metrics", "")
	if _, ok := m.Value("socketwarp_listener_connectors"); !ok {
		t.Errorf("no socketwarp_listener_connectors:\n%s", m)
	}
	testutil.Eventually(t, "listener ready", func() bool { return getJSON(t, base+"/readyz", nil) == http.StatusOK })
	if code := getJSON(t, rl.api+"/metrics", nil); code != http.StatusNotFound {
		t.Errorf("/metrics on the API: %d, want 404 when SWL_METRICS_ADDR is set", code)
	}
}
