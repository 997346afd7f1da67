package listener

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/shared/testutil"
	"github.com/socket-warp/socket-warp/shared/wire"
)

// refusedEventually waits until port refuses new clients. A client taken
// before that is closed at once, which ends its tunnel.
func refusedEventually(t *testing.T, port int) {
	t.Helper()
	testutil.Eventually(t, "port closed to new clients", func() bool {
		c, err := net.DialTCP("tcp", nil, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err == nil {
			c.Close()
		}
		return errors.Is(err, syscall.ECONNREFUSED)
	})
}

// TestShutdownDrainsTunnels: on shutdown the ports take no new client, a
// running tunnel keeps carrying data until it ends by itself, Run returns
// then — not at the drain timeout — and the connector is told to go away.
func TestShutdownDrainsTunnels(t *testing.T) {
	f := newFiles(t)
	cfg := f.config()
	// Far beyond r.wait's bound: Run returning at all says the drain
	// ended with the tunnel, not at its timeout.
	cfg.DrainTimeout = time.Hour
	r := run(t, cfg)
	conn := connectorConn(t, f, r.Listener, "swc-1")
	playConnector(t, conn, wire.VerdictOK)
	testutil.Eventually(t, "connector bound", func() bool { return r.Connected("swc-1") })
	port := r.openPort(t, "swc-1")
	client := dial(t, port)
	echoVia(t, client, "before")

	r.cancel()
	refusedEventually(t, port)
	echoVia(t, client, "during the drain")
	expectAlive(t, conn)
	if c := r.Connections(); len(c) != 1 || c[0].BytesUp != 22 { // "before" + "during the drain"
		t.Fatalf("connections while draining: %+v, want swc-1 with 22 bytes up", c)
	}

	if err := client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if rest, err := io.ReadAll(client); err != nil || len(rest) != 0 {
		t.Fatalf("end of the tunnel: %q, %v; want a clean end", rest, err)
	}
	r.wait(t)
	testutil.ClosedByPeer(t, conn, wire.CodeGoingAway)
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
	if _, err := io.ReadAll(client); err == nil {
		t.Fatal("the tunnel ended cleanly, want it cut")
	}
}
