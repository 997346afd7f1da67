// Package quicconf holds the QUIC flow-control windows and the stream limit
// both daemons use, so that the benchmark's raw quic-go path runs with the
// very same ones. docs/flow-control.md gives the reasoning and the arithmetic.
package quicconf

import "github.com/quic-go/quic-go"

// MaxStreams is how many tunnelled connections may be open at once on one
// connector's QUIC connection: the connector allows the listener this many
// concurrent streams (quic-go's default of 100 would stall the 101st client),
// and the listener, which opens every stream, can open no more.
const MaxStreams = 1 << 16

// Stream receive windows: quic-go's defaults. A stream starts at 512 KiB and
// quic-go grows it with the measured bandwidth-delay product up to 6 MiB
// (Linux's default tcp_rmem maximum: what one TCP socket may buffer too). A
// stream window is the most unread data one tunnel can make a daemon hold.
const (
	InitialStreamWindow = 512 << 10
	MaxStreamWindow     = 6 << 20
)

// ConnectionWindow is the connection receive window, fixed (no auto-tuning):
// twice what all MaxStreams streams can hold unread at their largest window.
// Unread data keeps connection credit, so with a smaller window a few
// stalled tunnels (a client or target that stops reading) take all of it and
// every other tunnel of the connector hangs. This one is never the limit:
// quic-go grants more once a quarter of it has been read, and the stalled
// streams can hold at most half of it, so stream-level flow control — each
// tunnel's own reader — is always what limits a tunnel. It is credit, not an
// allocation; memory is bounded by the stream windows (docs/flow-control.md).
const ConnectionWindow = 2 * MaxStreams * MaxStreamWindow

// Windows sets the receive windows on c and returns it. With the connection
// window at its maximum from the start, quic-go never asks to grow it
// (AllowConnectionWindowIncrease is not consulted).
func Windows(c *quic.Config) *quic.Config {
	c.InitialStreamReceiveWindow = InitialStreamWindow
	c.MaxStreamReceiveWindow = MaxStreamWindow
	c.InitialConnectionReceiveWindow = ConnectionWindow
	c.MaxConnectionReceiveWindow = ConnectionWindow
	return c
}
