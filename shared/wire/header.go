package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"unicode"
	"unicode/utf8"
)

const (
	// ProtocolVersion is the first byte of every stream header.
	ProtocolVersion = 1
	// ALPN is negotiated on every socket-warp QUIC connection.
	ALPN = "socket-warp/1"
	// MaxHeaderLen bounds a header, version byte and terminator included, so
	// a peer cannot make the connector buffer or wait for arbitrary amounts
	// of data before the relay starts.
	MaxHeaderLen = 1024
	// MaxHostLen is the longest DNS name (RFC 1035).
	MaxHostLen = 253
	// MaxClientAddrLen leaves room for any textual IPv6 address with zone
	// and port while keeping log lines short.
	MaxClientAddrLen = 255
)

var (
	// ErrUnsupportedVersion means the header's version byte is not
	// ProtocolVersion.
	ErrUnsupportedVersion = errors.New("unsupported stream header version")
	// ErrHeaderTooLong means the header does not fit in MaxHeaderLen bytes.
	ErrHeaderTooLong = errors.New("stream header too long")
	// ErrMalformedHeader means the header violates the framing or a field
	// constraint.
	ErrMalformedHeader = errors.New("bad stream header")
)

var errTooLong = fmt.Errorf("%w: exceeds %d bytes", ErrHeaderTooLong, MaxHeaderLen)

// TLV types.
const (
	typeEnd        byte = 0x00
	typeTargetHost byte = 0x01
	typeTargetPort byte = 0x02
	typeClientAddr byte = 0x03
	typeOpenedPort byte = 0x04
	typeProbe      byte = 0x05
	typeProxy      byte = 0x06
	typeLocalAddr  byte = 0x07
	typeHandedOver byte = 0x08
	typeLast            = typeHandedOver // types above are unknown and skipped
)

var typeNames = [...]string{
	typeTargetHost: "target host",
	typeTargetPort: "target port",
	typeClientAddr: "client address",
	typeOpenedPort: "opened port",
	typeProbe:      "probe",
	typeProxy:      "PROXY protocol",
	typeLocalAddr:  "local address",
	typeHandedOver: "hand-over notice",
}

// PROXY protocol versions the connector can write in front of the payload
// (Header.ProxyProtocol).
const (
	ProxyOff byte = 0
	ProxyV1  byte = 1 // the text line, "PROXY TCP4 ..."
	ProxyV2  byte = 2 // the binary header
)

// Header is the stream header the listener sends before any payload.
type Header struct {
	TargetHost string
	TargetPort uint16
	ClientAddr string // optional
	OpenedPort uint16 // optional, 0 = absent

	// ProxyProtocol asks the connector to send the target a PROXY protocol
	// header of this version (ProxyV1, ProxyV2) before any payload;
	// ProxyOff sends none. It needs ClientAddr (the header's source) and
	// LocalAddr (its destination: the address the client connected to).
	ProxyProtocol byte
	// LocalAddr is the listener's side of the client's TCP connection, as
	// text; sent only along with ProxyProtocol.
	LocalAddr string

	// Probe marks a liveness probe: the connector answers with a verdict
	// and dials nothing. A probe carries no other field.
	Probe bool
	// HandedOver tells the connector that the new connection it announced
	// in its answer to a probe (VerdictHandingOver) has taken this one's
	// place: no new stream comes here, and the connector closes it once
	// its tunnels have ended. Like a probe it carries no other field and is
	// answered with a verdict.
	HandedOver bool
}

// ProbeHeader is the header of a liveness probe.
var ProbeHeader = Header{Probe: true}

// HandedOverHeader is the header of a hand-over notice.
var HandedOverHeader = Header{HandedOver: true}

// control reports whether h is a probe or a hand-over notice: a stream the
// connector answers without dialling anything.
func (h Header) control() bool { return h.Probe || h.HandedOver }

