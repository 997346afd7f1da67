// Package wire defines the socket-warp stream protocol spoken between the
// listener and the connector over QUIC, plus the QUIC error codes both sides
// use. It depends only on the standard library so that every component, and
// the fuzzer, can link it without pulling in quic-go.
//
// # Version history
//
//	v1 (2026-11): first version
//	v1 (2026-11): TLV 0x05 probe, verdict 0x04 going away, connection code
//	              CodeReplaced (0x105); additive, so still version 1 and
//	              "socket-warp/1": an older peer answers a probe with "bad
//	              header" and takes the new codes for failures
//	v1 (2026-11): TLVs 0x06 PROXY protocol and 0x07 local address; additive,
//	              so still version 1: an older connector skips both and
//	              sends the target no PROXY header (see PROXY protocol)
//	v1 (2026-11): connector heartbeats in QUIC DATAGRAM frames; additive:
//	              sent only to a listener that offers DATAGRAM support
//	v1 (2026-12): verdict 0x05 handing over and TLV 0x08 hand-over notice
//	              (see Hand-over); additive, so still version 1: a listener
//	              older than them takes the verdict for an answer and
//	              refuses the new connection as a duplicate, and the old
//	              one simply stays
//
// # Connection
//
// A QUIC connection negotiates the ALPN protocol [ALPN] ("socket-warp/1").
// The number in the ALPN string is bumped only for changes that old peers
// cannot ignore; additive changes go into new TLV types instead.
//
// # Heartbeat
//
// Both sides offer QUIC DATAGRAM support (RFC 9221). The connector sends one
// DATAGRAM of [HeartbeatLen] zero bytes every keep-alive period, as long as
// the listener offers DATAGRAM support; the listener reads and drops them.
// A heartbeat does two things no other packet is sure to do on a quiet
// connection:
//
//   - it comes from the connector, the side behind the NAT: only such a
//     packet restores a mapping the NAT forgot (reboot, conntrack flush);
//   - it is long enough to be answered with a stateless reset (RFC 9000
//     §10.3) by a listener that restarted after a crash and no longer knows
//     the connection. quic-go sends no reset in answer to a packet of 42
//     bytes or less, and its keep-alive PINGs are shorter than that.
//
// A listener that does not offer DATAGRAM support gets no heartbeats; the
// connector's QUIC keep-alive PINGs keep its NAT mapping alive then.
//
// # Streams
//
// Every tunnelled TCP connection is one bidirectional QUIC stream opened by
// the listener. The listener writes a header and then, without waiting for
// an answer, the bytes it has already received from the TCP client. The
// connector reads the header, dials the target and answers with a verdict;
// on [VerdictOK] both directions then carry raw TCP payload until either side
// closes.
//
// Because the header is pipelined with payload, the reader must not consume
// a single byte past the header terminator: [ReadHeader] only ever issues
// exact-length reads and never buffers.
//
// # Header
//
// All integers are big endian.
//
//	header  := version:u8 (=1) | tlv* | 0x00
//	tlv     := type:u8 | len:u16 | value[len]
//
// The whole header, including the version byte and the terminating 0x00, is
// at most [MaxHeaderLen] (1024) bytes; a longer header is rejected with
// [ErrHeaderTooLong] before the excess is read. A version other than
// [ProtocolVersion] is rejected with [ErrUnsupportedVersion] without reading
// further, since a future version may frame things differently.
//
// TLV types:
//
//	0x01 target host     required; UTF-8, 1..253 bytes, no control characters
//	0x02 target port     required; u16, exactly 2 bytes, non-zero
//	0x03 client address  optional; the TCP client's remote address as text,
//	                     for logs and the PROXY protocol; UTF-8, at most 255
//	                     bytes, no control characters
//	0x04 opened port     optional; u16, exactly 2 bytes; the listener port
//	                     the client connected to (0 means absent)
//	0x05 probe           length 0; the stream is a liveness probe, see below
//	0x06 PROXY protocol  optional; u8, exactly 1 byte: 1 = v1, 2 = v2 (0 means
//	                     absent); any other value is malformed. Requires 0x03
//	                     and 0x07
//	0x07 local address   optional; the listener's local address of the
//	                     client's TCP connection (the address the client
//	                     connected to) as text; same constraints as 0x03
//	0x08 handed over     length 0; a hand-over notice: the connection was
//	                     handed over to a new one, see Hand-over
//
// Any other non-zero type is unknown and its value is skipped, so new
// optional fields can be added without a version bump. A known type that
// appears twice, a missing required field, or a field violating its
// constraints makes the header malformed ([ErrMalformedHeader]).
//
// # Probe
//
// When a second connection arrives for a UID that is already bound, the
// listener asks the bound one whether its connector is still there: it
// opens a stream, sends the probe header ([ProbeHeader]: version, TLV 0x05
// with length 0, terminator), ends its side of the stream, and waits a few
// seconds for a verdict. The connector answers at once, dials nothing and
// ends the stream: [VerdictOK], or [VerdictGoingAway] while it drains. Any
// verdict, and a reset of the stream, prove the peer alive; silence proves
// it gone, and the listener closes it with [CodeReplaced].
//
// A probe carries no other known field, target least of all: a connector
// older than the probe skips the unknown TLV, finds no target and answers
// [VerdictBadHeader] — an answer all the same — instead of dialling.
//
// # Hand-over
//
// When its certificate changes (renewal, or new files picked up by a
// reload), a connector moves to a new connection that presents the new
// certificate, while the tunnels of the old one run to their end. From
// the moment it starts until the move is decided, it answers every probe
// on the old connection with [VerdictHandingOver], whose reason is the
// [CertFingerprint] of the new certificate. The listener lets a newcomer
// take the old connection's place only if the newcomer presents exactly
// that certificate (and it differs from the old one): the consent comes
// from the authenticated connection that holds the UID, and it names its
// successor. Any other newcomer is refused as a duplicate, as after any
// answer.
//
// Once the newcomer is bound, the listener opens no new stream on the old
// connection and sends it a hand-over notice: a stream with the header
// [HandedOverHeader] (version, TLV 0x08 with length 0, terminator), ended
// right behind it like a probe. The connector answers [VerdictOK] (or
// [VerdictBadHeader] when it announced no hand-over), then closes the old
// connection with [CodeNoError] once its tunnels have ended, within its own
// bound. The listener closes the old connection with [CodeReplaced] when
// the notice is not answered, and when the connection that took its place
// ends: a handed-over connection lives on the authority of its successor.
// Of the connections of a UID that were replaced while they finish their
// tunnels (handed over, or answering [VerdictGoingAway]), the listener
// keeps the newest two open and closes older ones with [CodeReplaced].
//
// # PROXY protocol
//
// With TLV 0x06 the connector writes a PROXY protocol header of that
// version to the target, right after dialling it and before the verdict and
// any payload, so that the target sees the real client. Source: the client
// address (0x03); destination: the local address (0x07), i.e. what the
// client connected to, as a proxy such as HAProxy would send it. The
// connector's own dial addresses are not used: the target knows them
// already, and they say nothing about where the client came from.
//
// Both addresses must parse as IP:port. When either does not, the connector
// dials nothing and answers [VerdictBadHeader] instead of sending the target
// a wrong header or none at all.
//
// A connector older than these TLVs skips both as unknown and relays
// without a PROXY header: a target that requires one then rejects the
// connection. Upgrade connectors before opening ports with PROXY protocol.
//
// # Verdict
//
// The connector answers every header with exactly one verdict:
//
//	verdict := 0x00                        ok
//	         | code:u8 | len:u8 | reason    failure, code != 0
//
//	0x01 dial failed
//	0x02 forbidden by policy
//	0x03 bad header
//	0x04 going away: the connector is shutting down; it takes no new
//	     stream while the tunnels it carries drain
//	0x05 handing over: answers a probe only; the reason is the hex SHA-256
//	     of the certificate of the connection that may take this one's
//	     place (see Hand-over)
//
// The reason is human-readable text for logs, at most 255 bytes. Readers
// must treat any unknown non-zero code as a failure, so new codes can be
// added without a version bump.
//
// # Error codes
//
// QUIC application error codes (connection close) are Code* constants in
// the 0x100 range; stream error codes (reset / stop sending) are
// StreamCode* constants in the 0x200 range. The ranges do not overlap, so
// [CodeString] can describe either.
package wire
