package udpsock

import (
	"net"
	"os"
	"strconv"
	"syscall"
)

// grow asks for WantBuffer each way, forcing past rmem_max/wmem_max where the
// process may (CAP_NET_ADMIN), and returns what the kernel granted.
func grow(c *net.UDPConn) (rcv, snd int) {
	_ = c.SetReadBuffer(WantBuffer)
	_ = c.SetWriteBuffer(WantBuffer)
	raw, err := c.SyscallConn()
	if err != nil {
		return WantBuffer, WantBuffer // cannot tell; assume the best
	}
	_ = raw.Control(func(fd uintptr) {
		get := func(opt int) int {
			v, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, opt)
			if err != nil {
				return 0
			}
			return v / 2 // Linux reports twice the usable size
		}
		if rcv = get(syscall.SO_RCVBUF); rcv < WantBuffer {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, WantBuffer)
			rcv = get(syscall.SO_RCVBUF)
		}
		if snd = get(syscall.SO_SNDBUF); snd < WantBuffer {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUFFORCE, WantBuffer)
			snd = get(syscall.SO_SNDBUF)
		}
	})
	return rcv, snd
}

// udpSegment is Linux's UDP_SEGMENT socket option (linux/udp.h), which the
// syscall package does not name.
const udpSegment = 103

// gso reports whether quic-go will send with generic segmentation offload on
// c, by the test quic-go itself makes: the kernel knows UDP_SEGMENT and
// QUIC_GO_DISABLE_GSO does not turn it off.
func gso(c *net.UDPConn) (bool, string) {
	if off, err := strconv.ParseBool(os.Getenv("QUIC_GO_DISABLE_GSO")); err == nil && off {
		return false, "QUIC_GO_DISABLE_GSO is set"
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return false, err.Error()
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		_, serr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_UDP, udpSegment)
	}); err != nil {
		return false, err.Error()
	}
	if serr != nil {
		return false, "the kernel does not support UDP_SEGMENT: " + serr.Error()
	}
	return true, ""
}
