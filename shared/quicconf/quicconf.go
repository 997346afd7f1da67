// Package quicconf holds the QUIC flow-control windows both daemons use, so
// that the benchmark's raw quic-go path runs with the very same ones.
package quicconf

import "github.com/quic-go/quic-go"

// Receive windows: quic-go's defaults, chosen by measurement. A stream starts
// at 512 KiB and a connection at 768 KiB, and quic-go grows them with the
// measured bandwidth-delay product up to 6 MiB and 15 MiB. Four times larger
// windows (2/16 MiB per stream, 4/64 MiB per connection) changed neither the
// raw nor the tunnelled figures of sw-bench (1, 8 and 64 connections) on
// loopback, where CPU is the limit; they would only let a slow reader make
// the other side buffer more.
const (
	InitialStreamWindow     = 512 << 10
	MaxStreamWindow         = 6 << 20
	InitialConnectionWindow = 768 << 10
	MaxConnectionWindow     = 15 << 20
)

// Windows sets the receive windows on c and returns it.
func Windows(c *quic.Config) *quic.Config {
	c.InitialStreamReceiveWindow = InitialStreamWindow
	c.MaxStreamReceiveWindow = MaxStreamWindow
	c.InitialConnectionReceiveWindow = InitialConnectionWindow
	c.MaxConnectionReceiveWindow = MaxConnectionWindow
	return c
}
