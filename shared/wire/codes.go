package wire

import "fmt"

// QUIC application error codes, sent when closing a connection. They are
// untyped so they convert to quic.ApplicationErrorCode without a cast.
const (
	CodeNoError      = 0x0   // normal close
	CodeDuplicateUID = 0x101 // connection refused: uid already bound
	CodeUnauthorized = 0x102 // connection refused: verifier said no
	CodeGoingAway    = 0x103 // peer shutting down; reconnect at once
	CodeProtocol     = 0x104 // peer violated the protocol
	CodeReplaced     = 0x105 // connection closed: a new one of the same uid took its place
)

// QUIC stream error codes, sent when resetting a stream or stopping it.
// They live in a range of their own so CodeString needs no context.
const (
	StreamCodeAborted = 0x201 // relay aborted (peer reset / error)
	StreamCodeRefused = 0x202 // stream refused (bad header, dial failure)
	StreamCodeClosed  = 0x203 // port closed by API / shutdown
)

// CodeString describes an application or stream error code for logs.
func CodeString(code uint64) string {
	switch code {
	case CodeNoError:
		return "no error"
	case CodeDuplicateUID:
		return "duplicate uid"
	case CodeUnauthorized:
		return "unauthorized"
	case CodeGoingAway:
		return "going away"
	case CodeProtocol:
		return "protocol violation"
	case CodeReplaced:
		return "replaced by a new connection"
	case StreamCodeAborted:
		return "stream aborted"
	case StreamCodeRefused:
		return "stream refused"
	case StreamCodeClosed:
		return "port closed"
	default:
		return fmt.Sprintf("code %#x", code)
	}
}
