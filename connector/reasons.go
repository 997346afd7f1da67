package connector

import (
	"errors"
	"fmt"
	"net"

	"github.com/quic-go/quic-go"

	"github.com/socket-warp/socket-warp/shared/relay"
	"github.com/socket-warp/socket-warp/shared/teardown"
	"github.com/socket-warp/socket-warp/shared/wire"
)

func unwrapOpError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

func isGoingAway(err error) bool {
	var app *quic.ApplicationError
	return errors.As(err, &app) && app.Remote && app.ErrorCode == wire.CodeGoingAway
}

// isStatelessReset is the listener saying it no longer knows the connection:
// it crashed and was started again (see heartbeat).
func isStatelessReset(err error) bool {
	var reset *quic.StatelessResetError
	return errors.As(err, &reset)
}

// isRefusal tells a listener's deliberate "no" from a network failure.
func isRefusal(err error) bool {
	var app *quic.ApplicationError
	if errors.As(err, &app) && app.Remote {
		// Replaced: another connector with this UID answered while this
		// one did not, and it will be refused as long as that one lives.
		return app.ErrorCode == wire.CodeDuplicateUID || app.ErrorCode == wire.CodeUnauthorized ||
			app.ErrorCode == wire.CodeReplaced
	}
	var te *quic.TransportError
	return errors.As(err, &te) && te.Remote && te.ErrorCode.IsCryptoError()
}

// isLocalTLSFailure is this connector refusing the listener's certificate.
func isLocalTLSFailure(err error) bool {
	var te *quic.TransportError
	return errors.As(err, &te) && !te.Remote && te.ErrorCode.IsCryptoError()
}

// describe words a connection failure for a person reading the log.
func describe(err error, dialing bool) string {
	var (
		app  *quic.ApplicationError
		idle *quic.IdleTimeoutError
		hs   *quic.HandshakeTimeoutError
		te   *quic.TransportError
	)
	switch {
	case err == nil:
		return "closed"
	case errors.As(err, &app) && app.Remote:
		return fmt.Sprintf("listener closed the connection: %s: %s", wire.CodeString(uint64(app.ErrorCode)), app.ErrorMessage)
	case errors.As(err, &idle) && dialing, errors.As(err, &hs):
		// Silence before the handshake completed: nothing came back at
		// all, which is what a firewall dropping UDP looks like.
		return "no answer from the listener: is it running, and is UDP allowed out?"
	case errors.As(err, &idle):
		return "no packet from the listener within the idle timeout"
	case isStatelessReset(err):
		return "the listener no longer knows this connection (stateless reset): it restarted without closing it"
	case errors.As(err, &te) && te.ErrorCode.IsCryptoError():
		return fmt.Sprintf("TLS handshake failed: %v", err)
	default:
		return err.Error()
	}
}

func streamReason(err error) string {
	var se *quic.StreamError
	switch {
	case err == nil:
		return "done"
	case errors.Is(err, relay.ErrClosed):
		return teardown.ConnectorShuttingDown
	case errors.As(err, &se) && se.Remote:
		return "listener reset the stream: " + wire.CodeString(uint64(se.ErrorCode))
	default:
		return err.Error()
	}
}
