package quicconf

import (
	"testing"

	"github.com/quic-go/quic-go"
)

func TestWindowsSetsEveryWindow(t *testing.T) {
	c := Windows(&quic.Config{MaxIncomingStreams: 7})
	if c.InitialStreamReceiveWindow != InitialStreamWindow || c.MaxStreamReceiveWindow != MaxStreamWindow ||
		c.InitialConnectionReceiveWindow != InitialConnectionWindow || c.MaxConnectionReceiveWindow != MaxConnectionWindow {
		t.Fatalf("windows %+v", c)
	}
	if c.MaxIncomingStreams != 7 {
		t.Fatal("Windows changed a setting that is not a window")
	}
	// quic-go refuses a maximum below the initial window.
	if InitialStreamWindow > MaxStreamWindow || InitialConnectionWindow > MaxConnectionWindow {
		t.Fatal("an initial window exceeds its maximum")
	}
}
