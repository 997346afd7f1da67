// Package tlsutil loads certificates from PEM files and builds the mutual-TLS
// configurations of both daemons. Errors name the file and the problem, since
// they are what an operator sees when a daemon refuses to start.
//
// A Reloader keeps that material current: it re-reads the files when they
// change (or when asked, on SIGHUP) and its configurations pick up the new
// material at every handshake.
package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"

	"github.com/socket-warp/socket-warp/shared/wire"
)

// LoadCertPool reads one or more PEM certificates from path.
func LoadCertPool(path string) (*x509.CertPool, error) {
	data, err := readCAFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := parseCACerts(path, data)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

func readCAFile(path string) ([]byte, error) {
	if path == "" {
		return nil, errors.New("CA certificate: no path configured")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA certificate %s: %w", path, err)
	}
	return data, nil
}

// LoadKeyPair reads a PEM certificate (chain) and its private key.
func LoadKeyPair(certPath, keyPath string) (tls.Certificate, error) {
	certPEM, keyPEM, err := readKeyPairFiles(certPath, keyPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	return parseKeyPair(certPath, keyPath, certPEM, keyPEM)
}

func readKeyPairFiles(certPath, keyPath string) (certPEM, keyPEM []byte, err error) {
	if certPath == "" || keyPath == "" {
		return nil, nil, errors.New("certificate and key: both paths must be configured")
	}
	certPEM, err = os.ReadFile(certPath)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate %s: %w", certPath, err)
	}
	keyPEM, err = os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("private key %s: %w", keyPath, err)
	}
	return certPEM, keyPEM, nil
}

// parseKeyPair parses the contents of the two files; the result has its
// Leaf set.
func parseKeyPair(certPath, keyPath string, certPEM, keyPEM []byte) (tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate %s with key %s: %w", certPath, keyPath, err)
	}
	if cert.Leaf == nil { // GODEBUG=x509keypairleaf=0
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("certificate %s: %w", certPath, err)
		}
	}
	return cert, nil
}

// ServerConfig is the listener's TLS: TLS 1.3 only, and a client certificate
// that chains to clientCAs and names the clientAuth extended key usage.
//
// The certificate is verified by VerifyConnection (VerifyClient) rather than
// by crypto/tls itself, which would refuse before any callback could say why;
// refused is told each refusal, and may be nil. The connection state the
// handshake leaves therefore has no VerifiedChains: whoever needs them calls
// VerifyClient again.
func ServerConfig(cert tls.Certificate, clientCAs *x509.CertPool) *tls.Config {
	return serverConfig(cert, clientCAs, nil, nil)
}

func serverConfig(cert tls.Certificate, clientCAs *x509.CertPool, remote net.Addr, refused func(Refusal)) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		// Asked for, never required by crypto/tls: VerifyConnection refuses
		// a handshake without one, and can say so.
		ClientAuth: tls.RequestClientCert,
		// Still set: the CertificateRequest names the acceptable CAs.
		ClientCAs:  clientCAs,
		NextProtos: []string{wire.ALPN},
		// Connectors never resume (their config keeps no session cache):
		// without tickets, every handshake presents and proves a
		// certificate, and no resumption path is left to a hand-made client.
		SessionTicketsDisabled: true,
		// Called on every handshake, so nothing gets in unverified.
		VerifyConnection: func(state tls.ConnectionState) error {
			if _, err := VerifyClient(state.PeerCertificates, clientCAs); err != nil {
				if refused != nil {
					refused(Refusal{Remote: remote, Reason: RefusalReason(err), Err: err})
				}
				return err
			}
			return nil
		},
	}
}

// ErrNoCertificate: the client sent no certificate.
var ErrNoCertificate = errors.New("client sent no certificate")

// VerifyClient checks a client's certificate chain (leaf first, as it sent
// it) against roots, now, for the clientAuth extended key usage (named in the
// leaf: see checkClientAuth), and returns
// the verified chains. It is the listener's one check of a connector's
// certificate.
func VerifyClient(certs []*x509.Certificate, roots *x509.CertPool) ([][]*x509.Certificate, error) {
	if len(certs) == 0 {
		return nil, ErrNoCertificate
	}
	opts := x509.VerifyOptions{
		Roots:         roots,
		Intermediates: x509.NewCertPool(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		// CurrentTime zero: now.
	}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	chains, err := certs[0].Verify(opts)
	if err == nil {
		err = checkClientAuth(certs[0])
	}
	if err != nil {
		return nil, fmt.Errorf("client certificate %q: %w", certs[0].Subject.CommonName, err)
	}
	return chains, nil
}

// errNoClientAuth: the certificate does not name clientAuth itself.
var errNoClientAuth = errors.New("extended key usage clientAuth is missing")

// checkClientAuth requires the clientAuth extended key usage by name.
// x509.Verify takes a certificate without any extended key usage, or with
// anyExtendedKeyUsage, for good for every purpose; a connector certificate
// must have been issued for this one (the README promises it, and a
// certificate issued for something else must not open tunnels).
// CheckFiles holds a connector's certificate to the same rule.
func checkClientAuth(leaf *x509.Certificate) error {
	if slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return nil
	}
	has := "none"
	if len(leaf.ExtKeyUsage) > 0 {
		has = usageNames(leaf.ExtKeyUsage)
	}
	return fmt.Errorf("%w (has %s)", errNoClientAuth, has)
}

// Refusal is a client certificate refused during the handshake.
type Refusal struct {
	Remote net.Addr // nil when the transport does not say
	Reason string   // one of the Reason constants
	Err    error
}

// Refusal reasons: a small fixed set, fit for a metric label.
const (
	ReasonNoCertificate    = "no_certificate"
	ReasonUnknownAuthority = "unknown_authority"
	ReasonExpired          = "expired" // or not valid yet
	ReasonBadUsage         = "bad_usage"
	ReasonOther            = "other"
)

// RefusalReason sorts a VerifyClient error into a Reason constant.
func RefusalReason(err error) string {
	var (
		unknown x509.UnknownAuthorityError
		invalid x509.CertificateInvalidError
	)
	switch {
	case errors.Is(err, ErrNoCertificate):
		return ReasonNoCertificate
	case errors.As(err, &unknown):
		return ReasonUnknownAuthority
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return ReasonExpired
	case errors.As(err, &invalid) && invalid.Reason == x509.IncompatibleUsage, errors.Is(err, errNoClientAuth):
		return ReasonBadUsage
	default:
		return ReasonOther
	}
}

// ClientConfig is the connector's TLS: it presents cert and accepts only a
// listener certificate for serverName that chains to rootCAs.
func ClientConfig(cert tls.Certificate, rootCAs *x509.CertPool, serverName string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      rootCAs,
		ServerName:   serverName,
		NextProtos:   []string{wire.ALPN},
	}
}
