package wire

import (
	"bytes"
	"testing"
)

// The micro-benchmarks guard against regressions in the per-stream cost of
// the codec; `make bench-micro` runs them briefly (they must run, no figure
// is checked). Compare with benchstat across commits.

// benchHeader is what the listener sends for a typical tunnelled connection.
var benchHeader = Header{TargetHost: "db.internal.example.com", TargetPort: 5432, ClientAddr: "203.0.113.7:51234", OpenedPort: 15432}

func BenchmarkHeaderAppend(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, MaxHeaderLen)
	for b.Loop() {
		out, err := benchHeader.Append(buf[:0])
		if err != nil || len(out) != benchHeader.Len() {
			b.Fatalf("Append: %d bytes, %v", len(out), err)
		}
	}
}

func BenchmarkReadHeader(b *testing.B) {
	b.ReportAllocs()
	enc, err := benchHeader.Append(nil)
	if err != nil {
		b.Fatal(err)
	}
	r := bytes.NewReader(enc)
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		r.Reset(enc)
		h, err := ReadHeader(r)
		if err != nil || h != benchHeader {
			b.Fatalf("ReadHeader = %+v, %v", h, err)
		}
	}
}

func BenchmarkParseHeader(b *testing.B) {
	b.ReportAllocs()
	enc, err := benchHeader.Append(nil)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		h, n, err := ParseHeader(enc)
		if err != nil || n != len(enc) || h != benchHeader {
			b.Fatalf("ParseHeader = %+v, %d, %v", h, n, err)
		}
	}
}

func BenchmarkVerdict(b *testing.B) {
	for _, tc := range []struct {
		name   string
		v      Verdict
		reason string
	}{
		{"ok", VerdictOK, ""},
		{"dial-failed", VerdictDialFailed, "dial tcp 10.0.0.5:5432: connect: connection refused"},
	} {
		b.Run("append/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, 0, 2+maxReasonLen)
			for b.Loop() {
				if out := AppendVerdict(buf[:0], tc.v, tc.reason); out[0] != byte(tc.v) {
					b.Fatalf("AppendVerdict starts %d", out[0])
				}
			}
		})
		b.Run("read/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			enc := AppendVerdict(nil, tc.v, tc.reason)
			r := bytes.NewReader(enc)
			for b.Loop() {
				r.Reset(enc)
				v, reason, err := ReadVerdict(r)
				if err != nil || v != tc.v || reason != tc.reason {
					b.Fatalf("ReadVerdict = %v, %q, %v", v, reason, err)
				}
			}
		})
	}
}
