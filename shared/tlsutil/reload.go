package tlsutil

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/shared/filewatch"
)

// Defaults for a Reloader's Run.
const (
	DefaultPollInterval = filewatch.DefaultPollInterval
	DefaultDebounce     = filewatch.DefaultDebounce
)

// Reloader holds a certificate, its key and a CA pool loaded from files, and
// replaces them when the files change. TLS configurations made by it read the
// current material at every handshake, so new handshakes use new files while
// established connections are left alone.
//
// Material is only ever replaced as a whole: a file that does not parse, or a
// certificate that does not match its key (say, the certificate was written
// and the key not yet), is logged and the previous certificate, key and CA
// pool are all kept.
type Reloader struct {
	certPath, keyPath, caPath string
	log                       *zap.Logger
	poll, debounce            time.Duration

	cur      atomic.Pointer[material]
	failures atomic.Int64 // reloads that kept the previous material

	mu   sync.Mutex // serialises Reload; guards the following field
	subs []chan struct{}
}

// material is one consistent load of the three files; never modified.
type material struct {
	cert *tls.Certificate // Leaf set
	pool *x509.CertPool
	cas  []*x509.Certificate  // what pool holds, in file order (see CACerts)
	sums [3][sha256.Size]byte // of the certificate, key and CA files
}

// ReloaderOption tunes a Reloader.
type ReloaderOption func(*Reloader)

// WithPollInterval sets how often Run compares the files' size, modification
// time and identity, in case the file system sends no events (some network
// and FUSE file systems); d <= 0 turns polling off. Default 30s.
func WithPollInterval(d time.Duration) ReloaderOption {
	return func(r *Reloader) { r.poll = d }
}

// WithDebounce sets how long Run waits after a file event for more to come
// before reloading, so that a certificate and key written one after the
// other are read once. Default 100ms.
func WithDebounce(d time.Duration) ReloaderOption {
	return func(r *Reloader) { r.debounce = d }
}

// NewReloader loads the certificate, key and CA files. Any error names the
// file: it is what stops a daemon at start.
func NewReloader(certPath, keyPath, caPath string, log *zap.Logger, opts ...ReloaderOption) (*Reloader, error) {
	if log == nil {
		log = zap.NewNop()
	}
	r := &Reloader{
		certPath: certPath,
		keyPath:  keyPath,
		caPath:   caPath,
		log:      log,
		poll:     DefaultPollInterval,
		debounce: DefaultDebounce,
	}
	for _, o := range opts {
		o(r)
	}
	m, err := r.load()
	if err != nil {
		return nil, err
	}
	r.cur.Store(m)
	r.log.Info("certificates loaded", m.fields()...)
	return r, nil
}

// Reload reads all three files again. If any of them cannot be read or
// parsed, or the certificate does not match the key, it logs one line naming
// the file and the problem, keeps all of the previous material and returns
// the error. Otherwise the new material is used by every handshake from now
// on; if anything changed, one line is logged and subscribers are notified.
//
// Reload is safe to call at any time, with or without Run (on SIGHUP, say).
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, err := r.load()
	if err != nil {
		r.failures.Add(1)
		r.log.Error("certificate reload failed, keeping the previous certificates", zap.Error(err))
		return err
	}
	old := r.cur.Load()
	if m.sums == old.sums {
		return nil
	}
	r.cur.Store(m)
	var changed []string
	for i, name := range []string{"cert", "key", "ca"} {
		if m.sums[i] != old.sums[i] {
			changed = append(changed, name)
		}
	}
	r.log.Info("certificates reloaded", append(m.fields(), zap.Strings("changed", changed))...)
	for _, ch := range r.subs {
		select {
		case ch <- struct{}{}:
		default: // a notification is already pending
		}
	}
	return nil
}

// load reads and parses the three files.
func (r *Reloader) load() (*material, error) {
	certPEM, keyPEM, err := readKeyPairFiles(r.certPath, r.keyPath)
	if err != nil {
		return nil, err
	}
	caPEM, err := readCAFile(r.caPath)
	if err != nil {
		return nil, err
	}
	cert, err := parseKeyPair(r.certPath, r.keyPath, certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	cas, err := parseCACerts(r.caPath, caPEM)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AddCert(c)
	}
	return &material{
		cert: &cert,
		pool: pool,
		cas:  slices.Clip(cas), // an append by a caller must not write into the snapshot
		sums: [3][sha256.Size]byte{sha256.Sum256(certPEM), sha256.Sum256(keyPEM), sha256.Sum256(caPEM)},
	}, nil
}

