package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// tlv encodes one TLV by hand so tests can build headers Append refuses to.
func tlv(typ byte, value string) []byte {
	b := []byte{typ}
	b = binary.BigEndian.AppendUint16(b, uint16(len(value)))
	return append(b, value...)
}

func port(p uint16) string { return string(binary.BigEndian.AppendUint16(nil, p)) }

// raw builds a version 1 header from TLVs, terminator included.
func raw(tlvs ...[]byte) []byte {
	b := []byte{ProtocolVersion}
	for _, t := range tlvs {
		b = append(b, t...)
	}
	return append(b, typeEnd)
}

var validHeaders = []Header{
	{TargetHost: "example.com", TargetPort: 443},
	{TargetHost: "10.0.0.1", TargetPort: 22, ClientAddr: "203.0.113.7:51234", OpenedPort: 2222},
	{TargetHost: "::1", TargetPort: 65535, OpenedPort: 1},
	{TargetHost: "bücher.example", TargetPort: 80, ClientAddr: "[2001:db8::1%eth0]:443"},
	{TargetHost: strings.Repeat("a", MaxHostLen), TargetPort: 1, ClientAddr: strings.Repeat("b", MaxClientAddrLen), OpenedPort: 65535},
	{TargetHost: "db.internal", TargetPort: 5432, ClientAddr: "203.0.113.7:51234", OpenedPort: 15432,
		ProxyProtocol: ProxyV1, LocalAddr: "198.51.100.1:15432"},
	{TargetHost: "10.0.0.1", TargetPort: 443, ClientAddr: "[2001:db8::7]:40000", OpenedPort: 8443,
		ProxyProtocol: ProxyV2, LocalAddr: "[2001:db8::1]:8443"},
	{TargetHost: "h", TargetPort: 1, ClientAddr: strings.Repeat("c", MaxClientAddrLen), ProxyProtocol: ProxyV2,
		LocalAddr: strings.Repeat("l", MaxClientAddrLen)},
}

func mustAppend(t testing.TB, h Header) []byte {
	t.Helper()
	b, err := h.Append(nil)
	if err != nil {
		t.Fatalf("Append(%+v): %v", h, err)
	}
	return b
}

// countingReader records how much a parser pulled from the stream.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// cycleReader repeats pattern forever, standing in for a peer that never
// stops sending.
type cycleReader struct {
	pattern []byte
	off     int
}

func (c *cycleReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = c.pattern[c.off]
		c.off = (c.off + 1) % len(c.pattern)
	}
	return len(p), nil
}

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range validHeaders {
		b := mustAppend(t, h)
		if len(b) != h.Len() {
			t.Errorf("%+v: encoded %d bytes, Len() = %d", h, len(b), h.Len())
		}
		if len(b) > MaxHeaderLen {
			t.Errorf("%+v: encoded %d bytes, over MaxHeaderLen", h, len(b))
		}

		got, err := ReadHeader(bytes.NewReader(b))
		if err != nil || got != h {
			t.Errorf("ReadHeader(%q) = %+v, %v; want %+v", b, got, err, h)
		}
		got, n, err := ParseHeader(append(b, "payload"...))
		if err != nil || got != h || n != len(b) {
			t.Errorf("ParseHeader(%q+payload) = %+v, %d, %v; want %+v, %d", b, got, n, err, h, len(b))
		}
	}
}

