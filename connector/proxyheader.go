package connector

import (
	"fmt"
	"net"
	"net/netip"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/socket-warp/socket-warp/shared/wire"
)

// proxyHeader is the PROXY protocol header the header asks for, nil for
// none. Source is the client, destination the address it connected to on
// the listener (see package wire).
func proxyHeader(hdr wire.Header) (*proxyproto.Header, error) {
	if hdr.ProxyProtocol == wire.ProxyOff {
		return nil, nil
	}
	src, err := netip.ParseAddrPort(hdr.ClientAddr)
	if err != nil {
		return nil, fmt.Errorf("PROXY protocol: client address %q is not IP:port", hdr.ClientAddr)
	}
	dst, err := netip.ParseAddrPort(hdr.LocalAddr)
	if err != nil {
		return nil, fmt.Errorf("PROXY protocol: local address %q is not IP:port", hdr.LocalAddr)
	}
	// A zone has no place in either version; an IPv4-mapped IPv6 address
	// is the IPv4 client it stands for.
	tcp := func(ap netip.AddrPort) *net.TCPAddr {
		return net.TCPAddrFromAddrPort(netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port()))
	}
	h := proxyproto.HeaderProxyFromAddrs(hdr.ProxyProtocol, tcp(src), tcp(dst))
	if h.Command != proxyproto.PROXY {
		return nil, fmt.Errorf("PROXY protocol: no header for %s -> %s", hdr.ClientAddr, hdr.LocalAddr)
	}
	return h, nil
}
