package tlsutil_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/socket-warp/socket-warp/shared/pki"
	"github.com/socket-warp/socket-warp/shared/testutil"
	"github.com/socket-warp/socket-warp/shared/tlsutil"
)

const msgFailed = "certificate reload failed, keeping the previous certificates"

var serverOpts = pki.LeafOptions{
	CommonName: "localhost", Usage: pki.Server,
	DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
}

// writeAtomic replaces path as a careful tool would: temp file + rename.
func writeAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := pki.WriteFileAtomic(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustIssue(t *testing.T, ca *pki.CA, opts pki.LeafOptions) *pki.Leaf {
	t.Helper()
	leaf, err := ca.Issue(opts)
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

func keyPEM(t *testing.T, l *pki.Leaf) []byte {
	t.Helper()
	b, err := l.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newCA(t *testing.T, name string) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func tlsCert(l *pki.Leaf) tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{l.Cert.Raw}, PrivateKey: l.Key, Leaf: l.Cert}
}

func poolOf(cas ...*pki.CA) *x509.CertPool {
	p := x509.NewCertPool()
	for _, ca := range cas {
		p.AddCert(ca.Cert)
	}
	return p
}

// serverFiles is a listener's certificate, key and client CA on disk.
type serverFiles struct {
	pki                 *testutil.PKI
	cert, key, ca       string
	leaf                *pki.Leaf
	clientCert          tls.Certificate // issued by the CA, for the client side
	clientRoots         *x509.CertPool  // trusts the server
	reloader            *tlsutil.Reloader
	logs                *observer.ObservedLogs
	serverCfg, clientTo *tls.Config
}

func newServerFiles(t *testing.T, opts ...tlsutil.ReloaderOption) *serverFiles {
	t.Helper()
	p := testutil.NewPKI(t)
	f := &serverFiles{pki: p, ca: p.CAPath}
	f.leaf = mustIssue(t, p.CA, serverOpts)
	var err error
	if f.cert, f.key, err = f.leaf.WriteFiles(p.Dir, "server"); err != nil {
		t.Fatal(err)
	}
	f.clientCert = tlsCert(mustIssue(t, p.CA, pki.LeafOptions{CommonName: "uid-1", Usage: pki.Client}))
	f.clientRoots = poolOf(p.CA)
	log, logs := testutil.Logger(t, "reloader")
	if f.reloader, err = tlsutil.NewReloader(f.cert, f.key, f.ca, log, opts...); err != nil {
		t.Fatal(err)
	}
	f.logs = logs
	f.serverCfg = f.reloader.ServerConfig(nil)
	f.clientTo = tlsutil.ClientConfig(f.clientCert, f.clientRoots, "localhost")
	return f
}

// rotate writes a new server certificate and key (key first) and returns it.
func (f *serverFiles) rotate(t *testing.T) *pki.Leaf {
	t.Helper()
	leaf := mustIssue(t, f.pki.CA, serverOpts)
	writeAtomic(t, f.key, keyPEM(t, leaf))
	writeAtomic(t, f.cert, leaf.CertPEM())
	return leaf
}

// serverSerial handshakes with the reloader's server configuration and
// returns the serial of the certificate the server presented.
func (f *serverFiles) serverSerial(t *testing.T) *big.Int {
	t.Helper()
	r := handshake(t, f.serverCfg, f.clientTo)
	if r.serverErr != nil || r.clientErr != nil {
		t.Fatalf("handshake failed: server %v, client %v", r.serverErr, r.clientErr)
	}
	return r.clientState.PeerCertificates[0].SerialNumber
}

func wantSerial(t *testing.T, got *big.Int, want *pki.Leaf, what string) {
	t.Helper()
	if got.Cmp(want.Cert.SerialNumber) != 0 {
		t.Fatalf("%s: serial %x, want %x", what, got, want.Cert.SerialNumber)
	}
}

// run runs the reloader's Run until the test ends and checks that it
// returns then.
func run(t *testing.T, r *tlsutil.Reloader) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(safety):
			t.Error("Run did not return after its context ended")
		}
	})
}