// Validate reports whether h can be encoded and would be accepted by a peer.
func (h Header) Validate() error {
	if h.control() {
		// Above all no target: a connector older than the probe skips the
		// TLV it does not know and would dial the target.
		switch {
		case h == ProbeHeader, h == HandedOverHeader:
			return nil
		case h.Probe:
			return fmt.Errorf("%w: a probe carries no other field", ErrMalformedHeader)
		default:
			return fmt.Errorf("%w: a hand-over notice carries no other field", ErrMalformedHeader)
		}
	}
	if h.TargetHost == "" {
		return fmt.Errorf("%w: target host is empty", ErrMalformedHeader)
	}
	if err := checkText(typeTargetHost, h.TargetHost, MaxHostLen); err != nil {
		return err
	}
	if h.TargetPort == 0 {
		return fmt.Errorf("%w: target port is 0", ErrMalformedHeader)
	}
	if err := checkText(typeClientAddr, h.ClientAddr, MaxClientAddrLen); err != nil {
		return err
	}
	if err := checkText(typeLocalAddr, h.LocalAddr, MaxClientAddrLen); err != nil {
		return err
	}
	switch h.ProxyProtocol {
	case ProxyOff:
	case ProxyV1, ProxyV2:
		// Without both addresses the connector could only write a wrong
		// header or none, and the target would misread the payload.
		if h.ClientAddr == "" {
			return fmt.Errorf("%w: PROXY protocol without a client address", ErrMalformedHeader)
		}
		if h.LocalAddr == "" {
			return fmt.Errorf("%w: PROXY protocol without a local address", ErrMalformedHeader)
		}
	default:
		return fmt.Errorf("%w: PROXY protocol version %d is unknown", ErrMalformedHeader, h.ProxyProtocol)
	}
	return nil
}

// checkText keeps control characters out because these fields end up in
// log lines and PROXY protocol headers, where they could forge content.
// The value itself is not echoed in errors for the same reason.
func checkText(typ byte, s string, maxLen int) error {
	if len(s) > maxLen {
		return fmt.Errorf("%w: %s is %d bytes, max %d", ErrMalformedHeader, typeNames[typ], len(s), maxLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrMalformedHeader, typeNames[typ])
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: %s contains control character %U", ErrMalformedHeader, typeNames[typ], r)
		}
	}
	return nil
}

// Len returns the length of h's encoding.
func (h Header) Len() int {
	if h.control() {
		return 1 + 3 + 1
	}
	n := 1 + 3 + len(h.TargetHost) + 3 + 2 + 1
	if h.ClientAddr != "" {
		n += 3 + len(h.ClientAddr)
	}
	if h.OpenedPort != 0 {
		n += 3 + 2
	}
	if h.ProxyProtocol != ProxyOff {
		n += 3 + 1
	}
	if h.LocalAddr != "" {
		n += 3 + len(h.LocalAddr)
	}
	return n
}

// Append validates h and appends its encoding to b.
func (h Header) Append(b []byte) ([]byte, error) {
	if err := h.Validate(); err != nil {
		return nil, err
	}
	b = slices.Grow(b, h.Len())
	b = append(b, ProtocolVersion)
	if h.Probe {
		return append(b, typeProbe, 0, 0, typeEnd), nil
	}
	if h.HandedOver {
		return append(b, typeHandedOver, 0, 0, typeEnd), nil
	}
	b = appendText(b, typeTargetHost, h.TargetHost)
	b = appendPort(b, typeTargetPort, h.TargetPort)
	if h.ClientAddr != "" {
		b = appendText(b, typeClientAddr, h.ClientAddr)
	}
	if h.OpenedPort != 0 {
		b = appendPort(b, typeOpenedPort, h.OpenedPort)
	}
	if h.ProxyProtocol != ProxyOff {
		b = append(b, typeProxy, 0, 1, h.ProxyProtocol)
	}
	if h.LocalAddr != "" {
		b = appendText(b, typeLocalAddr, h.LocalAddr)
	}
	return append(b, typeEnd), nil
}

