package tlsutil_test

import (
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/shared/pki"
	"github.com/socket-warp/socket-warp/shared/testutil"
	"github.com/socket-warp/socket-warp/shared/tlsutil"
)

func checkOpts(cert, key, ca string, usage x509.ExtKeyUsage) tlsutil.CheckOptions {
	return tlsutil.CheckOptions{CertPath: cert, KeyPath: key, CAPath: ca,
		CertSetting: "CERT", KeySetting: "KEY", CASetting: "CA", Usage: usage}
}

// wantOne checks that lines holds exactly one line, containing every part.
func wantOne(t *testing.T, what string, lines []string, parts ...string) {
	t.Helper()
	if len(lines) != 1 {
		t.Fatalf("%s: %d lines %q, want one containing %q", what, len(lines), lines, parts)
	}
	for _, p := range parts {
		if !strings.Contains(lines[0], p) {
			t.Fatalf("%s: %q does not say %q", what, lines[0], p)
		}
	}
}

func TestCheckFiles(t *testing.T) {
	p := testutil.NewPKI(t)
	serverCert, serverKey := p.ServerCert(t)
	clientCert, clientKey := p.ClientCert(t, "swc-1")
	now := time.Now()

	t.Run("good server and client", func(t *testing.T) {
		for _, o := range []tlsutil.CheckOptions{
			checkOpts(serverCert, serverKey, p.CAPath, x509.ExtKeyUsageServerAuth),
			checkOpts(clientCert, clientKey, p.CAPath, x509.ExtKeyUsageClientAuth),
		} {
			if f := tlsutil.CheckFiles(o); !f.OK() || len(f.Warnings) != 0 {
				t.Fatalf("%s: %+v", o.CertPath, f)
			}
		}
	})

	issue := func(name string, opts pki.LeafOptions) (string, string) { return p.Issue(t, name, opts) }
	expCert, expKey := issue("expired", pki.LeafOptions{CommonName: "swc-1", Usage: pki.Client,
		NotBefore: now.Add(-30 * time.Minute), NotAfter: now.Add(-10 * time.Minute)}) // the test CA is an hour old
	futCert, futKey := issue("future", pki.LeafOptions{CommonName: "swc-1", Usage: pki.Client,
		NotBefore: now.Add(24 * time.Hour), NotAfter: now.Add(48 * time.Hour)})
	soonCert, soonKey := issue("soon", pki.LeafOptions{CommonName: "swc-1", Usage: pki.Client, NotAfter: now.Add(3 * 24 * time.Hour)})
	noEKUCert, noEKUKey := issue("no-eku", pki.LeafOptions{CommonName: "swc-1", Usage: pki.NoEKU})
	anyEKUCert, anyEKUKey := issue("any-eku", pki.LeafOptions{CommonName: "swc-1", Usage: pki.AnyEKU})
	other := testutil.NewPKI(t)
	foreignCert, foreignKey := other.ClientCert(t, "swc-1")
	missing := filepath.Join(t.TempDir(), "missing.pem")
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name    string
		o       tlsutil.CheckOptions
		problem []string // parts of the single problem line; nil: none
		warning []string
	}{
		{"expired", checkOpts(expCert, expKey, p.CAPath, x509.ExtKeyUsageClientAuth), []string{"CERT: certificate " + expCert, "CN=swc-1", "expired on"}, nil},
		{"not yet valid", checkOpts(futCert, futKey, p.CAPath, x509.ExtKeyUsageClientAuth), []string{"CERT:", "not valid before"}, nil},
		{"expires soon", checkOpts(soonCert, soonKey, p.CAPath, x509.ExtKeyUsageClientAuth), nil, []string{"CERT:", "expires on", "in 3 days"}},
		{"key of another certificate", checkOpts(clientCert, serverKey, p.CAPath, x509.ExtKeyUsageClientAuth),
			[]string{"CERT, KEY:", clientCert, serverKey, "private key does not match public key"}, nil},
		{"foreign CA", checkOpts(foreignCert, foreignKey, p.CAPath, x509.ExtKeyUsageClientAuth),
			[]string{"CERT:", "does not chain to the CA in CA (" + p.CAPath + ")", "socket-warp test CA"}, nil},
		{"client certificate as server", checkOpts(clientCert, clientKey, p.CAPath, x509.ExtKeyUsageServerAuth),
			[]string{"CERT:", "extended key usage serverAuth is missing (has clientAuth)"}, nil},
		{"server certificate as client", checkOpts(serverCert, serverKey, p.CAPath, x509.ExtKeyUsageClientAuth),
			[]string{"extended key usage clientAuth is missing (has serverAuth)"}, nil},
		{"client certificate without extended key usage", checkOpts(noEKUCert, noEKUKey, p.CAPath, x509.ExtKeyUsageClientAuth),
			[]string{"CERT:", "extended key usage clientAuth is missing (has none)"}, nil},
		{"client certificate with anyExtendedKeyUsage", checkOpts(anyEKUCert, anyEKUKey, p.CAPath, x509.ExtKeyUsageClientAuth),
			[]string{"CERT:", "extended key usage clientAuth is missing (has anyExtendedKeyUsage)"}, nil},
		{"missing certificate", checkOpts(missing, clientKey, p.CAPath, x509.ExtKeyUsageClientAuth), []string{"CERT: certificate " + missing, "no such file"}, nil},
		{"missing key", checkOpts(clientCert, missing, p.CAPath, x509.ExtKeyUsageClientAuth), []string{"KEY: private key " + missing, "no such file"}, nil},
		{"garbage certificate", checkOpts(garbage, clientKey, p.CAPath, x509.ExtKeyUsageClientAuth), []string{"CERT, KEY:", garbage}, nil},
		{"missing CA", checkOpts(clientCert, clientKey, missing, x509.ExtKeyUsageClientAuth), []string{"CA: CA certificate " + missing, "no such file"}, nil},
		{"garbage CA", checkOpts(clientCert, clientKey, garbage, x509.ExtKeyUsageClientAuth), []string{"CA: CA certificate " + garbage, "no PEM certificate"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tlsutil.CheckFiles(tc.o)
			if tc.problem == nil {
				if !f.OK() {
					t.Fatalf("problems %q", f.Problems)
				}
			} else {
				wantOne(t, "problems", f.Problems, tc.problem...)
			}
			if tc.warning == nil {
				if len(f.Warnings) != 0 {
					t.Fatalf("warnings %q", f.Warnings)
				}
			} else {
				wantOne(t, "warnings", f.Warnings, tc.warning...)
			}
		})
	}
}

func TestCheckServerNames(t *testing.T) {
	p := testutil.NewPKI(t)
	cert, _ := p.Issue(t, "server", pki.LeafOptions{CommonName: "listener", Usage: pki.Server,
		DNSNames: []string{"listener.example.com"}, IPs: []net.IP{net.IPv4(192, 0, 2, 1)}})
	f := tlsutil.CheckServerNames("SWL_CERT_PATH", cert)
	if !f.OK() {
		t.Fatalf("problems %q", f.Problems)
	}
	wantOne(t, "notes", f.Notes, "SWL_CERT_PATH", "listener.example.com, 192.0.2.1", "server_name")

	bare, _ := p.Issue(t, "bare", pki.LeafOptions{CommonName: "listener", Usage: pki.Server})
	f = tlsutil.CheckServerNames("SWL_CERT_PATH", bare)
	wantOne(t, "problems", f.Problems, "SWL_CERT_PATH", bare, "no DNS or IP subject alternative name", `CN "listener"`)
}