func TestAppendKeepsPrefix(t *testing.T) {
	h := validHeaders[0]
	b, err := h.Append([]byte("xy"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[:2], []byte("xy")) || !bytes.Equal(b[2:], mustAppend(t, h)) {
		t.Errorf("Append to prefix = %q", b)
	}
}

func TestHeaderTruncated(t *testing.T) {
	for _, h := range validHeaders {
		b := mustAppend(t, h)
		for i := range len(b) {
			_, err := ReadHeader(bytes.NewReader(b[:i]))
			want := io.ErrUnexpectedEOF
			if i == 0 {
				want = io.EOF
			}
			if !errors.Is(err, want) {
				t.Errorf("ReadHeader(%q): err = %v, want %v", b[:i], err, want)
			}
			if _, n, err := ParseHeader(b[:i]); !errors.Is(err, io.ErrUnexpectedEOF) || n != 0 {
				t.Errorf("ParseHeader(%q) = %d, %v; want 0, unexpected EOF", b[:i], n, err)
			}
		}
	}
}

func TestReadHeaderShortReads(t *testing.T) {
	for _, h := range validHeaders {
		b := mustAppend(t, h)
		for name, r := range map[string]io.Reader{
			"one byte": iotest.OneByteReader(bytes.NewReader(b)),
			"half":     iotest.HalfReader(bytes.NewReader(b)),
			"data EOF": iotest.DataErrReader(bytes.NewReader(b)),
		} {
			if got, err := ReadHeader(r); err != nil || got != h {
				t.Errorf("%s: ReadHeader = %+v, %v; want %+v", name, got, err, h)
			}
		}
	}
}

func TestReadHeaderLeavesPayload(t *testing.T) {
	payload := []byte("GET / HTTP/1.1\r\n\r\n\x00\x01\x02")
	for _, h := range validHeaders {
		for _, b := range [][]byte{
			mustAppend(t, h),
			raw(tlv(0x7f, "future"), tlv(typeTargetHost, h.TargetHost), tlv(typeTargetPort, port(h.TargetPort)), tlv(0xff, "")),
		} {
			r := bytes.NewReader(append(b, payload...))
			if _, err := ReadHeader(r); err != nil {
				t.Fatalf("ReadHeader(%q): %v", b, err)
			}
			if rest, _ := io.ReadAll(r); !bytes.Equal(rest, payload) {
				t.Errorf("after ReadHeader(%q) rest = %q, want %q", b, rest, payload)
			}
		}
	}
}

func TestHeaderUnknownTLVSkipped(t *testing.T) {
	want := Header{TargetHost: "example.com", TargetPort: 8080, ClientAddr: "192.0.2.1:1234"}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"before", raw(tlv(0x70, "x"), tlv(typeTargetHost, "example.com"), tlv(typeTargetPort, port(8080)), tlv(typeClientAddr, "192.0.2.1:1234"))},
		{"between", raw(tlv(typeTargetHost, "example.com"), tlv(0xff, strings.Repeat("\x00", 600)), tlv(typeTargetPort, port(8080)), tlv(typeClientAddr, "192.0.2.1:1234"))},
		{"empty value", raw(tlv(typeTargetHost, "example.com"), tlv(typeTargetPort, port(8080)), tlv(0x80, ""), tlv(typeClientAddr, "192.0.2.1:1234"))},
		{"repeated unknown", raw(tlv(0x70, "a"), tlv(0x70, "b"), tlv(typeClientAddr, "192.0.2.1:1234"), tlv(typeTargetPort, port(8080)), tlv(typeTargetHost, "example.com"))},
	} {
		got, n, err := ParseHeader(tc.b)
		if err != nil || got != want || n != len(tc.b) {
			t.Errorf("%s: ParseHeader = %+v, %d, %v; want %+v, %d", tc.name, got, n, err, want, len(tc.b))
		}
	}
}

func TestHeaderOptionalZeroValues(t *testing.T) {
	// Explicitly encoded empty/zero optional fields read as absent.
	b := raw(tlv(typeTargetHost, "h"), tlv(typeTargetPort, port(1)), tlv(typeClientAddr, ""), tlv(typeOpenedPort, port(0)))
	want := Header{TargetHost: "h", TargetPort: 1}
	if got, _, err := ParseHeader(b); err != nil || got != want {
		t.Errorf("ParseHeader(%q) = %+v, %v; want %+v", b, got, err, want)
	}
}

