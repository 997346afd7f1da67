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
	"os"

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
// that chains to clientCAs with an extended key usage that allows clientAuth.
func ServerConfig(cert tls.Certificate, clientCAs *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCAs,
		NextProtos:   []string{wire.ALPN},
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
