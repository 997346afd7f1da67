// Package udpsock opens the UDP sockets QUIC runs on, with the large kernel
// buffers quic-go wants. When the kernel caps them it says so in one log line
// with the sysctl that fixes it, instead of quic-go's unstructured warning.
package udpsock

import (
	"fmt"
	"net"
	"os"
	"sync"

	"go.uber.org/zap"
)

// WantBuffer is the socket buffer size quic-go asks for.
const WantBuffer = 7 << 20

// Listen opens a UDP socket on addr ("" or ":0" for any) with enlarged buffers.
func Listen(addr string, log *zap.Logger) (*net.UDPConn, error) {
	var laddr *net.UDPAddr
	if addr != "" {
		var err error
		if laddr, err = net.ResolveUDPAddr("udp", addr); err != nil {
			return nil, err
		}
	}
	c, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return nil, err
	}
	rcv, snd := grow(c)
	if rcv < WantBuffer || snd < WantBuffer {
		warnOnce(log, rcv, snd)
	}
	gsoOnce.Do(func() {
		// quic-go moves several times fewer bytes per CPU second without
		// GSO; an operator chasing throughput needs to know which it is.
		if ok, why := gso(c); ok {
			log.Info("udp segmentation offload (GSO) in use")
		} else {
			log.Warn("udp segmentation offload (GSO) not available; throughput will be lower", zap.String("reason", why))
		}
	})
	return c, nil
}

var gsoOnce sync.Once

var warned = make(chan struct{}, 1)

func warnOnce(log *zap.Logger, rcv, snd int) {
	select {
	case warned <- struct{}{}:
	default:
		return
	}
	// Our line says it all; quic-go would repeat it in its own words.
	os.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true")
	log.Warn("udp buffers capped by the kernel; throughput may suffer",
		zap.Int("receive_buffer", rcv), zap.Int("send_buffer", snd), zap.Int("wanted", WantBuffer),
		zap.String("fix", fmt.Sprintf("sysctl -w net.core.rmem_max=%d net.core.wmem_max=%d", WantBuffer, WantBuffer)))
}
