package e2e

import (
	"net"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/shared/testutil"
)

// TestStaleConnectorReplacedByNewcomer: the connector vanishes without a
// word (killed, power lost, NAT mapping gone: here its packets are dropped)
// and comes back with the same certificate. The listener, still holding the
// old connection, probes it, finds it silent and binds the newcomer long
// before its idle timeout (60s here, more than the test waits), and the
// opened port works again.
func TestStaleConnectorReplacedByNewcomer(t *testing.T) {
	e := newEnv(t)
	lcfg := e.listenerConfig()
	lcfg.ProbeTimeout = 500 * time.Millisecond
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
	ccfg.ServicePort = rl.quicPort() // the same certificate, from a new address
	back := e.startConnector(ccfg)
	testutil.Eventually(t, "stale connection replaced", func() bool {
		return testutil.Logged(rl.logs, "stale connection replaced", "reason", "no answer to a probe")
	})
	if got := roundTrip(t, dialPort(t, port), []byte("after")); string(got) != "after" {
		t.Fatalf("after: %q", got)
	}
	if len(back.logs.FilterMessage("tunnel opened").All()) != 1 {
		t.Fatal("the tunnel did not go through the connector that came back")
	}
}

// TestDuplicateUIDProbedThenRefused: a second connector with the UID of a
// live one is refused after the first answered the probe; the first logs
// nothing alarming and keeps its tunnels.
func TestDuplicateUIDProbedThenRefused(t *testing.T) {
	e, rl, first := setup(t, "swc-1")
	port := rl.open(t, "swc-1", testutil.EchoServer(t))
	second := e.startConnector(e.connectorConfig("swc-1", rl.quicPort()))
	testutil.Eventually(t, "second connector refused", func() bool {
		return testutil.Logged(second.logs, "listener refused this connector", "reason", "already connected")
	})
	second.stop()
	if !testutil.Logged(rl.logs, "connector refused", "probe", "answered the probe") {
		t.Error("the listener's refusal does not say the first connector answered its probe")
	}
	if len(first.logs.FilterMessage("probe answered").All()) == 0 {
		t.Error("the first connector did not log the probe")
	}
	if len(first.logs.FilterMessage("stream refused").All()) != 0 {
		t.Error("the first connector took the probe for a bad stream")
	}
	if got := roundTrip(t, dialPort(t, port), []byte("first")); string(got) != "first" {
		t.Fatalf("first connector's tunnel answered %q", got)
	}
}