func TestHeaderTooLong(t *testing.T) {
	okHost, okPort := tlv(typeTargetHost, "h"), tlv(typeTargetPort, port(1))
	// filler returns an unknown TLV that makes a header with okHost and
	// okPort exactly size bytes long.
	filler := func(size int) []byte {
		return tlv(0x7f, strings.Repeat("f", size-len(raw(okHost, okPort))-3))
	}

	if b := raw(okHost, okPort, filler(MaxHeaderLen)); len(b) != MaxHeaderLen {
		t.Fatalf("filler: got %d bytes", len(b))
	} else if _, n, err := ParseHeader(b); err != nil || n != MaxHeaderLen {
		t.Errorf("header of exactly MaxHeaderLen: n = %d, err = %v", n, err)
	}
	if _, _, err := ParseHeader(raw(okHost, okPort, filler(MaxHeaderLen+1))); !errors.Is(err, ErrHeaderTooLong) {
		t.Errorf("header of MaxHeaderLen+1: err = %v, want ErrHeaderTooLong", err)
	}

	for _, tc := range []struct {
		name   string
		prefix []byte
		repeat []byte // sent forever after prefix
	}{
		{"unknown TLV len 2000", []byte{1, 0x7f, 0x07, 0xd0}, []byte{0}},
		{"unknown TLV len 0xffff", []byte{1, 0x7f, 0xff, 0xff}, []byte("x")},
		{"host TLV len 2000", []byte{1, typeTargetHost, 0x07, 0xd0}, []byte("a")},
		{"many small unknown TLVs", []byte{1}, tlv(0x42, "abcde")},
		{"many empty unknown TLVs", []byte{1}, tlv(0x42, "")},
		{"valid fields then unknown", raw(okHost, okPort)[:len(raw(okHost, okPort))-1], tlv(0x42, "0123456789")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := io.MultiReader(bytes.NewReader(tc.prefix), &cycleReader{pattern: tc.repeat})
			cr := &countingReader{r: src}
			if _, err := ReadHeader(cr); !errors.Is(err, ErrHeaderTooLong) {
				t.Errorf("ReadHeader: err = %v, want ErrHeaderTooLong", err)
			}
			if cr.n > MaxHeaderLen {
				t.Errorf("ReadHeader read %d bytes, want <= %d", cr.n, MaxHeaderLen)
			}

			b := append(tc.prefix, bytes.Repeat(tc.repeat, 2*MaxHeaderLen/len(tc.repeat)+1)...)
			if _, n, err := ParseHeader(b); !errors.Is(err, ErrHeaderTooLong) || n != 0 {
				t.Errorf("ParseHeader = %d, %v; want 0, ErrHeaderTooLong", n, err)
			}
		})
	}
}

func TestHeaderAllocsBounded(t *testing.T) {
	// A hostile length field must not translate into a large allocation.
	b := []byte{1, 0x7f, 0xff, 0xff}
	allocs := testing.AllocsPerRun(100, func() {
		ParseHeader(b)
	})
	if allocs > 3 {
		t.Errorf("ParseHeader of oversized TLV: %v allocs", allocs)
	}
}