func appendText(b []byte, typ byte, s string) []byte {
	b = append(b, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func appendPort(b []byte, typ byte, port uint16) []byte {
	b = append(b, typ, 0, 2)
	return binary.BigEndian.AppendUint16(b, port)
}

// ReadHeader reads one header from r. It reads exactly the header's bytes
// and never more than MaxHeaderLen, so r can be the stream itself with the
// payload following. A stream that ends before the first byte yields an
// error wrapping io.EOF; one that ends inside the header, io.ErrUnexpectedEOF.
func ReadHeader(r io.Reader) (Header, error) {
	h, _, err := readHeader(r)
	return h, err
}

// ParseHeader parses a header at the start of b and returns it together with
// the number of bytes it occupies. If b is a proper prefix of a header,
// including an empty one, the error wraps io.ErrUnexpectedEOF so callers
// can wait for more data. On error n is 0.
func ParseHeader(b []byte) (h Header, n int, err error) {
	if len(b) == 0 {
		return Header{}, 0, fmt.Errorf("reading stream header: %w", io.ErrUnexpectedEOF)
	}
	// Sharing the reader path keeps the two parsers from ever disagreeing.
	h, n, err = readHeader(bytes.NewReader(b))
	if err != nil {
		return Header{}, 0, err
	}
	return h, n, nil
}

// headerReader counts every byte taken from r so the length bound covers
// the framing too. buf fits any known value, so only the resulting strings
// are allocated and unknown values are discarded through it.
type headerReader struct {
	r   io.Reader
	n   int
	buf [MaxClientAddrLen]byte
}

func (hr *headerReader) read(p []byte) error {
	m, err := io.ReadFull(hr.r, p)
	hr.n += m
	if err == io.EOF && hr.n > 0 {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return fmt.Errorf("reading stream header: %w", err)
	}
	return nil
}

func (hr *headerReader) skip(n int) error {
	for n > 0 {
		k := min(n, len(hr.buf))
		if err := hr.read(hr.buf[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

func readHeader(r io.Reader) (Header, int, error) {
	hr := &headerReader{r: r}
	if err := hr.read(hr.buf[:1]); err != nil {
		return Header{}, 0, err
	}
	// Stop right here: a later version may frame the rest differently.
	if v := hr.buf[0]; v != ProtocolVersion {
		return Header{}, 0, fmt.Errorf("%w: %d", ErrUnsupportedVersion, v)
	}

	var h Header
	var seen uint16 // bit i set: type i present; typeLast < 16
	for {
		// Every length check reserves a byte for the terminator, so a header
		// that cannot fit is rejected before any byte beyond the bound is
		// read or buffered.
		if err := hr.read(hr.buf[:1]); err != nil {
			return Header{}, 0, err
		}
		typ := hr.buf[0]
		if typ == typeEnd {
			break
		}
		if hr.n+2+1 > MaxHeaderLen {
			return Header{}, 0, errTooLong
		}
		if err := hr.read(hr.buf[:2]); err != nil {
			return Header{}, 0, err
		}
		l := int(binary.BigEndian.Uint16(hr.buf[:2]))
		if hr.n+l+1 > MaxHeaderLen {
			return Header{}, 0, errTooLong
		}
		if typ > typeLast {
			if err := hr.skip(l); err != nil {
				return Header{}, 0, err
			}
			continue
		}
		if seen&(1<<typ) != 0 {
			return Header{}, 0, fmt.Errorf("%w: duplicate %s", ErrMalformedHeader, typeNames[typ])
		}
		seen |= 1 << typ

		switch typ {
		case typeTargetHost, typeClientAddr, typeLocalAddr:
			maxLen := MaxHostLen
			if typ != typeTargetHost {
				maxLen = MaxClientAddrLen
			}
			if l > maxLen {
				return Header{}, 0, fmt.Errorf("%w: %s is %d bytes, max %d", ErrMalformedHeader, typeNames[typ], l, maxLen)
			}
			if err := hr.read(hr.buf[:l]); err != nil {
				return Header{}, 0, err
			}
			switch typ {
			case typeTargetHost:
				h.TargetHost = string(hr.buf[:l])
			case typeClientAddr:
				h.ClientAddr = string(hr.buf[:l])
			default:
				h.LocalAddr = string(hr.buf[:l])
			}
		case typeTargetPort, typeOpenedPort:
			if l != 2 {
				return Header{}, 0, fmt.Errorf("%w: %s has length %d, want 2", ErrMalformedHeader, typeNames[typ], l)
			}
			if err := hr.read(hr.buf[:2]); err != nil {
				return Header{}, 0, err
			}
			port := binary.BigEndian.Uint16(hr.buf[:2])
			if typ == typeTargetPort {
				h.TargetPort = port
			} else {
				h.OpenedPort = port // 0 reads as absent, like the struct
			}
		case typeProbe, typeHandedOver:
			if l != 0 {
				return Header{}, 0, fmt.Errorf("%w: %s has length %d, want 0", ErrMalformedHeader, typeNames[typ], l)
			}
			if typ == typeProbe {
				h.Probe = true
			} else {
				h.HandedOver = true
			}
		case typeProxy:
			if l != 1 {
				return Header{}, 0, fmt.Errorf("%w: %s has length %d, want 1", ErrMalformedHeader, typeNames[typ], l)
			}
			if err := hr.read(hr.buf[:1]); err != nil {
				return Header{}, 0, err
			}
			// 0 reads as absent; an unknown version is Validate's to
			// refuse: no header is better than one the target misreads.
			h.ProxyProtocol = hr.buf[0]
		}
	}

	// A probe or a notice needs no target; Validate refuses one that has
	// any field.
	for _, typ := range []byte{typeTargetHost, typeTargetPort} {
		if seen&(1<<typ) == 0 && !h.control() {
			return Header{}, 0, fmt.Errorf("%w: missing %s", ErrMalformedHeader, typeNames[typ])
		}
	}
	if err := h.Validate(); err != nil {
		return Header{}, 0, err
	}
	return h, hr.n, nil
}
