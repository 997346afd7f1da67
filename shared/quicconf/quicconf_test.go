package quicconf

import (
	"testing"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/quicvarint"
)

func TestWindowsSetsEveryWindow(t *testing.T) {
	c := Windows(&quic.Config{MaxIncomingStreams: 7})
	if c.InitialStreamReceiveWindow != InitialStreamWindow || c.MaxStreamReceiveWindow != MaxStreamWindow ||
		c.InitialConnectionReceiveWindow != ConnectionWindow || c.MaxConnectionReceiveWindow != ConnectionWindow {
		t.Fatalf("windows %+v", c)
	}
	if c.MaxIncomingStreams != 7 || c.AllowConnectionWindowIncrease != nil {
		t.Fatal("Windows changed a setting that is not a window")
	}
	// quic-go refuses a maximum below the initial window.
	if InitialStreamWindow > MaxStreamWindow {
		t.Fatal("the initial stream window exceeds its maximum")
	}
}

// TestConnectionWindowNeverBinds checks the arithmetic of
// docs/flow-control.md: every stream at its largest window, all unread, holds
// at most half the connection window, so the connection-level limit cannot
// bind before the stream-level one. quic-go then renews the connection
// credit after a quarter of it is read. The window, plus the offsets it is
// added to (bytes read so far), must fit a QUIC variable-length integer.
func TestConnectionWindowNeverBinds(t *testing.T) {
	allStalled := uint64(MaxStreams) * MaxStreamWindow
	if ConnectionWindow < 2*allStalled {
		t.Fatalf("connection window %d < 2 × %d streams × %d", uint64(ConnectionWindow), MaxStreams, MaxStreamWindow)
	}
	if ConnectionWindow > quicvarint.Max/2 {
		t.Fatalf("connection window %d too close to the varint limit %d", uint64(ConnectionWindow), uint64(quicvarint.Max))
	}
}
