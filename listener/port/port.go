// Package port holds sw-listener's nouns: what an opened port is (Spec),
// its live figures (Live), a connected connector as the API shows it
// (Connection), and the errors the listener's services return.
//
// It depends on nothing else of the listener, so that the HTTP API, the
// store and the listener all speak it without depending on each other.
package port

import (
	"errors"
	"time"
)

// Errors a service returns (wrapped); the API maps each to a status.
var (
	ErrNotConnected = errors.New("uid is not connected")
	ErrAlreadyOpen  = errors.New("port is already open")
	ErrNotOpen      = errors.New("port is not open")
	ErrUnavailable  = errors.New("service unavailable")
	// ErrLimit: a configured limit is reached (409: closing something
	// first makes room).
	ErrLimit = errors.New("limit reached")
)

// Spec is an opened port: the shape POST /open accepts, plus Error.
type Spec struct {
	UID            string `json:"uid"`
	Port           int    `json:"port"`
	ConnectAddress string `json:"connect_address"`
	ConnectPort    int    `json:"connect_port"`
	// ProxyProtocol is ProxyV1 or ProxyV2 to have the connector send the
	// target a PROXY protocol header with the client's address; "" sends
	// none, and is left out of the JSON so the original shape holds.
	ProxyProtocol string `json:"proxy_protocol,omitempty"`
	// Error, set only in GET /list (and the answer of DELETE /close), says
	// why a port restored at start cannot be served, e.g. "bad stream
	// header: target port is 0", or why a served port does not listen for
	// now (its socket died, or was not bound at start, and is being bound).
	Error string `json:"error,omitempty"`
}

// Values of Spec.ProxyProtocol.
const (
	ProxyV1 = "v1"
	ProxyV2 = "v2"
)

// Live are the figures of a served port, added to its entry in GET /list.
type Live struct {
	ActiveConnections int64 `json:"active_connections"` // tunnelled now
	BytesUp           int64 `json:"bytes_up"`           // client → target, since the port was opened
	BytesDown         int64 `json:"bytes_down"`         // target → client
}

// Connection is a connected connector, in GET /connections.
type Connection struct {
	UID            string    `json:"uid"`
	Remote         string    `json:"remote"`
	ConnectedSince time.Time `json:"connected_since"`
	CertNotAfter   time.Time `json:"cert_not_after"`
	RTTSeconds     float64   `json:"rtt_seconds"` // smoothed QUIC round-trip time
	ActiveStreams  int64     `json:"active_streams"`
	BytesUp        int64     `json:"bytes_up"` // tunnelled over this connection
	BytesDown      int64     `json:"bytes_down"`
	Draining       bool      `json:"draining"` // it said it is going away
}
