package devca

import (
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/smallstep/pkcs7"
	"go.uber.org/zap"
)

func init() {
	// Process-wide settings of smallstep/pkcs7, identical to the ones
	// sw-connector's SCEP client sets (see the package documentation).
	pkcs7.ContentEncryptionAlgorithm = pkcs7.EncryptionAlgorithmAES256CBC
	if err := pkcs7.SetDefaultDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256); err != nil {
		panic("devca: pkcs7 rejects SHA-256: " + err.Error())
	}
}

// Defaults used by Init.
const (
	DefaultCommonName         = "socket-warp development CA"
	DefaultClientCertValidity = 365 * 24 * time.Hour
	DefaultServerCertValidity = 825 * 24 * time.Hour
	DefaultCAValidity         = 10 * 365 * 24 * time.Hour
	DefaultCAKeyBits          = 3072
	// DefaultSecretLifetime is how long a secret stays usable when its
	// creator gives no available period.
	DefaultSecretLifetime = 24 * time.Hour
)

// DefaultDNSNames and DefaultIPs are the SANs of the listener certificate when
// InitOptions names none.
var (
	DefaultDNSNames = []string{"hostname.example.com", "localhost"}
	DefaultIPs      = []net.IP{net.IPv4(127, 0, 0, 1)}
)

// Client statuses, as reported by /api/cert/verify and CA.Client.
const (
	StatusInactive  = "INACTIVE"
	StatusIssuable  = "ISSUABLE"
	StatusIssued    = "ISSUED"
	StatusUpdatable = "UPDATABLE"
	StatusPending   = "PENDING"
)

// Secret types: an activation secret enrols a client that has no usable
// certificate (PKCSReq); an update secret renews a certificate (RenewalReq).
const (
	SecretActivate = "ACTIVATE"
	SecretUpdate   = "UPDATE"
)

// Errors returned by the CA; test them with errors.Is.
var (
	ErrStateExists     = errors.New("devca: state file already exists")
	ErrClosed          = errors.New("devca: CA is closed")
	ErrInvalidUID      = errors.New("devca: invalid uid")
	ErrInvalidSecret   = errors.New("devca: invalid secret")
	ErrInvalidPeriod   = errors.New("devca: invalid period")
	ErrClientExists    = errors.New("devca: client already exists")
	ErrClientNotFound  = errors.New("devca: client not found")
	ErrClientState     = errors.New("devca: client is not in INACTIVE or ISSUED state")
	ErrAlreadyInactive = errors.New("devca: client is already in INACTIVE state")
)

// InitOptions configures a new CA. Zero fields take the defaults above.
type InitOptions struct {
	// DNSNames and IPs are the SANs of the listener's server certificate
	// (default hostname.example.com, localhost and 127.0.0.1).
	DNSNames []string
	IPs      []net.IP
	// CommonName is the CA's common name.
	CommonName string
	// CertValidity is the validity of client certificates issued by SCEP
	// (default 365 days). It is kept in the state file.
	CertValidity time.Duration
	// ServerCertValidity is the validity of the listener certificate.
	ServerCertValidity time.Duration
	// CAKeyBits is the size of the CA's RSA key: 2048 or 3072 (default).
	CAKeyBits int
}

// Option adjusts a CA made by Init or Open.
type Option func(*options)

type options struct {
	log   *zap.Logger
	now   func() time.Time
	caKey *rsa.PrivateKey // tests: skip the slow key generation
	// refused, when set, is told every enrolment refused and why (tests:
	// the client is told no more than badRequest).
	refused func(uid, reason string)
}