func TestReadHeaderErrors(t *testing.T) {
	host, p := tlv(typeTargetHost, "example.com"), tlv(typeTargetPort, port(443))
	client, local := tlv(typeClientAddr, "192.0.2.1:1234"), tlv(typeLocalAddr, "198.51.100.1:80")
	withVersion := func(v byte) []byte { b := raw(host, p); b[0] = v; return b }
	for _, tc := range []struct {
		name string
		b    []byte
		want error
		msg  string
	}{
		{"version 0", withVersion(0), ErrUnsupportedVersion, "unsupported stream header version: 0"},
		{"version 2", withVersion(2), ErrUnsupportedVersion, "version: 2"},
		{"version 255 alone", []byte{255}, ErrUnsupportedVersion, "version: 255"},
		{"missing host", raw(p), ErrMalformedHeader, "bad stream header: missing target host"},
		{"missing port", raw(host), ErrMalformedHeader, "bad stream header: missing target port"},
		{"empty", raw(), ErrMalformedHeader, "missing target host"},
		{"host empty", raw(tlv(typeTargetHost, ""), p), ErrMalformedHeader, "target host is empty"},
		{"host too long", raw(tlv(typeTargetHost, strings.Repeat("a", MaxHostLen+1)), p), ErrMalformedHeader, "target host is 254 bytes, max 253"},
		{"host newline", raw(tlv(typeTargetHost, "evil\nhost"), p), ErrMalformedHeader, "target host contains control character U+000A"},
		{"host NUL", raw(tlv(typeTargetHost, "a\x00"), p), ErrMalformedHeader, "control character"},
		{"host DEL", raw(tlv(typeTargetHost, "a\x7f"), p), ErrMalformedHeader, "control character"},
		{"host C1 control", raw(tlv(typeTargetHost, "a\u0085"), p), ErrMalformedHeader, "control character U+0085"},
		{"host invalid UTF-8", raw(tlv(typeTargetHost, "a\xffb"), p), ErrMalformedHeader, "target host is not valid UTF-8"},
		{"port 0", raw(host, tlv(typeTargetPort, port(0))), ErrMalformedHeader, "bad stream header: target port is 0"},
		{"port len 0", raw(host, tlv(typeTargetPort, "")), ErrMalformedHeader, "target port has length 0, want 2"},
		{"port len 1", raw(host, tlv(typeTargetPort, "\x01")), ErrMalformedHeader, "target port has length 1, want 2"},
		{"port len 3", raw(host, tlv(typeTargetPort, "\x00\x01\xbb")), ErrMalformedHeader, "target port has length 3, want 2"},
		{"opened port len 4", raw(host, p, tlv(typeOpenedPort, "\x00\x00\x00\x01")), ErrMalformedHeader, "opened port has length 4, want 2"},
		{"client addr too long", raw(host, p, tlv(typeClientAddr, strings.Repeat("1", MaxClientAddrLen+1))), ErrMalformedHeader, "client address is 256 bytes, max 255"},
		{"client addr control", raw(host, p, tlv(typeClientAddr, "1.2.3.4\r\n")), ErrMalformedHeader, "client address contains control character"},
		{"client addr invalid UTF-8", raw(host, p, tlv(typeClientAddr, "\xc3")), ErrMalformedHeader, "client address is not valid UTF-8"},
		{"duplicate host", raw(host, p, host), ErrMalformedHeader, "bad stream header: duplicate target host"},
		{"duplicate port", raw(host, p, tlv(typeTargetPort, port(80))), ErrMalformedHeader, "duplicate target port"},
		{"duplicate client addr", raw(host, tlv(typeClientAddr, "a"), p, tlv(typeClientAddr, "a")), ErrMalformedHeader, "duplicate client address"},
		{"duplicate opened port", raw(host, p, tlv(typeOpenedPort, port(1)), tlv(typeOpenedPort, port(1))), ErrMalformedHeader, "duplicate opened port"},
		{"proxy len 0", raw(host, p, client, local, tlv(typeProxy, "")), ErrMalformedHeader, "PROXY protocol has length 0, want 1"},
		{"proxy len 2", raw(host, p, client, local, tlv(typeProxy, "\x00\x02")), ErrMalformedHeader, "PROXY protocol has length 2, want 1"},
		{"proxy version 3", raw(host, p, client, local, tlv(typeProxy, "\x03")), ErrMalformedHeader, "PROXY protocol version 3 is unknown"},
		{"proxy version 255", raw(host, p, client, local, tlv(typeProxy, "\xff")), ErrMalformedHeader, "PROXY protocol version 255 is unknown"},
		{"proxy without client addr", raw(host, p, local, tlv(typeProxy, "\x01")), ErrMalformedHeader, "PROXY protocol without a client address"},
		{"proxy with empty client addr", raw(host, p, tlv(typeClientAddr, ""), local, tlv(typeProxy, "\x02")), ErrMalformedHeader, "without a client address"},
		{"proxy without local addr", raw(host, p, client, tlv(typeProxy, "\x02")), ErrMalformedHeader, "PROXY protocol without a local address"},
		{"duplicate proxy", raw(host, p, client, local, tlv(typeProxy, "\x01"), tlv(typeProxy, "\x01")), ErrMalformedHeader, "duplicate PROXY protocol"},
		{"local addr too long", raw(host, p, tlv(typeLocalAddr, strings.Repeat("1", MaxClientAddrLen+1))), ErrMalformedHeader, "local address is 256 bytes, max 255"},
		{"local addr control", raw(host, p, tlv(typeLocalAddr, "1.2.3.4:1\n")), ErrMalformedHeader, "local address contains control character"},
		{"local addr invalid UTF-8", raw(host, p, tlv(typeLocalAddr, "\xc3")), ErrMalformedHeader, "local address is not valid UTF-8"},
		{"duplicate local addr", raw(host, p, local, local), ErrMalformedHeader, "duplicate local address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadHeader(bytes.NewReader(tc.b))
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("ReadHeader(%q): err = %v, want %v containing %q", tc.b, err, tc.want, tc.msg)
			}
			if _, n, perr := ParseHeader(tc.b); !errors.Is(perr, tc.want) || n != 0 {
				t.Errorf("ParseHeader(%q) = %d, %v; want 0, %v", tc.b, n, perr, tc.want)
			}
		})
	}
}

