// Package testutil holds helpers for tests that run the real daemons on
// loopback: certificates written to a temp dir and the TLS configurations
// made from them, QUIC peers, target servers, a UDP forwarder that can make a
// peer vanish without a goodbye, in-memory logs, and polling.
package testutil

import (
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/socket-warp/socket-warp/shared/pki"
)

// PKI is a CA with the files a listener and a connector need.
type PKI struct {
	CA     *pki.CA
	Dir    string
	CAPath string
}

// NewPKI creates a CA and writes its certificate into a temp dir.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	ca, err := pki.NewCA("socket-warp test CA")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caPath, err := ca.WriteCert(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	return &PKI{CA: ca, Dir: dir, CAPath: caPath}
}

// Issue issues a leaf and writes it as name.crt / name.key.
func (p *PKI) Issue(t testing.TB, name string, opts pki.LeafOptions) (certPath, keyPath string) {
	t.Helper()
	leaf, err := p.CA.Issue(opts)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath, err = leaf.WriteFiles(p.Dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

// ServerCert issues a listener certificate for localhost and 127.0.0.1.
func (p *PKI) ServerCert(t testing.TB) (certPath, keyPath string) {
	return p.Issue(t, "server", pki.LeafOptions{
		CommonName: "localhost", Usage: pki.Server,
		DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
	})
}

// ClientCert issues a connector certificate with CN=uid.
func (p *PKI) ClientCert(t testing.TB, uid string) (certPath, keyPath string) {
	return p.Issue(t, "client-"+uid, pki.LeafOptions{CommonName: uid, Usage: pki.Client})
}

// Listen opens a TCP listener on 127.0.0.1 on a free port and closes it at cleanup.
func Listen(t testing.TB) *net.TCPListener {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln := Listen(t)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// FreeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// Serve runs handle for every connection accepted on a fresh loopback
// listener until cleanup, and waits for the handlers to end.
func Serve(t testing.TB, handle func(*net.TCPConn)) *net.TCPAddr {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return ServeOn(t, ln, handle)
}

// ServeOn is Serve on a listener of the caller's (with socket options of its
// own), which it closes at cleanup.
func ServeOn(t testing.TB, ln *net.TCPListener, handle func(*net.TCPConn)) *net.TCPAddr {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[*net.TCPConn]struct{}{}
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().(*net.TCPAddr)
}

// EchoServer copies back what it reads and half-closes when the client does.
func EchoServer(t testing.TB) *net.TCPAddr {
	return Serve(t, func(c *net.TCPConn) {
		if _, err := io.Copy(c, c); err == nil {
			c.CloseWrite()
			io.Copy(io.Discard, c)
		}
	})
}

// DigestServer reads until the client's EOF and only then answers with the
// SHA-256 of everything it read: a reply that exists only if half-close works.
func DigestServer(t testing.TB) *net.TCPAddr {
	return Serve(t, func(c *net.TCPConn) {
		h := sha256.New()
		if _, err := io.Copy(h, c); err != nil {
			return
		}
		c.Write(h.Sum(nil))
		c.CloseWrite()
	})
}

// RandomBytes returns n random bytes.
func RandomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}