func waitNotified(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(safety):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func notNotified(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("unexpected notification: %s", what)
	default:
	}
}

// echoTLS serves cfg on loopback and echoes what each client sends.
func echoTLS(t *testing.T, cfg *tls.Config) *net.TCPAddr {
	return testutil.Serve(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(safety))
		tc := tls.Server(c, cfg)
		if tc.Handshake() != nil {
			return
		}
		io.Copy(tc, tc)
	})
}

// dialEcho connects, completes the handshake and one echo round trip (in
// TLS 1.3 a refused client certificate shows only after the handshake).
func dialEcho(addr *net.TCPAddr, cfg *tls.Config) (*tls.Conn, error) {
	raw, err := net.DialTCP("tcp", nil, addr)
	if err != nil {
		return nil, err
	}
	raw.SetDeadline(time.Now().Add(safety))
	c := tls.Client(raw, cfg)
	if err := echo(c, "hello"); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func echo(c *tls.Conn, msg string) error {
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if string(got) != msg {
		return errors.New("echo: got " + string(got))
	}
	return nil
}

func TestReloaderRotateServerCert(t *testing.T) {
	f := newServerFiles(t, tlsutil.WithPollInterval(0)) // file events only
	notified := f.reloader.Subscribe()
	run(t, f.reloader)
	addr := echoTLS(t, f.serverCfg)

	before, err := dialEcho(addr, f.clientTo)
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	wantSerial(t, before.ConnectionState().PeerCertificates[0].SerialNumber, f.leaf, "before rotation")

	next := f.rotate(t)
	waitNotified(t, notified, "the reload")
	wantSerial(t, f.serverSerial(t), next, "new handshake after rotation")
	if f.reloader.Leaf().SerialNumber.Cmp(next.Cert.SerialNumber) != 0 {
		t.Errorf("Leaf() serial %x, want %x", f.reloader.Leaf().SerialNumber, next.Cert.SerialNumber)
	}
	after, err := dialEcho(addr, f.clientTo)
	if err != nil {
		t.Fatal(err)
	}
	after.Close()
	wantSerial(t, after.ConnectionState().PeerCertificates[0].SerialNumber, next, "echo server after rotation")

	// The connection made before the rotation is still up.
	if err := echo(before, "still there"); err != nil {
		t.Fatalf("connection established before the rotation: %v", err)
	}
}

func TestReloaderRotateCA(t *testing.T) {
	f := newServerFiles(t, tlsutil.WithPollInterval(0))
	notified := f.reloader.Subscribe()
	run(t, f.reloader)

	ca2 := newCA(t, "replacement client CA")
	fromOld := f.clientCert
	fromNew := tlsCert(mustIssue(t, ca2, pki.LeafOptions{CommonName: "uid-1", Usage: pki.Client}))
	// Present the certificate whatever CAs the server asks for, so that the
	// server, not the client, is what refuses it.
	presenting := func(c tls.Certificate) *tls.Config {
		cfg := tlsutil.ClientConfig(tls.Certificate{}, f.clientRoots, "localhost")
		cfg.Certificates = nil
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
		return cfg
	}
	accepted := func(c tls.Certificate) bool {
		r := handshake(t, f.serverCfg, presenting(c))
		return r.serverErr == nil && r.clientErr == nil
	}
	unknownAuthority := func(c tls.Certificate) bool {
		var e x509.UnknownAuthorityError
		return errors.As(handshake(t, f.serverCfg, presenting(c)).serverErr, &e)
	}

	if !accepted(fromOld) {
		t.Fatal("client certificate from the configured CA refused")
	}
	if !unknownAuthority(fromNew) {
		t.Fatal("client certificate from the other CA not refused as unknown authority")
	}

	writeAtomic(t, f.ca, ca2.CertPEM()) // replaced, not appended
	waitNotified(t, notified, "the reload")

	if !accepted(fromNew) {
		t.Error("client certificate from the new CA refused")
	}
	if !unknownAuthority(fromOld) {
		t.Error("client certificate from the replaced CA not refused as unknown authority")
	}
	// The server's own certificate is untouched.
	h := handshake(t, f.serverCfg, presenting(fromNew))
	if h.clientErr != nil {
		t.Fatal(h.clientErr)
	}
	wantSerial(t, h.clientState.PeerCertificates[0].SerialNumber, f.leaf, "server certificate")
}

func TestReloaderBrokenFileKeepsPrevious(t *testing.T) {
	f := newServerFiles(t) // no Run: Reload is called directly
	notified := f.reloader.Subscribe()
	other := mustIssue(t, f.pki.CA, serverOpts)
	good := map[string][]byte{}
	for _, p := range []string{f.cert, f.key, f.ca} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		good[p] = b
	}

	for _, tc := range []struct {
		name     string
		path     string
		data     []byte // nil: remove the file
		mustName []string
	}{
		{"garbage certificate", f.cert, []byte("garbage\n"), []string{f.cert}},
		{"garbage key", f.key, []byte("garbage\n"), []string{f.key}},
		{"garbage CA", f.ca, []byte("garbage\n"), []string{f.ca}},
		{"empty certificate", f.cert, []byte{}, []string{f.cert}},
		{"certificate of another key", f.cert, other.CertPEM(), []string{f.cert, f.key}},
		{"missing key", f.key, nil, []string{f.key}},
		{"missing CA", f.ca, nil, []string{f.ca}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.data == nil {
				if err := os.Remove(tc.path); err != nil {
					t.Fatal(err)
				}
			} else {
				writeAtomic(t, tc.path, tc.data)
			}
			t.Cleanup(func() { writeAtomic(t, tc.path, good[tc.path]) })
			failures := f.reloader.Failures()

			err := f.reloader.Reload()
			testutil.WantErr(t, err, tc.mustName...)
			if tc.data == nil && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("error %q does not wrap fs.ErrNotExist", err)
			}
			if n := f.reloader.Failures() - failures; n != 1 {
				t.Fatalf("%d failures counted, want 1", n)
			}
			notNotified(t, notified, "a failed reload")
			wantSerial(t, f.serverSerial(t), f.leaf, "handshake after the failed reload")
			if f.reloader.Leaf().SerialNumber.Cmp(f.leaf.Cert.SerialNumber) != 0 {
				t.Error("Leaf() changed after a failed reload")
			}
		})
	}
	if err := f.reloader.Reload(); err != nil {
		t.Fatalf("Reload of the repaired files: %v", err)
	}
	notNotified(t, notified, "the reload of the repaired files: nothing changed in the end")
}

