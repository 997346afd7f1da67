package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func FuzzReadHeader(f *testing.F) {
	for _, h := range append(validHeaders, ProbeHeader, HandedOverHeader) {
		b := mustAppend(f, h)
		f.Add(b)
		f.Add(append(b, "payload"...))
		f.Add(b[:len(b)/2])
	}
	host, p := tlv(typeTargetHost, "example.com"), tlv(typeTargetPort, port(443))
	for _, b := range [][]byte{
		{},
		{2},
		raw(),
		raw(host),
		raw(host, p, host),
		raw(tlv(0x7f, "unknown"), host, p, tlv(typeOpenedPort, port(0))),
		raw(host, tlv(typeTargetPort, "\x01")),
		raw(tlv(typeTargetHost, "a\nb"), p),
		{1, 0x7f, 0xff, 0xff},
		raw(tlv(typeProbe, ""), host, p),
		raw(tlv(typeProbe, "x")),
		raw(tlv(typeHandedOver, ""), tlv(typeProbe, "")),
		raw(host, p, tlv(typeClientAddr, "192.0.2.1:1"), tlv(typeLocalAddr, "192.0.2.2:2"), tlv(typeProxy, "\x01")),
		raw(host, p, tlv(typeProxy, "\x02")),
		raw(host, p, tlv(typeClientAddr, "192.0.2.1:1"), tlv(typeLocalAddr, "192.0.2.2:2"), tlv(typeProxy, "\x09")),
	} {
		f.Add(b)
	}

	sentinels := []error{ErrUnsupportedVersion, ErrHeaderTooLong, ErrMalformedHeader}
	f.Fuzz(func(t *testing.T, b []byte) {
		cr := &countingReader{r: bytes.NewReader(b)}
		h, err := ReadHeader(cr)
		if cr.n > MaxHeaderLen {
			t.Fatalf("ReadHeader read %d bytes", cr.n)
		}
		ph, n, perr := ParseHeader(b)
		if (err == nil) != (perr == nil) {
			t.Fatalf("ReadHeader err = %v, ParseHeader err = %v", err, perr)
		}
		if err != nil {
			for _, s := range sentinels {
				if errors.Is(err, s) != errors.Is(perr, s) {
					t.Fatalf("ReadHeader err = %v, ParseHeader err = %v", err, perr)
				}
			}
			truncated := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
			if truncated != errors.Is(perr, io.ErrUnexpectedEOF) {
				t.Fatalf("ReadHeader err = %v, ParseHeader err = %v", err, perr)
			}
			return
		}
		if ph != h || n != cr.n {
			t.Fatalf("ReadHeader = %+v (%d bytes), ParseHeader = %+v (%d bytes)", h, cr.n, ph, n)
		}
		if err := h.Validate(); err != nil {
			t.Fatalf("accepted header fails Validate: %v", err)
		}
		enc, err := h.Append(nil)
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		// Re-encoding drops unknown TLVs and empty optionals, never grows.
		if len(enc) != h.Len() || len(enc) > n {
			t.Fatalf("re-encoded to %d bytes, Len() = %d, input %d bytes", len(enc), h.Len(), n)
		}
		h2, n2, err := ParseHeader(enc)
		if err != nil || h2 != h || n2 != len(enc) {
			t.Fatalf("re-parse = %+v, %d, %v; want %+v, %d", h2, n2, err, h, len(enc))
		}
	})
}
