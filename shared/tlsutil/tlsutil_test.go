package tlsutil_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/shared/pki"
	"github.com/socket-warp/socket-warp/shared/testutil"
	"github.com/socket-warp/socket-warp/shared/tlsutil"
	"github.com/socket-warp/socket-warp/shared/wire"
)

func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }

// safety bounds each handshake so a bug fails the test instead of hanging it.
const safety = 30 * time.Second

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadCertPoolErrorsNameTheFile(t *testing.T) {
	p := testutil.NewPKI(t)
	_, keyPath := p.ClientCert(t, "uid-1")
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	corrupt := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})

	for _, tc := range []struct {
		name     string
		path     string
		notExist bool
	}{
		{"missing file", filepath.Join(dir, "missing.pem"), true},
		{"empty file", writeFile(t, dir, "empty.pem", nil), false},
		{"not PEM", writeFile(t, dir, "text.pem", []byte("this is not a certificate\n")), false},
		{"DER instead of PEM", writeFile(t, dir, "ca.der", p.CA.Cert.Raw), false},
		{"only a private key", writeFile(t, dir, "key-only.pem", keyPEM), false},
		{"corrupt certificate", writeFile(t, dir, "corrupt.pem", corrupt), false},
		{"a directory", dir, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool, err := tlsutil.LoadCertPool(tc.path)
			if err == nil {
				t.Fatalf("LoadCertPool(%s) = %v, nil; want an error", tc.path, pool)
			}
			if !strings.Contains(err.Error(), tc.path) {
				t.Errorf("error %q does not name the file %s", err, tc.path)
			}
			if tc.notExist && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("error %q does not wrap fs.ErrNotExist", err)
			}
		})
	}

	if _, err := tlsutil.LoadCertPool(""); err == nil {
		t.Error(`LoadCertPool("") succeeded, want an error`)
	}
}

// A bundle holds several CAs; other PEM blocks in it are skipped.
func TestLoadCertPoolReadsEveryCertificate(t *testing.T) {
	var bundle []byte
	var leaves []*x509.Certificate
	for _, name := range []string{"CA one", "CA two"} {
		ca, err := pki.NewCA(name)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := ca.Issue(pki.LeafOptions{CommonName: "uid", Usage: pki.Client})
		if err != nil {
			t.Fatal(err)
		}
		keyPEM, err := leaf.KeyPEM()
		if err != nil {
			t.Fatal(err)
		}
		bundle = append(bundle, keyPEM...)
		bundle = append(bundle, "comment between blocks\n"...)
		bundle = append(bundle, ca.CertPEM()...)
		leaves = append(leaves, leaf.Cert)
	}
	pool, err := tlsutil.LoadCertPool(writeFile(t, t.TempDir(), "bundle.pem", bundle))
	if err != nil {
		t.Fatal(err)
	}
	for i, leaf := range leaves {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		if err != nil {
			t.Errorf("leaf of CA %d does not verify against the bundle: %v", i+1, err)
		}
	}
}

func TestLoadKeyPair(t *testing.T) {
	p := testutil.NewPKI(t)
	certA, keyA := p.ClientCert(t, "uid-a")
	certB, keyB := p.ClientCert(t, "uid-b")
	missing := filepath.Join(p.Dir, "missing.pem")

	cert, err := tlsutil.LoadKeyPair(certA, keyA)
	if err != nil {
		t.Fatalf("LoadKeyPair: %v", err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Subject.CommonName != "uid-a" {
		t.Errorf("loaded certificate CN %q, want uid-a", leaf.Subject.CommonName)
	}

	for _, tc := range []struct {
		name      string
		cert, key string
		mustName  []string
		notExist  bool
	}{
		{"missing certificate", missing, keyA, []string{missing}, true},
		{"missing key", certA, missing, []string{missing}, true},
		{"mismatched pair", certA, keyB, []string{certA, keyB}, false},
		{"swapped paths", keyB, certB, []string{keyB, certB}, false},
		{"empty key file", certA, writeFile(t, p.Dir, "empty.key", nil), []string{certA, filepath.Join(p.Dir, "empty.key")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tlsutil.LoadKeyPair(tc.cert, tc.key)
			if err == nil {
				t.Fatalf("LoadKeyPair(%s, %s) succeeded, want an error", tc.cert, tc.key)
			}
			for _, path := range tc.mustName {
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name %s", err, path)
				}
			}
			if tc.notExist && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("error %q does not wrap fs.ErrNotExist", err)
			}
		})
	}

	for _, paths := range [][2]string{{"", keyA}, {certA, ""}} {
		if _, err := tlsutil.LoadKeyPair(paths[0], paths[1]); err == nil {
			t.Errorf("LoadKeyPair(%q, %q) succeeded, want an error", paths[0], paths[1])
		}
	}
}

