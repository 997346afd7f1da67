//go:build !linux

package udpsock

import "net"

// grow asks for WantBuffer each way; other systems give no reliable answer
// about what they granted, so no warning is logged there.
func grow(c *net.UDPConn) (rcv, snd int) {
	_ = c.SetReadBuffer(WantBuffer)
	_ = c.SetWriteBuffer(WantBuffer)
	return WantBuffer, WantBuffer
}

// gso: quic-go uses segmentation offload on Linux only.
func gso(*net.UDPConn) (bool, string) { return false, "only Linux supports UDP_SEGMENT" }
