package wire

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestVerdictRoundTrip(t *testing.T) {
	long := strings.Repeat("r", 300)
	runes := strings.Repeat("é", 200) // 2 bytes each: byte 255 is mid-rune
	for _, tc := range []struct {
		name       string
		v          Verdict
		reason     string
		wantReason string
		wantLen    int
	}{
		{"ok", VerdictOK, "", "", 1},
		{"ok drops reason", VerdictOK, "ignored", "", 1},
		{"dial failed", VerdictDialFailed, "dial tcp 10.0.0.1:22: connection refused", "dial tcp 10.0.0.1:22: connection refused", 2 + 40},
		{"forbidden empty reason", VerdictForbidden, "", "", 2},
		{"bad header", VerdictBadHeader, "bad stream header: target port is 0", "bad stream header: target port is 0", 2 + 35},
		{"going away", VerdictGoingAway, "connector shutting down", "connector shutting down", 2 + 23},
		{"unknown code", Verdict(0x7f), "from the future", "from the future", 2 + 15},
		{"max reason", VerdictDialFailed, long[:255], long[:255], 2 + 255},
		{"reason truncated", VerdictDialFailed, long, long[:255], 2 + 255},
		{"truncated at rune boundary", VerdictForbidden, runes, runes[:254], 2 + 254},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := AppendVerdict([]byte("pre"), tc.v, tc.reason)
			if !bytes.HasPrefix(b, []byte("pre")) || len(b)-3 != tc.wantLen {
				t.Fatalf("AppendVerdict = %q, want prefix kept and %d new bytes", b, tc.wantLen)
			}
			r := bytes.NewReader(append(b[3:], "payload"...))
			v, reason, err := ReadVerdict(r)
			if err != nil || v != tc.v || reason != tc.wantReason {
				t.Errorf("ReadVerdict = %v, %q, %v; want %v, %q", v, reason, err, tc.v, tc.wantReason)
			}
			if !utf8.ValidString(reason) {
				t.Errorf("reason %q is not valid UTF-8", reason)
			}
			if rest, _ := io.ReadAll(r); string(rest) != "payload" {
				t.Errorf("ReadVerdict consumed payload: rest = %q", rest)
			}
		})
	}
}

func TestReadVerdictNonUTF8Reason(t *testing.T) {
	v, reason, err := ReadVerdict(bytes.NewReader([]byte{3, 2, 0xff, 0xfe}))
	if err != nil || v != VerdictBadHeader || reason != "\xff\xfe" {
		t.Errorf("ReadVerdict = %v, %q, %v", v, reason, err)
	}
}

func TestReadVerdictTruncated(t *testing.T) {
	for _, b := range [][]byte{
		AppendVerdict(nil, VerdictOK, ""),
		AppendVerdict(nil, VerdictDialFailed, ""),
		AppendVerdict(nil, VerdictDialFailed, "connection refused"),
		AppendVerdict(nil, Verdict(200), strings.Repeat("x", 300)),
	} {
		for i := range len(b) {
			_, _, err := ReadVerdict(bytes.NewReader(b[:i]))
			want := io.ErrUnexpectedEOF
			if i == 0 {
				want = io.EOF
			}
			if !errors.Is(err, want) {
				t.Errorf("ReadVerdict(%q): err = %v, want %v", b[:i], err, want)
			}
		}
	}
}

func TestVerdictString(t *testing.T) {
	for v, want := range map[Verdict]string{
		VerdictOK:          "ok",
		VerdictDialFailed:  "dial failed",
		VerdictForbidden:   "forbidden",
		VerdictBadHeader:   "bad header",
		VerdictGoingAway:   "going away",
		VerdictHandingOver: "handing over",
		6:                  "verdict(6)",
		255:                "verdict(255)",
	} {
		if got := v.String(); got != want {
			t.Errorf("Verdict(%d).String() = %q, want %q", uint8(v), got, want)
		}
	}
}

func TestCodeString(t *testing.T) {
	for code, want := range map[uint64]string{
		CodeNoError:       "no error",
		CodeDuplicateUID:  "duplicate uid",
		CodeUnauthorized:  "unauthorized",
		CodeGoingAway:     "going away",
		CodeProtocol:      "protocol violation",
		CodeReplaced:      "replaced by a new connection",
		StreamCodeAborted: "stream aborted",
		StreamCodeRefused: "stream refused",
		StreamCodeClosed:  "port closed",
		0x999:             "code 0x999",
	} {
		if got := CodeString(code); got != want {
			t.Errorf("CodeString(%#x) = %q, want %q", code, got, want)
		}
	}
}
