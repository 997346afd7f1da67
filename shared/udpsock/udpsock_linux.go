package udpsock

import (
	"net"
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
