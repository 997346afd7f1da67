package api

import (
	"errors"
	"net"
	"net/netip"
	"strings"

	"github.com/socket-warp/socket-warp/shared/hostname"
	"github.com/socket-warp/socket-warp/shared/wire"
)

// CheckHost accepts what a connector can dial as the host of a target, and
// what can stand in a Host header as a name: an IP address without brackets
// or zone, or a host name by hostname.CheckStrict, whose last label starts
// with a letter or an underscore. The error says what is wrong, for the
// caller to put after the value.
func CheckHost(s string) error {
	// The bound of the header that carries it to the connector, which
	// counts a trailing dot too.
	if len(s) > wire.MaxHostLen {
		return hostname.ErrTooLong
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
	return hostname.CheckStrict(s)
}

// ErrHostWithPort is CheckHost's error for host:port.
var ErrHostWithPort = errors.New("a host with a port")
