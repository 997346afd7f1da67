package wire

// HeartbeatLen is the payload length of the connector's heartbeat DATAGRAM
// (see Heartbeat in the package documentation). With it every heartbeat
// packet is at least 44 bytes long whatever the listener's connection ID
// length: quic-go answers no packet of 42 bytes or less with a stateless
// reset, and a bare keep-alive PING is about 26.
const HeartbeatLen = 24