// The certificate arrives before its key: the reload in between fails and
// keeps the old pair, the key's arrival completes it, and no handshake ever
// sees a certificate with the wrong key.
func TestReloaderCertificateBeforeKey(t *testing.T) {
	f := newServerFiles(t, tlsutil.WithPollInterval(0))
	notified := f.reloader.Subscribe()
	run(t, f.reloader)
	addr := echoTLS(t, f.serverCfg)
	next := mustIssue(t, f.pki.CA, serverOpts)

	// Handshakes all along: each must succeed with the old or the new pair.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var handshakes int
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			c, err := dialEcho(addr, f.clientTo)
			if err != nil {
				t.Errorf("handshake during the rotation: %v", err)
				return
			}
			s := c.ConnectionState().PeerCertificates[0].SerialNumber
			c.Close()
			if s.Cmp(f.leaf.Cert.SerialNumber) != 0 && s.Cmp(next.Cert.SerialNumber) != 0 {
				t.Errorf("handshake during the rotation: unknown serial %x", s)
				return
			}
			handshakes++
		}
	})
	defer func() {
		close(stop)
		wg.Wait()
		if handshakes == 0 {
			t.Error("no handshake ran during the rotation")
		}
	}()

	writeAtomic(t, f.cert, next.CertPEM())
	testutil.Eventually(t, "the failed reload of the mismatched pair", func() bool { return f.reloader.Failures() > 0 })
	// The line is the feature: a reload that Run starts has nobody to
	// return its error to, and the troubleshooting table lists the line.
	if !testutil.Logged(f.logs, msgFailed, "error", f.cert) {
		t.Errorf("no %q line naming %s", msgFailed, f.cert)
	}
	notNotified(t, notified, "reload of a certificate without its key")
	wantSerial(t, f.serverSerial(t), f.leaf, "while the key is missing")

	writeAtomic(t, f.key, keyPEM(t, next))
	waitNotified(t, notified, "the reload of the complete pair")
	wantSerial(t, f.serverSerial(t), next, "after the key arrived")
}

