// Package hostname is the one rule for the host names socket-warp accepts:
// the connector's SWC_ALLOW rules and the targets it is asked to dial
// (Check), and on the listener a connect_address and SWL_API_ALLOWED_HOSTS,
// which are checked more strictly (CheckStrict).
//
// A host name is ASCII letters, digits, hyphens (not first or last in a
// label) and underscores — which Docker names use and resolvers accept — in
// labels of 1 to 63 bytes separated by dots, at most wire.MaxHostLen bytes,
// one trailing dot allowed (RFC 1123 §2.1 with underscores).
package hostname

import (
	"errors"
	"fmt"
	"strings"

	"github.com/socket-warp/socket-warp/shared/wire"
)

var (
	// ErrLabels: a label is empty, too long, has a hyphen first or last, or
	// a byte other than a letter, digit, hyphen or underscore.
	ErrLabels = errors.New("not a host name: dot-separated labels of 1-63 letters, digits, hyphens or underscores, no hyphen first or last")
	// ErrTooLong: more than wire.MaxHostLen bytes, a trailing dot aside.
	ErrTooLong = fmt.Errorf("longer than %d bytes", wire.MaxHostLen)
	// ErrNumber: Check's refusal of a last label that is a number.
	ErrNumber = errors.New("not a host name: its last label is a number")
	// ErrLastLabel: CheckStrict's refusal of a last label that does not
	// start with a letter or an underscore.
	ErrLastLabel = errors.New("not an IP address, nor a host name (whose last label starts with a letter)")
)

// Check reports whether s is a host name, and what is wrong with it if
// not. Its last label must not be a number: "010.0.0.1", "127.1" and
// "0x7f.1" are IPv4 addresses to some resolvers and no host name at all.
func Check(s string) error {
	labels, err := split(s)
	if err != nil {
		return err
	}
	if isNumber(labels[len(labels)-1]) {
		return ErrNumber
	}
	return nil
}

// CheckStrict is Check with the last label starting with a letter or an
// underscore, as RFC 1123 §2.1 has the top-level label alphabetic: a
// mistyped address (10.0.0.256, 10.0.0.1a) is not taken for a name. A
// number starts with a digit, so whatever CheckStrict accepts Check does.
func CheckStrict(s string) error {
	labels, err := split(s)
	if err != nil {
		return err
	}
	if c := labels[len(labels)-1][0]; c >= '0' && c <= '9' {
		return ErrLastLabel
	}
	return nil
}

// split is the rule both checks share: s's labels, once each is valid.
func split(s string) ([]string, error) {
	s = strings.TrimSuffix(s, ".")
	if len(s) > wire.MaxHostLen {
		return nil, ErrTooLong
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return nil, ErrLabels
		}
		for i := range len(l) {
			if c := l[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return nil, ErrLabels
			}
		}
	}
	return labels, nil
}

// isNumber reports whether an IPv4 parser of the inet_aton school would
// read label l as a number: decimal, octal or 0x hex.
func isNumber(l string) bool {
	digits := "0123456789"
	if len(l) > 1 && l[0] == '0' && (l[1] == 'x' || l[1] == 'X') {
		l, digits = l[2:], "0123456789abcdefABCDEF"
		if l == "" {
			return true
		}
	}
	return strings.Trim(l, digits) == ""
}

// LooksNumeric reports whether every label of s is a number: s was meant
// as an IPv4 address.
func LooksNumeric(s string) bool {
	for _, l := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if !isNumber(l) {
			return false
		}
	}
	return true
}
