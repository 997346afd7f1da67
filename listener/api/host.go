package api

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/socket-warp/socket-warp/shared/wire"
)

// CheckHost accepts what a connector can dial as the host of a target, and
// what can stand in a Host header as a name: an IP address without brackets
// or zone, or a host name as RFC 1123 has it — labels of letters, digits and
// hyphens (not first or last), 1 to 63 bytes each, separated by dots, 253
// bytes in all, one trailing dot allowed — with two liberties: underscores,
// which Docker names use and resolvers accept, and a last label that starts
// with a letter or an underscore, so that a mistyped address (10.0.0.256) is
// not taken for a name (RFC 1123 §2.1: the top-level label is alphabetic).
// The error says what is wrong, for the caller to put after the value.
func CheckHost(s string) error {
	// The bound of the header that carries it to the connector.
	if len(s) > wire.MaxHostLen {
		return fmt.Errorf("longer than %d bytes", wire.MaxHostLen)
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return errors.New("an IPv6 zone cannot be used")
		}
		return nil
	}
	if h, p, err := net.SplitHostPort(s); err == nil && h != "" && p != "" && strings.Trim(p, "0123456789") == "" {
		return ErrHostWithPort
	}
	if strings.HasPrefix(s, "[") {
		return errors.New("an IPv6 address goes without brackets")
	}
	if strings.Contains(s, ":") {
		return errors.New("a colon belongs in an IPv6 address only, and this is none")
	}
	labels := strings.Split(strings.TrimSuffix(s, "."), ".")
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' ||
			strings.IndexFunc(l, func(r rune) bool { return !isLabelByte(r) }) >= 0 {
			return errors.New("not a host name: dot-separated labels of 1-63 letters, digits, hyphens or underscores, no hyphen first or last")
		}
	}
	if c := labels[len(labels)-1][0]; c >= '0' && c <= '9' {
		return errors.New("not an IP address, nor a host name (whose last label starts with a letter)")
	}
	return nil
}

// ErrHostWithPort is CheckHost's error for host:port.
var ErrHostWithPort = errors.New("a host with a port")

func isLabelByte(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
}