// The SIGHUP path: Reload without Run.
func TestReloaderReloadWithoutRun(t *testing.T) {
	f := newServerFiles(t)
	notified := f.reloader.Subscribe()
	if err := f.reloader.Reload(); err != nil {
		t.Fatal(err)
	}
	notNotified(t, notified, "Reload with nothing changed")

	next := f.rotate(t)
	wantSerial(t, f.serverSerial(t), f.leaf, "before Reload") // nothing watches
	if err := f.reloader.Reload(); err != nil {
		t.Fatal(err)
	}
	waitNotified(t, notified, "Reload")
	wantSerial(t, f.serverSerial(t), next, "after Reload")
	if err := f.reloader.Reload(); err != nil {
		t.Fatal(err)
	}
	notNotified(t, notified, "a second Reload with nothing changed")

	if n := f.reloader.Failures(); n != 0 {
		t.Errorf("%d failed reloads, want none", n)
	}
	// The line is the feature: the certificate's lines (loaded, reloaded)
	// describe it, never with its key.
	for _, e := range f.logs.All() {
		for k, v := range e.ContextMap() {
			if s, ok := v.(string); ok && strings.Contains(s, "PRIVATE KEY") {
				t.Errorf("log line %q field %s holds key material", e.Message, k)
			}
		}
	}
}