func TestReadHeaderVersionStopsReading(t *testing.T) {
	// Nothing after an unknown version byte is ours to consume.
	r := bytes.NewReader([]byte{2, 0xaa, 0xbb})
	if _, err := ReadHeader(r); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("err = %v", err)
	}
	if r.Len() != 2 {
		t.Errorf("consumed %d bytes after version", 2-r.Len())
	}
}

func TestReadHeaderStreamError(t *testing.T) {
	// Transport errors (e.g. a stream reset) must stay visible to errors.Is.
	errReset := errors.New("stream reset")
	b := mustAppend(t, validHeaders[0])
	r := io.MultiReader(bytes.NewReader(b[:5]), iotest.ErrReader(errReset))
	if _, err := ReadHeader(r); !errors.Is(err, errReset) {
		t.Errorf("err = %v, want wrapping %v", err, errReset)
	}
}

func TestHeaderValidateAndAppendErrors(t *testing.T) {
	for _, tc := range []struct {
		h   Header
		msg string
	}{
		{Header{}, "bad stream header: target host is empty"},
		{Header{TargetHost: "h"}, "bad stream header: target port is 0"},
		{Header{TargetPort: 1}, "target host is empty"},
		{Header{TargetHost: strings.Repeat("h", MaxHostLen+1), TargetPort: 1}, "target host is 254 bytes, max 253"},
		{Header{TargetHost: "h\t", TargetPort: 1}, "target host contains control character U+0009"},
		{Header{TargetHost: "h", TargetPort: 1, ClientAddr: strings.Repeat("c", MaxClientAddrLen+1)}, "client address is 256 bytes"},
		{Header{TargetHost: "h", TargetPort: 1, ClientAddr: "\x1b[2J"}, "client address contains control character U+001B"},
		{Header{TargetHost: "h", TargetPort: 1, ClientAddr: "c", LocalAddr: "l", ProxyProtocol: 3}, "PROXY protocol version 3 is unknown"},
		{Header{TargetHost: "h", TargetPort: 1, LocalAddr: "l", ProxyProtocol: ProxyV1}, "PROXY protocol without a client address"},
		{Header{TargetHost: "h", TargetPort: 1, ClientAddr: "c", ProxyProtocol: ProxyV2}, "PROXY protocol without a local address"},
		{Header{TargetHost: "h", TargetPort: 1, LocalAddr: "\r"}, "local address contains control character U+000D"},
	} {
		err := tc.h.Validate()
		if !errors.Is(err, ErrMalformedHeader) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.h, err, tc.msg)
		}
		if b, err := tc.h.Append(nil); err == nil {
			t.Errorf("Append(%+v) = %q, want error", tc.h, b)
		}
	}
	for _, h := range validHeaders {
		if err := h.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", h, err)
		}
	}
}

func TestProbeHeader(t *testing.T) {
	b := mustAppend(t, ProbeHeader)
	if want := raw(tlv(typeProbe, "")); !bytes.Equal(b, want) {
		t.Fatalf("probe encodes as %q, want %q", b, want)
	}
	if len(b) != ProbeHeader.Len() {
		t.Errorf("probe encoded in %d bytes, Len() = %d", len(b), ProbeHeader.Len())
	}
	for _, r := range []io.Reader{bytes.NewReader(b), iotest.OneByteReader(bytes.NewReader(b))} {
		if h, err := ReadHeader(r); err != nil || h != ProbeHeader {
			t.Errorf("ReadHeader(%q) = %+v, %v; want the probe", b, h, err)
		}
	}
	if h, n, err := ParseHeader(append(b, "ignored"...)); err != nil || !h.Probe || n != len(b) {
		t.Errorf("ParseHeader(probe+payload) = %+v, %d, %v", h, n, err)
	}
	for i := range len(b) {
		if _, n, err := ParseHeader(b[:i]); !errors.Is(err, io.ErrUnexpectedEOF) || n != 0 {
			t.Errorf("ParseHeader(%q) = %d, %v; want 0, unexpected EOF", b[:i], n, err)
		}
	}
	// Unknown TLVs around it are skipped as everywhere; explicitly empty
	// optionals read as absent.
	for _, b := range [][]byte{
		raw(tlv(0x70, "future"), tlv(typeProbe, "")),
		raw(tlv(typeProbe, ""), tlv(typeClientAddr, ""), tlv(typeOpenedPort, port(0))),
	} {
		if h, _, err := ParseHeader(b); err != nil || h != ProbeHeader {
			t.Errorf("ParseHeader(%q) = %+v, %v; want the probe", b, h, err)
		}
	}
}