// WithLogger sets the logger (default: none). Secrets are never logged.
func WithLogger(l *zap.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

// WithClock replaces time.Now, for tests of expiry and pending periods.
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

func withCAKey(k *rsa.PrivateKey) Option { return func(o *options) { o.caKey = k } }

func withRefusals(f func(uid, reason string)) Option { return func(o *options) { o.refused = f } }

func buildOptions(opts []Option) options {
	o := options{log: zap.NewNop(), now: time.Now, refused: func(string, string) {}}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// CA is a development SCEP certificate authority backed by one state file.
// Its methods and handlers are safe for concurrent use.
type CA struct {
	path    string
	log     *zap.Logger
	now     func() time.Time
	refused func(uid, reason string)

	// Fixed after Open.
	caCert        *x509.Certificate
	caKey         *rsa.PrivateKey
	serverCertPEM []byte
	serverKeyPEM  []byte

	mu     sync.Mutex // guards the following fields
	st     *state
	closed bool
	crl    crlCache
}

// Init creates a CA, a server certificate for the listener and the state
// file at statePath. It refuses to replace an existing file (ErrStateExists).
func Init(statePath string, opts InitOptions, options ...Option) (*CA, error) {
	o := buildOptions(options)
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if _, err := os.Lstat(statePath); err == nil {
		return nil, fmt.Errorf("%w: %s", ErrStateExists, statePath)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("devca: state file %s: %w", statePath, err)
	}
	if err := os.MkdirAll(filepath.Dir(statePath), 0o700); err != nil {
		return nil, fmt.Errorf("devca: state directory for %s: %w", statePath, err)
	}
	st, err := newState(opts, o)
	if err != nil {
		return nil, err
	}
	if err := writeState(statePath, st, true); err != nil {
		return nil, err
	}
	ca, err := load(statePath, st, o)
	if err != nil {
		return nil, err
	}
	ca.log.Info("ca initialised",
		zap.String("state", statePath),
		zap.String("ca_subject", ca.caCert.Subject.String()),
		// What connectors pin with ca_fingerprint when they enroll over http.
		zap.String("ca_sha256", fmt.Sprintf("%x", sha256.Sum256(ca.caCert.Raw))),
		zap.Strings("server_dns_names", opts.dnsNames()),
	)
	return ca, nil
}

// Open loads the CA from statePath. A missing, unreadable or corrupt file is
// an error naming the file.
func Open(statePath string, options ...Option) (*CA, error) {
	o := buildOptions(options)
	st, err := readState(statePath)
	if err != nil {
		return nil, err
	}
	ca, err := load(statePath, st, o)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(statePath); err == nil && fi.Mode().Perm()&0o077 != 0 {
		ca.log.Warn("state file holds the CA key but is readable by others",
			zap.String("state", statePath), zap.Stringer("mode", fi.Mode().Perm()))
	}
	ca.log.Info("ca opened", zap.String("state", statePath),
		zap.Int("clients", len(st.Clients)), zap.Int("certificates", len(st.Certs)))
	return ca, nil
}

func load(path string, st *state, o options) (*CA, error) {
	corrupt := func(what string, err error) error {
		return fmt.Errorf("devca: state file %s is corrupt: %s: %w", path, what, err)
	}
	caCert, err := parseCertPEM([]byte(st.CA.CertPEM))
	if err != nil {
		return nil, corrupt("CA certificate", err)
	}
	key, err := parseKeyPEM([]byte(st.CA.KeyPEM))
	if err != nil {
		return nil, corrupt("CA key", err)
	}
	caKey, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, corrupt("CA key", fmt.Errorf("%T is not an RSA key", key))
	}
	if !caKey.PublicKey.Equal(caCert.PublicKey) {
		return nil, corrupt("CA key", errors.New("does not match the CA certificate"))
	}
	if _, err := parseCertPEM([]byte(st.Server.CertPEM)); err != nil {
		return nil, corrupt("server certificate", err)
	}
	if _, err := parseKeyPEM([]byte(st.Server.KeyPEM)); err != nil {
		return nil, corrupt("server key", err)
	}
	if st.Settings.ClientCertValidity <= 0 {
		return nil, corrupt("settings", errors.New("client_cert_validity must be positive"))
	}
	return &CA{
		path:          path,
		log:           o.log,
		now:           o.now,
		refused:       o.refused,
		caCert:        caCert,
		caKey:         caKey,
		serverCertPEM: []byte(st.Server.CertPEM),
		serverKeyPEM:  []byte(st.Server.KeyPEM),
		st:            st,
	}, nil
}

// CACert returns the CA certificate.
func (ca *CA) CACert() *x509.Certificate { return ca.caCert }

// CACertPEM returns the CA certificate in PEM.
func (ca *CA) CACertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.caCert.Raw})
}

// ServerCertPEM returns the listener certificate made by Init and its key
// (PKCS #8 PEM).
func (ca *CA) ServerCertPEM() (certPEM, keyPEM []byte) {
	return append([]byte(nil), ca.serverCertPEM...), append([]byte(nil), ca.serverKeyPEM...)
}

// Close marks the CA closed: later calls fail with ErrClosed and the handlers
// answer 503. Every change is already on disk, so there is nothing to flush.
// Close is idempotent.
func (ca *CA) Close() error {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if !ca.closed {
		ca.closed = true
		ca.log.Info("ca closed", zap.String("state", ca.path))
	}
	return nil
}

// mutateLocked applies fn to a copy of the state, saves the copy and makes it
// the live state. If fn or the save fails, the live state is unchanged.
func (ca *CA) mutateLocked(fn func(st *state) error) error {
	if ca.closed {
		return ErrClosed
	}
	next, err := ca.st.clone()
	if err != nil {
		return fmt.Errorf("devca: copy state: %w", err)
	}
	if err := fn(next); err != nil {
		return err
	}
	if err := writeState(ca.path, next, false); err != nil {
		return err
	}
	ca.st = next
	return nil
}

func (o InitOptions) validate() error {
	var errs []error
	if o.CertValidity < 0 {
		errs = append(errs, fmt.Errorf("%w: CertValidity %v is negative", ErrInvalidPeriod, o.CertValidity))
	}
	if o.ServerCertValidity < 0 {
		errs = append(errs, fmt.Errorf("%w: ServerCertValidity %v is negative", ErrInvalidPeriod, o.ServerCertValidity))
	}
	switch o.CAKeyBits {
	case 0, 2048, 3072:
	default:
		errs = append(errs, fmt.Errorf("devca: CAKeyBits %d: want 2048 or 3072", o.CAKeyBits))
	}
	for _, n := range o.DNSNames {
		if n == "" {
			errs = append(errs, errors.New("devca: empty DNS name"))
		}
	}
	for _, ip := range o.IPs {
		if len(ip) != net.IPv4len && len(ip) != net.IPv6len {
			errs = append(errs, fmt.Errorf("devca: invalid IP %v", ip))
		}
	}
	return errors.Join(errs...)
}

func (o InitOptions) dnsNames() []string {
	if len(o.DNSNames) == 0 {
		return DefaultDNSNames
	}
	return o.DNSNames
}

func (o InitOptions) ips() []net.IP {
	if len(o.IPs) == 0 {
		return DefaultIPs
	}
	return o.IPs
}
