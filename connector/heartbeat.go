package connector

import (
	"time"

	"github.com/quic-go/quic-go"

	"github.com/socket-warp/socket-warp/shared/wire"
)

// heartbeat sends a QUIC DATAGRAM of wire.HeartbeatLen bytes every
// keep_alive until conn ends. On a quiet connection it is the packet that
// restores a NAT mapping the NAT forgot (only a packet from this side can),
// and the one long enough for a listener restarted after a crash to answer
// with a stateless reset, which ends conn at once instead of at the idle
// timeout. A listener that offers no DATAGRAM support gets none: quic-go's
// keep-alive PINGs are all it gets.
func (c *Connector) heartbeat(conn *quic.Conn) {
	if !conn.ConnectionState().SupportsDatagrams.Remote {
		return
	}
	t := time.NewTicker(time.Duration(c.cfg.KeepAlive))
	defer t.Stop()
	beat := make([]byte, wire.HeartbeatLen)
	for {
		select {
		case <-conn.Context().Done():
			return
		case <-t.C:
		}
		// It fails only once conn is closed.
		if err := conn.SendDatagram(beat); err != nil {
			return
		}
	}
}