// TestProbeReadByOlderConnector: a connector that predates the probe skips
// the TLV it does not know and finds no target. It answers "bad header",
// which the listener counts as an answer, and dials nothing.
func TestProbeReadByOlderConnector(t *testing.T) {
	b := mustAppend(t, ProbeHeader)
	// What v1 without the probe TLV did: skip unknown type 0x05, then
	// require a target.
	old := raw(tlv(0x70, ""))
	_, errOld := ReadHeader(bytes.NewReader(old))
	if !errors.Is(errOld, ErrMalformedHeader) || !strings.Contains(errOld.Error(), "missing target host") {
		t.Fatalf("a header of unknown TLVs only: %v, want missing target host", errOld)
	}
	if len(b) != len(old) || b[1] != typeProbe || b[2] != 0 || b[3] != 0 {
		t.Fatalf("probe %q is not one empty TLV like %q", b, old)
	}
}

func TestProbeHeaderErrors(t *testing.T) {
	host, p := tlv(typeTargetHost, "example.com"), tlv(typeTargetPort, port(443))
	probe := tlv(typeProbe, "")
	for _, tc := range []struct {
		name string
		b    []byte
		msg  string
	}{
		{"with a target", raw(probe, host, p), "a probe carries no other field"},
		{"with a host", raw(host, probe), "a probe carries no other field"},
		{"with a client address", raw(probe, tlv(typeClientAddr, "192.0.2.1:1")), "a probe carries no other field"},
		{"with an opened port", raw(probe, tlv(typeOpenedPort, port(1))), "a probe carries no other field"},
		{"with a local address", raw(probe, tlv(typeLocalAddr, "192.0.2.1:1")), "a probe carries no other field"},
		{"with PROXY protocol", raw(probe, tlv(typeClientAddr, "192.0.2.1:1"), tlv(typeLocalAddr, "192.0.2.2:2"), tlv(typeProxy, "\x01")), "a probe carries no other field"},
		{"non-empty", raw(tlv(typeProbe, "x")), "probe has length 1, want 0"},
		{"twice", raw(probe, probe), "duplicate probe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ReadHeader(bytes.NewReader(tc.b)); !errors.Is(err, ErrMalformedHeader) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("ReadHeader(%q): %v, want %q", tc.b, err, tc.msg)
			}
			if _, n, err := ParseHeader(tc.b); !errors.Is(err, ErrMalformedHeader) || n != 0 {
				t.Errorf("ParseHeader(%q) = %d, %v", tc.b, n, err)
			}
		})
	}
	for _, h := range []Header{
		{Probe: true, TargetHost: "h", TargetPort: 1},
		{Probe: true, ClientAddr: "192.0.2.1:1"},
		{Probe: true, OpenedPort: 1},
		{Probe: true, ProxyProtocol: ProxyV2, ClientAddr: "192.0.2.1:1", LocalAddr: "192.0.2.2:2"},
		{Probe: true, LocalAddr: "192.0.2.2:2"},
	} {
		if b, err := h.Append(nil); !errors.Is(err, ErrMalformedHeader) {
			t.Errorf("Append(%+v) = %q, %v; want a refusal", h, b, err)
		}
	}
}