func TestConfigs(t *testing.T) {
	s := tlsutil.ServerConfig(tls.Certificate{}, x509.NewCertPool())
	// RequestClientCert: the certificate is required and verified by
	// VerifyConnection, which can say why it refuses one.
	if s.MinVersion != tls.VersionTLS13 || s.ClientAuth != tls.RequestClientCert || s.VerifyConnection == nil ||
		!slices.Equal(s.NextProtos, []string{wire.ALPN}) || s.InsecureSkipVerify {
		t.Errorf("ServerConfig: MinVersion %#x, ClientAuth %v, NextProtos %q", s.MinVersion, s.ClientAuth, s.NextProtos)
	}
	c := tlsutil.ClientConfig(tls.Certificate{}, x509.NewCertPool(), "listener.example")
	if c.MinVersion != tls.VersionTLS13 || c.ServerName != "listener.example" ||
		!slices.Equal(c.NextProtos, []string{wire.ALPN}) || c.InsecureSkipVerify {
		t.Errorf("ClientConfig: MinVersion %#x, ServerName %q, NextProtos %q", c.MinVersion, c.ServerName, c.NextProtos)
	}
}

type handshakeResult struct {
	serverErr, clientErr     error
	serverState, clientState tls.ConnectionState
}

// handshake runs a TLS handshake over loopback TCP. The server then sends one
// byte, so that a client whose certificate the server refused (which in TLS
// 1.3 the client learns only after its own handshake is done) fails too.
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) handshakeResult {
	t.Helper()
	ln := testutil.Listen(t)
	type serverSide struct {
		err   error
		state tls.ConnectionState
	}
	done := make(chan serverSide, 1)
	go func() {
		c, err := ln.AcceptTCP()
		if err != nil {
			done <- serverSide{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(safety))
		tc := tls.Server(c, serverCfg)
		err = tc.Handshake()
		if err == nil {
			_, err = tc.Write([]byte{1})
		}
		done <- serverSide{err: err, state: tc.ConnectionState()}
	}()

	raw, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(safety))
	tc := tls.Client(raw, clientCfg)
	clientErr := tc.Handshake()
	if clientErr == nil {
		_, clientErr = io.ReadFull(tc, make([]byte, 1))
	}
	s := <-done
	return handshakeResult{serverErr: s.err, clientErr: clientErr, serverState: s.state, clientState: tc.ConnectionState()}
}

func issue(t *testing.T, ca *pki.CA, opts pki.LeafOptions) tls.Certificate {
	t.Helper()
	leaf, err := ca.Issue(opts)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{leaf.Cert.Raw}, PrivateKey: leaf.Key, Leaf: leaf.Cert}
}

