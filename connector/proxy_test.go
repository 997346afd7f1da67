package connector

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/socket-warp/socket-warp/shared/testutil"
	"github.com/socket-warp/socket-warp/shared/wire"
)

// v2Signature starts every PROXY protocol v2 header (spec section 2.2).
const v2Signature = "\r\n\r\n\x00\r\nQUIT\n"

// v2Bytes builds a PROXY v2 header by hand from the spec: signature,
// version 2 + PROXY command, TCP over the family of the addresses, length,
// source address, destination address, source port, destination port.
func v2Bytes(src, dst netip.AddrPort) []byte {
	fam := byte(0x11) // TCP over IPv4
	if src.Addr().Is6() {
		fam = 0x21 // TCP over IPv6
	}
	s, d := src.Addr().AsSlice(), dst.Addr().AsSlice()
	b := append([]byte(v2Signature), 0x21, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(2*len(s)+4))
	b = append(append(b, s...), d...)
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}

func TestProxyHeaderBytes(t *testing.T) {
	for _, tc := range []struct {
		name          string
		version       byte
		client, local string
		want          []byte
	}{
		{"v1 IPv4", wire.ProxyV1, "192.0.2.7:40000", "198.51.100.1:10022",
			[]byte("PROXY TCP4 192.0.2.7 198.51.100.1 40000 10022\r\n")},
		{"v1 IPv6", wire.ProxyV1, "[2001:db8::7]:40000", "[2001:db8::1]:443",
			[]byte("PROXY TCP6 2001:db8::7 2001:db8::1 40000 443\r\n")},
		{"v1 IPv6 zone dropped", wire.ProxyV1, "[fe80::7%eth0]:40000", "[fe80::1%eth0]:443",
			[]byte("PROXY TCP6 fe80::7 fe80::1 40000 443\r\n")},
		{"v1 IPv4-mapped is IPv4", wire.ProxyV1, "[::ffff:192.0.2.7]:40000", "[::ffff:198.51.100.1]:80",
			[]byte("PROXY TCP4 192.0.2.7 198.51.100.1 40000 80\r\n")},
		{"v2 IPv4", wire.ProxyV2, "192.0.2.7:40000", "198.51.100.1:10022",
			v2Bytes(netip.MustParseAddrPort("192.0.2.7:40000"), netip.MustParseAddrPort("198.51.100.1:10022"))},
		{"v2 IPv6", wire.ProxyV2, "[2001:db8::7]:40000", "[2001:db8::1]:443",
			v2Bytes(netip.MustParseAddrPort("[2001:db8::7]:40000"), netip.MustParseAddrPort("[2001:db8::1]:443"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := proxyHeader(wire.Header{TargetHost: "h", TargetPort: 1, ClientAddr: tc.client, LocalAddr: tc.local, ProxyProtocol: tc.version})
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if _, err := h.WriteTo(&buf); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), tc.want) {
				t.Fatalf("header %q, want %q", buf.Bytes(), tc.want)
			}
		})
	}
	if h, err := proxyHeader(wire.Header{TargetHost: "h", TargetPort: 1, ClientAddr: "192.0.2.7:1"}); h != nil || err != nil {
		t.Fatalf("PROXY protocol off: %v, %v; want no header", h, err)
	}
}

// TestProxyHeaderUnparsableAddressRefused: a stream asking for PROXY
// protocol whose addresses are not IP:port is refused as a bad header, and
// before any dial: its target is a closed port, which a dial would have
// reported instead.
func TestProxyHeaderUnparsableAddressRefused(t *testing.T) {
	conn, r := connected(t, nil)
	ln := testutil.Listen(t)
	closed := ln.Addr().(*net.TCPAddr)
	ln.Close()
	for _, tc := range []struct{ client, local, reasonHas string }{
		{"client.example:40000", "198.51.100.1:80", `client address "client.example:40000" is not IP:port`},
		{"192.0.2.7", "198.51.100.1:80", `client address "192.0.2.7" is not IP:port`},
		{"192.0.2.7:99999", "198.51.100.1:80", "client address"},
		{"[2001:db8::7]", "198.51.100.1:80", "client address"},
		{"192.0.2.7:40000", "listener:80", `local address "listener:80" is not IP:port`},
		{"192.0.2.7:40000", "@", "local address"},
	} {
		st := openStream(t, conn)
		b, err := wire.Header{TargetHost: closed.IP.String(), TargetPort: uint16(closed.Port),
			ClientAddr: tc.client, LocalAddr: tc.local, ProxyProtocol: wire.ProxyV2}.Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		write(t, st, append(b, "pipelined"...))
		v, reason := verdict(t, st)
		if v != wire.VerdictBadHeader || !strings.Contains(reason, tc.reasonHas) {
			t.Fatalf("%s -> %s: verdict %s %q, want %s naming %q", tc.client, tc.local, v, reason, wire.VerdictBadHeader, tc.reasonHas)
		}
		expectEnd(t, st)
		abort(st)
	}
	// Bad headers all, none dialled: a dial would have failed.
	r.expectStreams(t, map[string]float64{streamBadHeader: 6})
	expectAlive(t, conn)
}

// TestProxyHeaderReachesTarget: the target reads the PROXY header first and
// then the client's bytes, and nothing of the header comes back through the
// tunnel.
func TestProxyHeaderReachesTarget(t *testing.T) {
	conn, _ := connected(t, nil)
	for _, version := range []byte{wire.ProxyV1, wire.ProxyV2} {
		got := make(chan []byte, 1)
		want := []byte("PROXY TCP4 192.0.2.7 198.51.100.1 40000 10022\r\n")
		if version == wire.ProxyV2 {
			want = v2Bytes(netip.MustParseAddrPort("192.0.2.7:40000"), netip.MustParseAddrPort("198.51.100.1:10022"))
		}
		target := testutil.Serve(t, func(c *net.TCPConn) {
			hdr := make([]byte, len(want))
			if _, err := io.ReadFull(c, hdr); err != nil {
				got <- nil
				return
			}
			got <- hdr
			io.Copy(c, c)
			c.CloseWrite()
		})
		st := openStream(t, conn)
		b, err := wire.Header{TargetHost: target.IP.String(), TargetPort: uint16(target.Port),
			ClientAddr: "192.0.2.7:40000", LocalAddr: "198.51.100.1:10022", OpenedPort: 10022, ProxyProtocol: version}.Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		payload := []byte("the client's own bytes")
		write(t, st, append(b, payload...))
		st.Close()
		if v, reason := verdict(t, st); v != wire.VerdictOK {
			t.Fatalf("v%d: verdict %s %q, want ok", version, v, reason)
		}
		echoed, err := io.ReadAll(st)
		if err != nil || !bytes.Equal(echoed, payload) {
			t.Fatalf("v%d: echo %q, %v; want %q", version, echoed, err, payload)
		}
		if h := <-got; !bytes.Equal(h, want) {
			t.Fatalf("v%d: target read %q, want %q", version, h, want)
		}
	}
}