// TestHandedOverHeader: the hand-over notice is one empty TLV, like the
// probe, and carries nothing else either; it and the probe exclude each
// other.
func TestHandedOverHeader(t *testing.T) {
	b := mustAppend(t, HandedOverHeader)
	if want := raw(tlv(typeHandedOver, "")); !bytes.Equal(b, want) {
		t.Fatalf("notice encodes as %q, want %q", b, want)
	}
	if len(b) != HandedOverHeader.Len() {
		t.Errorf("notice encoded in %d bytes, Len() = %d", len(b), HandedOverHeader.Len())
	}
	for _, r := range []io.Reader{bytes.NewReader(b), iotest.OneByteReader(bytes.NewReader(b))} {
		if h, err := ReadHeader(r); err != nil || h != HandedOverHeader {
			t.Errorf("ReadHeader(%q) = %+v, %v; want the notice", b, h, err)
		}
	}
	if h, n, err := ParseHeader(append(b, "ignored"...)); err != nil || !h.HandedOver || h.Probe || n != len(b) {
		t.Errorf("ParseHeader(notice+payload) = %+v, %d, %v", h, n, err)
	}
	notice := tlv(typeHandedOver, "")
	for _, tc := range []struct {
		name string
		b    []byte
		msg  string
	}{
		{"with a target", raw(notice, tlv(typeTargetHost, "h"), tlv(typeTargetPort, port(1))), "a hand-over notice carries no other field"},
		{"with a probe", raw(notice, tlv(typeProbe, "")), "a probe carries no other field"},
		{"non-empty", raw(tlv(typeHandedOver, "x")), "hand-over notice has length 1, want 0"},
		{"twice", raw(notice, notice), "duplicate hand-over notice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ReadHeader(bytes.NewReader(tc.b)); !errors.Is(err, ErrMalformedHeader) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("ReadHeader(%q): %v, want %q", tc.b, err, tc.msg)
			}
		})
	}
	for _, h := range []Header{
		{HandedOver: true, Probe: true},
		{HandedOver: true, TargetHost: "h", TargetPort: 1},
		{HandedOver: true, ClientAddr: "192.0.2.1:1"},
	} {
		if b, err := h.Append(nil); !errors.Is(err, ErrMalformedHeader) {
			t.Errorf("Append(%+v) = %q, %v; want a refusal", h, b, err)
		}
	}
}

// TestHeaderProxyOptionalZeroValues: an explicit PROXY protocol 0 reads as
// absent, like the other optionals, and then needs no addresses.
func TestHeaderProxyOptionalZeroValues(t *testing.T) {
	b := raw(tlv(typeTargetHost, "h"), tlv(typeTargetPort, port(1)), tlv(typeProxy, "\x00"), tlv(typeLocalAddr, ""))
	want := Header{TargetHost: "h", TargetPort: 1}
	if got, _, err := ParseHeader(b); err != nil || got != want {
		t.Errorf("ParseHeader(%q) = %+v, %v; want %+v", b, got, err, want)
	}
}

// TestProxyReadByOlderConnector: a connector that predates TLVs 0x06 and
// 0x07 skips them as unknown and reads the rest of the header unchanged;
// it then relays without a PROXY header (documented in doc.go).
func TestProxyReadByOlderConnector(t *testing.T) {
	h := validHeaders[5]
	if h.ProxyProtocol == ProxyOff {
		t.Fatal("validHeaders[5] should ask for PROXY protocol")
	}
	b := mustAppend(t, h)
	// What the parser did before 0x06 and 0x07: the same bytes with those
	// TLVs renumbered into the unknown range.
	old := bytes.Clone(b)
	for i := 1; old[i] != typeEnd; {
		l := int(binary.BigEndian.Uint16(old[i+1:]))
		if old[i] == typeProxy || old[i] == typeLocalAddr {
			old[i] += 0x70
		}
		i += 3 + l
	}
	want := h
	want.ProxyProtocol, want.LocalAddr = ProxyOff, ""
	if got, n, err := ParseHeader(old); err != nil || got != want || n != len(b) {
		t.Errorf("older reading = %+v, %d, %v; want %+v, %d", got, n, err, want, len(b))
	}
}

// TestProxyEncoding pins the bytes of the two new TLVs.
func TestProxyEncoding(t *testing.T) {
	h := Header{TargetHost: "h", TargetPort: 1, ClientAddr: "192.0.2.1:5", ProxyProtocol: ProxyV2, LocalAddr: "192.0.2.2:6"}
	want := raw(tlv(typeTargetHost, "h"), tlv(typeTargetPort, port(1)), tlv(typeClientAddr, "192.0.2.1:5"),
		[]byte{0x06, 0, 1, 2}, tlv(0x07, "192.0.2.2:6"))
	if b := mustAppend(t, h); !bytes.Equal(b, want) {
		t.Errorf("Append = %q, want %q", b, want)
	}
}
