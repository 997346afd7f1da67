package wire

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Verdict is the connector's answer to a stream header.
type Verdict uint8

const (
	VerdictOK         Verdict = 0
	VerdictDialFailed Verdict = 1
	VerdictForbidden  Verdict = 2 // by policy
	VerdictBadHeader  Verdict = 3
	// VerdictGoingAway: the connector is shutting down and takes no new
	// stream; the tunnels it carries are draining.
	VerdictGoingAway Verdict = 4
	// VerdictHandingOver answers a probe only: the connector is moving to
	// a new connection (its certificate changed) and lets that connection,
	// and no other, take this one's place. The reason is the lowercase hex
	// SHA-256 of the DER certificate the new connection presents (see
	// CertFingerprint). The tunnels this connection carries go on.
	VerdictHandingOver Verdict = 5
)

// CertFingerprint is how VerdictHandingOver names a certificate: the
// lowercase hex SHA-256 of its DER encoding.
func CertFingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// maxReasonLen is fixed by the u8 length prefix.
const maxReasonLen = 255

func (v Verdict) String() string {
	switch v {
	case VerdictOK:
		return "ok"
	case VerdictDialFailed:
		return "dial failed"
	case VerdictForbidden:
		return "forbidden"
	case VerdictBadHeader:
		return "bad header"
	case VerdictGoingAway:
		return "going away"
	case VerdictHandingOver:
		return "handing over"
	default:
		return fmt.Sprintf("verdict(%d)", uint8(v))
	}
}

// AppendVerdict appends the encoding of v to b. The reason is dropped for
// VerdictOK and otherwise cut to at most 255 bytes.
func AppendVerdict(b []byte, v Verdict, reason string) []byte {
	if v == VerdictOK {
		return append(b, byte(v))
	}
	reason = truncate(reason, maxReasonLen)
	b = append(b, byte(v), byte(len(reason)))
	return append(b, reason...)
}

// truncate cuts s to at most n bytes, backing off to a rune boundary so a
// long reason does not end in a broken UTF-8 sequence in the peer's logs.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for i := n; i > n-utf8.UTFMax && i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return s[:i]
		}
	}
	return s[:n] // not UTF-8 anyway
}

// ReadVerdict reads one verdict from r, consuming exactly its bytes. Codes
// this version does not know are returned as is; callers should treat every
// non-OK verdict as a failure. The reason is not required to be UTF-8.
func ReadVerdict(r io.Reader) (Verdict, string, error) {
	var buf [maxReasonLen]byte
	if _, err := io.ReadFull(r, buf[:1]); err != nil {
		return 0, "", fmt.Errorf("reading verdict: %w", err)
	}
	v := Verdict(buf[0])
	if v == VerdictOK {
		return v, "", nil
	}
	if _, err := io.ReadFull(r, buf[:1]); err != nil {
		return 0, "", verdictTruncated(err)
	}
	n := int(buf[0])
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		return 0, "", verdictTruncated(err)
	}
	return v, string(buf[:n]), nil
}

// verdictTruncated reports EOF inside a verdict as unexpected: io.ReadFull
// returns plain io.EOF when a later field is missing entirely.
func verdictTruncated(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("reading verdict: %w", err)
}
