package devca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // subject key identifier, RFC 5280 method 1
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// backdate is how far NotBefore is set in the past, for clocks that lag.
const backdate = 5 * time.Minute

// firstSerial is the first serial number handed out; the reference starts at 2.
const firstSerial = 2

func newState(opts InitOptions, o options) (*state, error) {
	now := o.now()
	bits := opts.CAKeyBits
	if bits == 0 {
		bits = DefaultCAKeyBits
	}
	caKey := o.caKey
	if caKey == nil {
		var err error
		if caKey, err = rsa.GenerateKey(rand.Reader, bits); err != nil {
			return nil, fmt.Errorf("devca: generate CA key: %w", err)
		}
	}
	cn := opts.CommonName
	if cn == "" {
		cn = DefaultCommonName
	}
	caSerial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	skid, err := subjectKeyID(caKey.Public())
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          caSerial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"socket-warp"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(DefaultCAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		SubjectKeyId:          skid,
		// keyEncipherment: SCEP requests are encrypted to this key, and
		// clients that pick recipients by it must find the CA.
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment |
			x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("devca: create CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}

	st := &state{
		Version:    stateVersion,
		NextSerial: firstSerial,
		Settings:   settings{ClientCertValidity: duration(DefaultClientCertValidity)},
	}
	if opts.CertValidity > 0 {
		st.Settings.ClientCertValidity = duration(opts.CertValidity)
	}
	st.normalize()
	keyPEM, err := marshalKeyPEM(caKey)
	if err != nil {
		return nil, err
	}
	st.CA = keyPair{CertPEM: string(certPEM(caDER)), KeyPEM: string(keyPEM)}

	// The listener's server certificate: ECDSA P-256, serverAuth.
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("devca: generate server key: %w", err)
	}
	validity := opts.ServerCertValidity
	if validity == 0 {
		validity = DefaultServerCertValidity
	}
	dns := opts.dnsNames()
	srvTmpl := &x509.Certificate{
		SerialNumber:          st.takeSerial(),
		Subject:               pkix.Name{CommonName: dns[0]},
		NotBefore:             now.Add(-backdate),
		NotAfter:              capTime(now.Add(validity), caCert.NotAfter),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:              append([]string(nil), dns...),
		IPAddresses:           opts.ips(),
	}
	if srvTmpl.SubjectKeyId, err = subjectKeyID(srvKey.Public()); err != nil {
		return nil, err
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, srvKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("devca: create server certificate: %w", err)
	}
	srvKeyPEM, err := marshalKeyPEM(srvKey)
	if err != nil {
		return nil, err
	}
	st.Server = keyPair{CertPEM: string(certPEM(srvDER)), KeyPEM: string(srvKeyPEM)}
	return st, nil
}

// takeSerial returns the next serial number and advances the counter.
func (st *state) takeSerial() *big.Int {
	if st.NextSerial < firstSerial {
		st.NextSerial = firstSerial
	}
	s := new(big.Int).SetUint64(st.NextSerial)
	st.NextSerial++
	return s
}

// issueClientCert signs a client certificate for uid with the CSR's key.
// The subject is CN=uid only; nothing else is taken from the CSR.
func (ca *CA) issueClientCert(st *state, uid string, pub crypto.PublicKey, now time.Time) (*x509.Certificate, error) {
	skid, err := subjectKeyID(pub)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          st.takeSerial(),
		Subject:               pkix.Name{CommonName: uid},
		NotBefore:             now.Add(-backdate),
		NotAfter:              capTime(now.Add(time.Duration(st.Settings.ClientCertValidity)), ca.caCert.NotAfter),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		SubjectKeyId:          skid,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.caCert, pub, ca.caKey)
	if err != nil {
		return nil, fmt.Errorf("devca: sign certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// checkPublicKey accepts the key types and sizes a client certificate may
// carry.
func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("RSA key of %d bits is too small", k.N.BitLen())
		}
		return nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return errors.New("unsupported ECDSA curve")
	case ed25519.PublicKey:
		return nil
	default:
		return fmt.Errorf("unsupported key type %T", pub)
	}
}

func capTime(t, limit time.Time) time.Time {
	if t.After(limit) {
		return limit
	}
	return t
}

func randomSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return nil, fmt.Errorf("devca: serial: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

// subjectKeyID is the SHA-1 of the subjectPublicKey bit string (RFC 5280
// 4.2.1.2, method 1).
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("devca: marshal public key: %w", err)
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("devca: parse public key: %w", err)
	}
	sum := sha1.Sum(spki.PublicKey.Bytes) //nolint:gosec // identifier, not security
	return sum[:], nil
}

func serialHex(s *big.Int) string { return s.Text(16) }

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func marshalKeyPEM(key crypto.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("devca: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no CERTIFICATE PEM block")
	}
	return x509.ParseCertificate(block.Bytes)
}

func parseKeyPEM(b []byte) (crypto.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("no PRIVATE KEY PEM block")
	}
	return x509.ParsePKCS8PrivateKey(block.Bytes)
}
