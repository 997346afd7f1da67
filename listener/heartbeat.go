package listener

import (
	"context"

	"github.com/quic-go/quic-go"
)

// discardHeartbeats reads and drops the connector's heartbeats (QUIC
// DATAGRAMs, see wire.HeartbeatLen) until conn ends; quic-go would otherwise
// hold up to 128 of them per connection. The returned channel is closed when
// it has: the caller waits for it after conn is closed.
func discardHeartbeats(conn *quic.Conn) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			// Only the connection's end ends the wait: quic-go returns
			// its close error then.
			if _, err := conn.ReceiveDatagram(context.Background()); err != nil {
				return
			}
		}
	}()
	return done
}