// The connector's side: even a long-lived configuration presents the
// rotated client certificate, and a fresh one trusts the rotated CA.
func TestReloaderClientConfig(t *testing.T) {
	p := testutil.NewPKI(t)
	server := tlsCert(mustIssue(t, p.CA, serverOpts))
	serverCfg := tlsutil.ServerConfig(server, poolOf(p.CA))
	first := mustIssue(t, p.CA, pki.LeafOptions{CommonName: "uid-1", Usage: pki.Client})
	certPath, keyPath, err := first.WriteFiles(p.Dir, "client")
	if err != nil {
		t.Fatal(err)
	}
	r, err := tlsutil.NewReloader(certPath, keyPath, p.CAPath, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	longLived := r.ClientConfig("localhost")
	clientSerial := func(cfg *tls.Config) *big.Int {
		t.Helper()
		h := handshake(t, serverCfg, cfg)
		if h.serverErr != nil || h.clientErr != nil {
			t.Fatalf("handshake failed: server %v, client %v", h.serverErr, h.clientErr)
		}
		return h.serverState.PeerCertificates[0].SerialNumber
	}
	wantSerial(t, clientSerial(longLived), first, "client certificate")

	second := mustIssue(t, p.CA, pki.LeafOptions{CommonName: "uid-1", Usage: pki.Client})
	writeAtomic(t, keyPath, keyPEM(t, second))
	writeAtomic(t, certPath, second.CertPEM())
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	wantSerial(t, clientSerial(longLived), second, "long-lived config after rotation")
	wantSerial(t, clientSerial(r.ClientConfig("localhost")), second, "new config after rotation")

	// The listener moves to a certificate from a new CA, which the
	// connector's CA file now holds besides the old one.
	ca2 := newCA(t, "new server CA")
	newServerCfg := tlsutil.ServerConfig(tlsCert(mustIssue(t, ca2, serverOpts)), poolOf(p.CA))
	writeAtomic(t, p.CAPath, append(p.CA.CertPEM(), ca2.CertPEM()...))
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if h := handshake(t, newServerCfg, r.ClientConfig("localhost")); h.serverErr != nil || h.clientErr != nil {
		t.Errorf("fresh config after the CA rotation: server %v, client %v", h.serverErr, h.clientErr)
	}
}

func TestReloaderRunStops(t *testing.T) {
	f := newServerFiles(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.reloader.Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(safety):
		t.Fatal("Run did not return after its context ended")
	}
	// goleak (TestMain) checks that the watcher's goroutines ended too.
}

// Kubernetes mounts a secret as symlinks through "..data", which it swaps
// for a symlink to a new directory on every update.
func TestReloaderKubernetesSecretSwap(t *testing.T) {
	p := testutil.NewPKI(t)
	dir := t.TempDir()
	writeVersion := func(version string, leaf *pki.Leaf) {
		t.Helper()
		vdir := filepath.Join(dir, version)
		if err := os.Mkdir(vdir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeAtomic(t, filepath.Join(vdir, "tls.crt"), leaf.CertPEM())
		writeAtomic(t, filepath.Join(vdir, "tls.key"), keyPEM(t, leaf))
		writeAtomic(t, filepath.Join(vdir, "ca.crt"), p.CA.CertPEM())
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(version, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	first := mustIssue(t, p.CA, serverOpts)
	writeVersion("..2026_01_01_00_00_00.1", first)
	for _, name := range []string{"tls.crt", "tls.key", "ca.crt"} {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	log, _ := testutil.Logger(t, "reloader")
	r, err := tlsutil.NewReloader(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt"),
		log, tlsutil.WithPollInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	notified := r.Subscribe()
	run(t, r)
	f := &serverFiles{serverCfg: r.ServerConfig(nil), clientTo: tlsutil.ClientConfig(
		tlsCert(mustIssue(t, p.CA, pki.LeafOptions{CommonName: "uid-1", Usage: pki.Client})), poolOf(p.CA), "localhost")}
	wantSerial(t, f.serverSerial(t), first, "before the swap")

	second := mustIssue(t, p.CA, serverOpts)
	writeVersion("..2026_01_02_00_00_00.2", second)
	waitNotified(t, notified, "the reload after the swap")
	wantSerial(t, f.serverSerial(t), second, "after the swap")
}

// Polling catches what no file event reports: here the CA file is a
// symlink into a directory that is not watched.
func TestReloaderPollFallback(t *testing.T) {
	p := testutil.NewPKI(t)
	elsewhere := filepath.Join(t.TempDir(), "real-ca.crt")
	writeAtomic(t, elsewhere, p.CA.CertPEM())
	caLink := filepath.Join(p.Dir, "ca-link.crt")
	if err := os.Symlink(elsewhere, caLink); err != nil {
		t.Fatal(err)
	}
	certPath, keyPath := p.ServerCert(t)
	log, _ := testutil.Logger(t, "reloader")
	r, err := tlsutil.NewReloader(certPath, keyPath, caLink, log, tlsutil.WithPollInterval(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	notified := r.Subscribe()
	run(t, r)

	ca2 := newCA(t, "additional client CA")
	client := tlsCert(mustIssue(t, ca2, pki.LeafOptions{CommonName: "uid-1", Usage: pki.Client}))
	clientCfg := tlsutil.ClientConfig(client, poolOf(p.CA), "localhost")
	if h := handshake(t, r.ServerConfig(nil), clientCfg); h.serverErr == nil {
		t.Fatal("client certificate from a CA not yet configured accepted")
	}
	writeAtomic(t, elsewhere, bytes.Join([][]byte{p.CA.CertPEM(), ca2.CertPEM()}, nil))
	waitNotified(t, notified, "the reload found by polling")
	if h := handshake(t, r.ServerConfig(nil), clientCfg); h.serverErr != nil || h.clientErr != nil {
		t.Errorf("client certificate from the added CA: server %v, client %v", h.serverErr, h.clientErr)
	}
}

func TestNewReloaderErrorsNameTheFile(t *testing.T) {
	p := testutil.NewPKI(t)
	certPath, keyPath := p.ServerCert(t)
	otherCert, _ := p.ClientCert(t, "uid-1")
	missing := filepath.Join(p.Dir, "missing.pem")
	garbage := writeFile(t, p.Dir, "garbage.pem", []byte("garbage\n"))
	for _, tc := range []struct {
		name          string
		cert, key, ca string
		mustName      []string
	}{
		{"missing certificate", missing, keyPath, p.CAPath, []string{missing}},
		{"missing key", certPath, missing, p.CAPath, []string{missing}},
		{"missing CA", certPath, keyPath, missing, []string{missing}},
		{"garbage CA", certPath, keyPath, garbage, []string{garbage}},
		{"mismatched pair", otherCert, keyPath, p.CAPath, []string{otherCert, keyPath}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := tlsutil.NewReloader(tc.cert, tc.key, tc.ca, zap.NewNop())
			if r != nil {
				t.Error("NewReloader returned a Reloader with its error")
			}
			testutil.WantErr(t, err, tc.mustName...)
		})
	}
}

// What the daemons do: QUIC, with the listener's and the connector's files
// both rotated while a connection is up.
func TestReloaderOverQUIC(t *testing.T) {
	f := newServerFiles(t)
	ln, port := testutil.QUICServer(t, f.serverCfg, nil)
	addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	clientCert, clientKey := f.pki.ClientCert(t, "uid-1")
	connector, err := tlsutil.NewReloader(clientCert, clientKey, f.ca, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), safety)
	defer cancel()
	dial := func() (client, server *quic.Conn) {
		t.Helper()
		client = testutil.QUICDial(t, ctx, addr, connector.ClientConfig("localhost"), nil)
		server, err := ln.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return client, server
	}
	serials := func(client, server *quic.Conn) (serverSerial, clientSerial *big.Int) {
		return client.ConnectionState().TLS.PeerCertificates[0].SerialNumber,
			server.ConnectionState().TLS.PeerCertificates[0].SerialNumber
	}

	oldClient, oldServer := dial()
	s, c := serials(oldClient, oldServer)
	wantSerial(t, s, f.leaf, "server certificate")
	firstClientSerial := connector.Leaf().SerialNumber
	if c.Cmp(firstClientSerial) != 0 {
		t.Fatalf("client serial %x, want %x", c, firstClientSerial)
	}

	next := f.rotate(t)
	nextClient := mustIssue(t, f.pki.CA, pki.LeafOptions{CommonName: "uid-1", Usage: pki.Client})
	writeAtomic(t, clientKey, keyPEM(t, nextClient))
	writeAtomic(t, clientCert, nextClient.CertPEM())
	for _, r := range []*tlsutil.Reloader{f.reloader, connector} {
		if err := r.Reload(); err != nil {
			t.Fatal(err)
		}
	}

	s, c = serials(dial())
	wantSerial(t, s, next, "server certificate after rotation")
	wantSerial(t, c, nextClient, "client certificate after rotation")

	// The connection from before the rotation still carries streams.
	str, err := oldClient.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := str.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	str.Close()
	peer, err := oldServer.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(peer)
	if err != nil || string(got) != "ping" {
		t.Fatalf("server read %q, %v", got, err)
	}
	peer.Write([]byte("pong"))
	peer.Close()
	if got, err := io.ReadAll(str); err != nil || string(got) != "pong" {
		t.Fatalf("client read %q, %v", got, err)
	}
}

// CACerts follows the CA file: every certificate of it, in file order; a
// broken CA file keeps the previous ones, as it keeps the pool.
func TestReloaderCACerts(t *testing.T) {
	f := newServerFiles(t) // no Run: Reload is called directly
	raws := func() [][]byte {
		var out [][]byte
		for _, c := range f.reloader.CACerts() {
			out = append(out, c.Raw)
		}
		return out
	}
	want := func(what string, cas ...*pki.CA) {
		t.Helper()
		got := raws()
		if len(got) != len(cas) {
			t.Fatalf("%s: CACerts holds %d certificates, want %d", what, len(got), len(cas))
		}
		for i, ca := range cas {
			if !bytes.Equal(got[i], ca.Cert.Raw) {
				t.Errorf("%s: CACerts[%d] is not %q", what, i, ca.Cert.Subject.CommonName)
			}
		}
	}
	want("at start", f.pki.CA)

	ca2 := newCA(t, "replacement client CA")
	junk := []byte("-----BEGIN JUNK-----\nAAAA\n-----END JUNK-----\n") // skipped, as by the pool
	writeAtomic(t, f.ca, append(append(ca2.CertPEM(), junk...), f.pki.CA.CertPEM()...))
	if err := f.reloader.Reload(); err != nil {
		t.Fatal(err)
	}
	want("after adding a CA", ca2, f.pki.CA)

	writeAtomic(t, f.ca, []byte("not PEM at all\n"))
	if err := f.reloader.Reload(); err == nil {
		t.Fatal("a broken CA file reloaded")
	}
	want("after a broken CA file", ca2, f.pki.CA)

	writeAtomic(t, f.ca, ca2.CertPEM())
	if err := f.reloader.Reload(); err != nil {
		t.Fatal(err)
	}
	want("after replacing the CAs", ca2)
}

// Every client certificate the handshake refuses is reported once, with the
// client's address and a reason from the fixed set; an accepted one is not
// reported at all.
func TestReloaderReportsRefusals(t *testing.T) {
	f := newServerFiles(t)
	var (
		mu      sync.Mutex
		reports []tlsutil.Refusal
	)
	serverCfg := f.reloader.ServerConfig(func(r tlsutil.Refusal) {
		mu.Lock()
		defer mu.Unlock()
		reports = append(reports, r)
	})
	other := newCA(t, "some other CA")
	presenting := func(c *tls.Certificate) *tls.Config {
		cfg := tlsutil.ClientConfig(tls.Certificate{}, f.clientRoots, "localhost")
		cfg.Certificates = nil
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c == nil {
				return &tls.Certificate{}, nil // none
			}
			return c, nil
		}
		return cfg
	}
	for _, tc := range []struct {
		name   string
		cert   *tls.Certificate
		reason string // "" when accepted
	}{
		{"valid", &f.clientCert, ""},
		{"no certificate", nil, tlsutil.ReasonNoCertificate},
		{"another CA", ptr(tlsCert(mustIssue(t, other, pki.LeafOptions{CommonName: "uid-1", Usage: pki.Client}))),
			tlsutil.ReasonUnknownAuthority},
		{"expired", ptr(tlsCert(mustIssue(t, f.pki.CA, pki.LeafOptions{CommonName: "uid-1", Usage: pki.Client,
			NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}))),
			tlsutil.ReasonExpired},
		{"serverAuth only", ptr(tlsCert(mustIssue(t, f.pki.CA, serverOpts))), tlsutil.ReasonBadUsage},
		// x509 takes both for good for any use; the listener wants clientAuth named.
		{"no extended key usage", ptr(tlsCert(mustIssue(t, f.pki.CA, pki.LeafOptions{CommonName: "uid-1", Usage: pki.NoEKU}))),
			tlsutil.ReasonBadUsage},
		{"anyExtendedKeyUsage", ptr(tlsCert(mustIssue(t, f.pki.CA, pki.LeafOptions{CommonName: "uid-1", Usage: pki.AnyEKU}))),
			tlsutil.ReasonBadUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			reports = nil
			mu.Unlock()
			h := handshake(t, serverCfg, presenting(tc.cert))
			mu.Lock()
			got := slices.Clone(reports)
			mu.Unlock()
			if tc.reason == "" {
				if h.serverErr != nil || h.clientErr != nil || len(got) != 0 {
					t.Fatalf("valid certificate: server %v, client %v, reports %v", h.serverErr, h.clientErr, got)
				}
				return
			}
			if h.serverErr == nil || h.clientErr == nil {
				t.Fatalf("not refused: server %v, client %v", h.serverErr, h.clientErr)
			}
			if len(got) != 1 {
				t.Fatalf("%d reports, want 1: %v", len(got), got)
			}
			if got[0].Reason != tc.reason || got[0].Err == nil {
				t.Errorf("reason %q (%v), want %q", got[0].Reason, got[0].Err, tc.reason)
			}
			if a, ok := got[0].Remote.(*net.TCPAddr); !ok || !a.IP.IsLoopback() {
				t.Errorf("remote %v, want the client's loopback address", got[0].Remote)
			}
		})
	}
}