func TestHandshake(t *testing.T) {
	// The listener's files, loaded as the daemons load them.
	p := testutil.NewPKI(t)
	pool, err := tlsutil.LoadCertPool(p.CAPath)
	if err != nil {
		t.Fatal(err)
	}
	serverCert, err := tlsutil.LoadKeyPair(p.ServerCert(t))
	if err != nil {
		t.Fatal(err)
	}
	clientCert, err := tlsutil.LoadKeyPair(p.ClientCert(t, "uid-1"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewCA("some other CA")
	if err != nil {
		t.Fatal(err)
	}
	serverOpts := pki.LeafOptions{
		CommonName: "localhost", Usage: pki.Server,
		DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	foreignClient := issue(t, other, pki.LeafOptions{CommonName: "uid-1", Usage: pki.Client})
	withUsage := func(o pki.LeafOptions, u pki.Usage) pki.LeafOptions { o.Usage = u; return o }

	unknownAuthority := func(err error) bool {
		var e x509.UnknownAuthorityError
		return errors.As(err, &e)
	}
	incompatibleUsage := func(err error) bool {
		var e x509.CertificateInvalidError
		return errors.As(err, &e) && e.Reason == x509.IncompatibleUsage
	}
	wrongHost := func(err error) bool {
		var e x509.HostnameError
		return errors.As(err, &e)
	}
	anyError := func(err error) bool { return err != nil }

	for _, tc := range []struct {
		name       string
		serverCert tls.Certificate
		clientCert *tls.Certificate // nil: no certificate at all
		serverName string
		tweak      func(*tls.Config) // applied to the client config
		// For a refused handshake: which side detects the problem and what it says.
		serverSays, clientSays func(error) bool
	}{
		{name: "matching certificates", serverCert: serverCert, clientCert: &clientCert, serverName: "localhost"},
		{name: "server name is the IP", serverCert: serverCert, clientCert: &clientCert, serverName: "127.0.0.1"},
		{name: "client cert for both uses", serverCert: serverCert, serverName: "localhost",
			clientCert: ptr(issue(t, p.CA, pki.LeafOptions{CommonName: "uid-1", Usage: pki.Both}))},

		{name: "client without certificate", serverCert: serverCert, serverName: "localhost",
			serverSays: anyError},
		// crypto/tls on the client already holds back a certificate that does
		// not chain to a CA the server asks for...
		{name: "client cert from another CA", serverCert: serverCert, serverName: "localhost",
			clientCert: &foreignClient,
			serverSays: anyError},
		// ...so make it present the certificate anyway: the server refuses it.
		{name: "client cert from another CA, presented", serverCert: serverCert, serverName: "localhost",
			tweak: func(c *tls.Config) {
				c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &foreignClient, nil }
			},
			serverSays: unknownAuthority},
		{name: "client cert with serverAuth only", serverCert: serverCert, serverName: "localhost",
			clientCert: ptr(issue(t, p.CA, withUsage(serverOpts, pki.Server))),
			serverSays: incompatibleUsage},
		{name: "client cert for code signing", serverCert: serverCert, serverName: "localhost",
			clientCert: ptr(issue(t, p.CA, pki.LeafOptions{CommonName: "uid-1", Usage: pki.CodeSigning})),
			serverSays: incompatibleUsage},
		{name: "client cert expired", serverCert: serverCert, serverName: "localhost",
			clientCert: ptr(issue(t, p.CA, pki.LeafOptions{CommonName: "uid-1", Usage: pki.Client,
				NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})),
			serverSays: anyError},

		{name: "server name mismatch", serverCert: serverCert, clientCert: &clientCert, serverName: "other.example",
			clientSays: wrongHost},
		{name: "server cert from another CA", clientCert: &clientCert, serverName: "localhost",
			serverCert: issue(t, other, serverOpts),
			clientSays: unknownAuthority},
		{name: "server cert with clientAuth only", clientCert: &clientCert, serverName: "localhost",
			serverCert: issue(t, p.CA, withUsage(serverOpts, pki.Client)),
			clientSays: incompatibleUsage},

		{name: "client limited to TLS 1.2", serverCert: serverCert, clientCert: &clientCert, serverName: "localhost",
			tweak:      func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12 },
			serverSays: anyError},
		{name: "client speaks another protocol", serverCert: serverCert, clientCert: &clientCert, serverName: "localhost",
			tweak:      func(c *tls.Config) { c.NextProtos = []string{"h2"} },
			serverSays: anyError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cc tls.Certificate
			if tc.clientCert != nil {
				cc = *tc.clientCert
			}
			clientCfg := tlsutil.ClientConfig(cc, pool, tc.serverName)
			if tc.clientCert == nil {
				clientCfg.Certificates = nil
			}
			if tc.tweak != nil {
				tc.tweak(clientCfg)
			}
			r := handshake(t, tlsutil.ServerConfig(tc.serverCert, pool), clientCfg)

			if tc.serverSays == nil && tc.clientSays == nil {
				if r.serverErr != nil || r.clientErr != nil {
					t.Fatalf("handshake failed: server %v, client %v", r.serverErr, r.clientErr)
				}
				for side, st := range map[string]tls.ConnectionState{"server": r.serverState, "client": r.clientState} {
					if st.Version != tls.VersionTLS13 {
						t.Errorf("%s: negotiated version %#x, want TLS 1.3", side, st.Version)
					}
					if st.NegotiatedProtocol != wire.ALPN {
						t.Errorf("%s: negotiated ALPN %q, want %q", side, st.NegotiatedProtocol, wire.ALPN)
					}
					if side == "client" && len(st.VerifiedChains) == 0 {
						t.Errorf("%s: peer certificate not verified", side)
					}
				}
				// The server verified it in VerifyConnection, which leaves
				// no chains in the state: VerifyClient gives them again.
				if chains, err := tlsutil.VerifyClient(r.serverState.PeerCertificates, pool); err != nil || len(chains) == 0 {
					t.Errorf("server: VerifyClient of the accepted certificate: %v", err)
				}
				if got := r.serverState.PeerCertificates[0].Subject.CommonName; got != "uid-1" {
					t.Errorf("server sees client CN %q, want uid-1", got)
				}
				return
			}

			if r.serverErr == nil || r.clientErr == nil {
				t.Fatalf("handshake not refused on both sides: server %v, client %v", r.serverErr, r.clientErr)
			}
			if tc.serverSays != nil && !tc.serverSays(r.serverErr) {
				t.Errorf("server error %v is not the expected kind", r.serverErr)
			}
			if tc.clientSays != nil && !tc.clientSays(r.clientErr) {
				t.Errorf("client error %v is not the expected kind", r.clientErr)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
