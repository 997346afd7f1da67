package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/socket-warp/socket-warp/shared/testutil"
)

// seen is what a target made of one connection: the PROXY header, if any,
// parsed by go-proxyproto, and the first bytes after it.
type seen struct {
	header *proxyproto.Header // nil: none
	raw    []byte             // the bytes as they arrived, header included
	err    error
}

// proxyTarget parses a PROXY header when the connection starts with one,
// then echoes the rest. Every connection's view goes to the channel.
func proxyTarget(t *testing.T) (*net.TCPAddr, <-chan seen) {
	views := make(chan seen, 4)
	addr := testutil.Serve(t, func(c *net.TCPConn) {
		var raw bytes.Buffer
		br := bufio.NewReader(io.TeeReader(c, &raw))
		h, err := proxyproto.Read(br)
		if err == proxyproto.ErrNoProxyProtocol {
			h, err = nil, nil
		}
		if err != nil {
			views <- seen{err: err}
			return
		}
		// Whatever of the client's bytes bufio already read is in br.
		payload, err := io.ReadAll(br)
		views <- seen{header: h, raw: raw.Bytes(), err: err}
		c.Write(payload)
		c.CloseWrite()
	})
	return addr, views
}

func (rl *runningListener) openProxy(t *testing.T, uid string, target *net.TCPAddr, proxy string) int {
	t.Helper()
	port := testutil.FreePort(t)
	body := fmt.Sprintf(`{"uid":%q,"port":%d,"connect_address":%q,"connect_port":%d,"proxy_protocol":%q}`,
		uid, port, target.IP.String(), target.Port, proxy)
	if r := call(t, http.MethodPost, rl.api+"/open", body); r.status != http.StatusOK || r.body != body {
		t.Fatalf("open: %d %s, want 200 %s", r.status, r.body, body)
	}
	return port
}

// TestProxyProtocol: through a real listener and connector, a target behind
// a port opened with proxy_protocol sees the real client's address and port
// (parsed by go-proxyproto), and the client's bytes unchanged after it.
func TestProxyProtocol(t *testing.T) {
	_, rl, _ := setup(t, "swc-1")
	for _, tc := range []struct {
		proxy   string
		version byte
		prefix  string // what the raw bytes start with
	}{
		{"v1", 1, "PROXY TCP4 127.0.0.1 127.0.0.1 "},
		{"v2", 2, "\r\n\r\n\x00\r\nQUIT\n\x21\x11"},
	} {
		t.Run(tc.proxy, func(t *testing.T) {
			target, views := proxyTarget(t)
			port := rl.openProxy(t, "swc-1", target, tc.proxy)
			c := dialPort(t, port)
			payload := []byte("hello from the real client\n")
			if got := roundTrip(t, c, payload); !bytes.Equal(got, payload) {
				t.Fatalf("echo %q, want %q", got, payload)
			}
			v := <-views
			if v.err != nil || v.header == nil {
				t.Fatalf("target: header %v, err %v", v.header, v.err)
			}
			if v.header.Version != tc.version || v.header.Command != proxyproto.PROXY || v.header.TransportProtocol != proxyproto.TCPv4 {
				t.Fatalf("header version %d command %v transport %v", v.header.Version, v.header.Command, v.header.TransportProtocol)
			}
			src, dst, ok := v.header.TCPAddrs()
			if !ok || src.String() != c.LocalAddr().String() || dst.String() != c.RemoteAddr().String() {
				t.Fatalf("PROXY %v -> %v, want the client %v -> the port %v", src, dst, c.LocalAddr(), c.RemoteAddr())
			}
			if !bytes.HasPrefix(v.raw, []byte(tc.prefix)) || !bytes.HasSuffix(v.raw, payload) {
				t.Fatalf("target received %q, want %q... then the payload", v.raw, tc.prefix)
			}
			// A v1 line checked by hand too: the whole line, nothing more.
			if tc.version == 1 {
				line := fmt.Sprintf("PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\n", c.LocalAddr().(*net.TCPAddr).Port, port)
				if string(v.raw) != line+string(payload) {
					t.Fatalf("target received %q, want %q", v.raw, line+string(payload))
				}
			}
		})
	}

	// Absent means off: the target sees the client's bytes and nothing else.
	t.Run("off", func(t *testing.T) {
		target, views := proxyTarget(t)
		port := rl.open(t, "swc-1", target)
		c := dialPort(t, port)
		plain := []byte("just bytes\n")
		if got := roundTrip(t, c, plain); !bytes.Equal(got, plain) {
			t.Fatalf("echo %q", got)
		}
		if v := <-views; v.err != nil || v.header != nil || !bytes.Equal(v.raw, plain) {
			t.Fatalf("target saw header %v, raw %q, err %v; want exactly %q", v.header, v.raw, v.err, plain)
		}
	})

	r := call(t, http.MethodGet, rl.api+"/list", "")
	if r.status != http.StatusOK || bytes.Count([]byte(r.body), []byte(`"proxy_protocol"`)) != 2 {
		t.Fatalf("list: %d %s, want proxy_protocol on the two ports that have it", r.status, r.body)
	}
}

// TestProxyProtocolKeptAcrossRestart: a port restored from the state file
// after a listener restart still has its targets sent the PROXY header.
func TestProxyProtocolKeptAcrossRestart(t *testing.T) {
	e := newEnv(t)
	cfg := e.listenerConfig()
	first := e.startListener(cfg)
	e.startConnector(e.connectorConfig("swc-1", first.quicPort()))
	testutil.Eventually(t, "connector bound", func() bool { return first.Connected("swc-1") })
	target, views := proxyTarget(t)
	port := first.openProxy(t, "swc-1", target, "v2")

	cfg.Port = first.quicPort()
	first.stop()
	second := e.startListener(cfg)
	testutil.Eventually(t, "connector bound to the new listener", func() bool { return second.Connected("swc-1") })
	c := dialPort(t, port)
	if got := roundTrip(t, c, []byte("again")); string(got) != "again" {
		t.Fatalf("through the restarted listener: %q", got)
	}
	v := <-views
	if v.err != nil || v.header == nil || v.header.Version != 2 {
		t.Fatalf("target: header %v, err %v; want PROXY v2", v.header, v.err)
	}
	if src, _, ok := v.header.TCPAddrs(); !ok || src.String() != c.LocalAddr().String() {
		t.Fatalf("PROXY source %v, want the client %v", src, c.LocalAddr())
	}
}