// fields describe the material for logs; never the key.
func (m *material) fields() []zap.Field {
	leaf := m.cert.Leaf
	return []zap.Field{
		zap.String("subject", leaf.Subject.String()),
		zap.String("serial", leaf.SerialNumber.Text(16)),
		zap.Time("not_after", leaf.NotAfter),
		zap.Int("ca_certs", len(m.cas)),
	}
}

// ServerConfig is the listener's TLS configuration (see the function
// ServerConfig): every handshake uses the current certificate and the
// current client CA pool. refused, when not nil, is told every client
// certificate the handshake refuses, with the client's address.
func (r *Reloader) ServerConfig(refused func(Refusal)) *tls.Config {
	// The outer configuration only chooses the inner one; should anything
	// ever ignore GetConfigForClient, an empty pool fails closed (nil would
	// mean the system roots).
	c := ServerConfig(tls.Certificate{}, x509.NewCertPool())
	c.Certificates = nil
	c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		// quic-go sets Conn to one that knows the addresses.
		var remote net.Addr
		if hello.Conn != nil {
			remote = hello.Conn.RemoteAddr()
		}
		m := r.cur.Load()
		return serverConfig(*m.cert, m.pool, remote, refused), nil
	}
	return c
}

// VerifyClient verifies a client's certificate chain (leaf first) against
// the current client CA pool: see the function VerifyClient.
func (r *Reloader) VerifyClient(certs []*x509.Certificate) ([][]*x509.Certificate, error) {
	return VerifyClient(certs, r.cur.Load().pool)
}

// ClientConfig is the connector's TLS configuration (see the function
// ClientConfig). The client certificate is looked up at every handshake, so
// even a long-lived configuration presents the current one; the root CAs are
// those current when ClientConfig is called, so call it for every dial.
//
// Unlike a fixed certificate, the current one is presented even when it does
// not chain to a CA the server asks for: the server then says why it refuses.
func (r *Reloader) ClientConfig(serverName string) *tls.Config {
	c := ClientConfig(tls.Certificate{}, r.cur.Load().pool, serverName)
	c.Certificates = nil
	c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return r.cur.Load().cert, nil
	}
	return c
}

// Failures is how many reloads failed and kept the previous material, for
// tests and embedding: a reload that Run starts has no caller to tell.
func (r *Reloader) Failures() int64 { return r.failures.Load() }

// Leaf is the current certificate, for expiry checks and renewal. The caller
// must not modify it.
func (r *Reloader) Leaf() *x509.Certificate { return r.cur.Load().cert.Leaf }

// Certificate is the current certificate with its key (renewal signs with it).
func (r *Reloader) Certificate() *tls.Certificate { return r.cur.Load().cert }

// CACerts are the certificates of the current CA file, the ones the client
// CA pool (or the root CAs) of new handshakes holds, in file order. They
// change as a whole with every reload, so whoever judges something else by
// "the CA" (a CRL's signature, say) should call CACerts each time rather
// than keep the result. The caller must not modify the slice or its
// certificates.
func (r *Reloader) CACerts() []*x509.Certificate { return r.cur.Load().cas }

// Subscribe returns a channel that receives a value after each reload that
// changed something. Notifications coalesce: a subscriber that is not
// waiting finds one pending, however many reloads happened meanwhile. The
// channel is never closed.
func (r *Reloader) Subscribe() <-chan struct{} {
	ch := make(chan struct{}, 1)
	r.mu.Lock()
	r.subs = append(r.subs, ch)
	r.mu.Unlock()
	return ch
}

// Run watches the files until ctx ends, calling Reload when one of them
// changes (see filewatch.Run: directory events, debounced, and polling as a
// fallback), and returns nil once ctx has ended and every goroutine it
// started has too.
func (r *Reloader) Run(ctx context.Context) error {
	poll := r.poll
	if poll <= 0 {
		poll = -1 // filewatch: off
	}
	filewatch.Run(ctx, []string{r.certPath, r.keyPath, r.caPath},
		filewatch.Options{Poll: poll, Debounce: r.debounce, What: "certificate", Log: r.log},
		func() { _ = r.Reload() }) // Reload logs its errors
	return nil
}

// parseCACerts parses every PEM "CERTIFICATE" of the CA file at path; the
// error names the file.
func parseCACerts(path string, data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CA certificate %s: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("CA certificate %s: no PEM certificate found", path)
	}
	return out, nil
}
