package listener

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/shared/logging"
	"github.com/socket-warp/socket-warp/shared/testutil"
	"github.com/socket-warp/socket-warp/shared/wire"
)

// TestShutdownDrainsTunnels: on shutdown the ports take no new client, a
// running tunnel keeps carrying data until it ends by itself, Run returns
// then — not at the drain timeout — and the connector is told to go away.
func TestShutdownDrainsTunnels(t *testing.T) {
	f := newFiles(t)
	cfg := f.config()
	cfg.DrainTimeout = safety
	r := run(t, cfg)
	conn := connectorConn(t, f, r.Listener, "swc-1")
	playConnector(t, conn, wire.VerdictOK)
	testutil.Eventually(t, "connector bound", func() bool { return r.Connected("swc-1") })
	port := r.openPort(t, "swc-1")
	client := dial(t, port)
	echoVia(t, client, "before")

	r.cancel()
	testutil.Eventually(t, "draining", func() bool { return testutil.Logged(r.logs, "draining", "tunnels", "1") })
	if c, err := net.DialTCP("tcp", nil, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); !errors.Is(err, syscall.ECONNREFUSED) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("a new client while draining: %v, want connection refused", err)
	}
	echoVia(t, client, "during the drain")
	expectAlive(t, conn)

	if err := client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if rest, err := io.ReadAll(client); err != nil || len(rest) != 0 {
		t.Fatalf("end of the tunnel: %q, %v; want a clean end", rest, err)
	}
	r.wait(t)
	testutil.ClosedByPeer(t, conn, wire.CodeGoingAway)
	if len(r.logs.FilterMessage("drained").All()) != 1 || len(r.logs.FilterMessage("drain timeout, closing tunnels").All()) != 0 {
		t.Fatal(`want "drained", not a drain timeout`)
	}
	if !testutil.Logged(r.logs, "tunnel closed", logging.KeyBytesUp, "22") { // "before" + "during the drain"
		t.Error("the tunnel's bytes are not all logged")
	}
}

// TestShutdownDrainTimeout: a tunnel that does not end is cut when the
// drain timeout passes; Run returns and the connector is told to go away.
func TestShutdownDrainTimeout(t *testing.T) {
	f := newFiles(t)
	cfg := f.config()
	cfg.DrainTimeout = 50 * time.Millisecond
	r := run(t, cfg)
	conn := connectorConn(t, f, r.Listener, "swc-1")
	playConnector(t, conn, wire.VerdictOK)
	testutil.Eventually(t, "connector bound", func() bool { return r.Connected("swc-1") })
	client := dial(t, r.openPort(t, "swc-1"))
	echoVia(t, client, "never ends")

	r.cancel()
	r.wait(t)
	testutil.ClosedByPeer(t, conn, wire.CodeGoingAway)
	if !testutil.Logged(r.logs, "drain timeout, closing tunnels", "tunnels", "1") {
		t.Fatal("drain timeout not logged with the tunnel count")
	}
	if _, err := io.ReadAll(client); err == nil {
		t.Fatal("the tunnel ended cleanly, want it cut")
	}
}
