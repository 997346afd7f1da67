package auth

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
)

// CRL defaults.
const (
	DefaultCRLFileRefresh = 5 * time.Second  // how often a CRL file is stat'ed
	DefaultCRLURLRefresh  = 60 * time.Second // how often a CRL URL is fetched
	DefaultCRLTimeout     = 10 * time.Second // one fetch of a CRL URL

	maxCRLSize     = 32 << 20    // bytes of a CRL read at most
	minCRLURLDelay = time.Second // floor of the wait before a fetch
)

// oidDeltaCRLIndicator marks a delta CRL, which lists only the changes since
// a base CRL: taken for a full list, it would un-revoke everything else.
var oidDeltaCRLIndicator = asn1.ObjectIdentifier{2, 5, 29, 27}

// CRLOptions say where a CRL comes from and whom to trust for it.
type CRLOptions struct {
	// Path (SWL_CRL_PATH) is a CRL file, DER or PEM ("X509 CRL"). Exactly
	// one of Path and URL is set.
	Path string
	// URL (SWL_CRL_URL) serves the CRL, DER or PEM, e.g. a SCEP server's
	// http://scep.internal:3000/scep?operation=GetCRL.
	URL string
	// CAs may sign the CRL: the CA certificates the listener trusts for
	// connectors (see LoadCertificates). A CRL signed by none is rejected.
	CAs []*x509.Certificate
	// Refresh is how often Run checks the source: a file is stat'ed (and
	// re-read when its identity, size or mtime changed, so an atomic rename
	// is seen), a URL fetched; a URL is fetched earlier when the CRL's
	// NextUpdate comes first. 0: DefaultCRLFileRefresh or
	// DefaultCRLURLRefresh.
	Refresh time.Duration
	// Timeout bounds one fetch of URL. 0: DefaultCRLTimeout.
	Timeout time.Duration
	// Client fetches URL. nil: a client on http.DefaultTransport.
	Client *http.Client
	// Now is the clock used to schedule fetches and judge staleness.
	// nil: time.Now.
	Now func() time.Time
	// Logger receives updates and failed refreshes (once per streak).
	Logger *zap.Logger
	// OnChange, if set, is called after a refresh that replaced the list
	// (not at the initial load), from the goroutine that refreshed: Run's,
	// or Reload's caller. The daemon uses it to close connections whose
	// certificates are now revoked (see Check).
	OnChange func()
}

// CRL is a certificate revocation list kept fresh by Run. Its methods are
// safe for concurrent use.
type CRL struct {
	source   string // "file /path" or the URL, password redacted
	path     string
	url      string
	cas      []*x509.Certificate
	refresh  time.Duration
	timeout  time.Duration
	client   *http.Client
	now      func() time.Time
	log      *zap.Logger
	onChange func()

	reloadMu sync.Mutex // serialises reloads; guards the following fields
	stamp    os.FileInfo
	failing  bool // in a streak of failed refreshes (logged at its start)
	staleLog []byte

	mu  sync.RWMutex // guards the following field
	cur *crlList
}

// crlList is one verified CRL, indexed for lookups.
type crlList struct {
	rl      *x509.RevocationList
	serials map[string]struct{} // big.Int.Text(16) of each revoked serial
}

// NewCRL loads the CRL once, so that a missing, unreadable or untrusted CRL
// stops the daemon at start; the error names the file or URL. Run keeps it
// fresh afterwards.
func NewCRL(ctx context.Context, opts CRLOptions) (*CRL, error) {
	c := &CRL{
		path:     opts.Path,
		url:      opts.URL,
		cas:      opts.CAs,
		refresh:  opts.Refresh,
		timeout:  opts.Timeout,
		client:   opts.Client,
		now:      opts.Now,
		log:      opts.Logger,
		onChange: opts.OnChange,
	}
	switch {
	case c.path != "" && c.url != "":
		return nil, errors.New("CRL: a file and a URL are both configured; give one")
	case c.path != "":
		c.source = "file " + c.path
		if c.refresh <= 0 {
			c.refresh = DefaultCRLFileRefresh
		}
	case c.url != "":
		u, err := url.Parse(c.url)
		if err != nil {
			return nil, fmt.Errorf("CRL URL %q: %w", c.url, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("CRL URL %q: want http(s)://host[:port]/path", c.url)
		}
		c.source = u.Redacted()
		if c.refresh <= 0 {
			c.refresh = DefaultCRLURLRefresh
		}
	default:
		return nil, errors.New("CRL: neither a file nor a URL is configured")
	}
	if len(c.cas) == 0 {
		return nil, fmt.Errorf("CRL %s: no CA certificate to check its signature against", c.source)
	}
	if c.timeout <= 0 {
		c.timeout = DefaultCRLTimeout
	}
	if c.client == nil {
		c.client = &http.Client{}
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	c.log = c.log.With(zap.String("crl", c.source))

	c.reloadMu.Lock()
	defer c.reloadMu.Unlock()
	l, stamp, err := c.load(ctx)
	if err != nil {
		return nil, err
	}
	c.cur, c.stamp = l, stamp
	c.log.Info("crl loaded", crlFields(l.rl)...)
	c.warnStaleLocked(l.rl)
	return c, nil
}

// Source names the CRL's file or URL, for logs.
func (c *CRL) Source() string { return c.source }

// Revoked reports whether cert is on the list: the CRL's issuer (and, when
// both name one, authority key) is cert's, and cert's serial is listed.
func (c *CRL) Revoked(cert *x509.Certificate) bool {
	if cert == nil || cert.SerialNumber == nil {
		return false
	}
	c.mu.RLock()
	l := c.cur
	c.mu.RUnlock()
	if !bytes.Equal(cert.RawIssuer, l.rl.RawIssuer) {
		return false
	}
	if len(cert.AuthorityKeyId) > 0 && len(l.rl.AuthorityKeyId) > 0 &&
		!bytes.Equal(cert.AuthorityKeyId, l.rl.AuthorityKeyId) {
		return false
	}
	_, ok := l.serials[cert.SerialNumber.Text(16)]
	return ok
}

// Check refuses a peer whose certificate is revoked, or every verified
// chain of which has a revoked CA certificate; nil otherwise (also without a
// certificate: that is the next Verifier's to refuse). The error wraps
// ErrRefused and is worded for the connector: "certificate serial 1234 is
// revoked (CRL)".
func (c *CRL) Check(state tls.ConnectionState) error {
	if len(state.PeerCertificates) == 0 {
		return nil
	}
	if leaf := state.PeerCertificates[0]; c.Revoked(leaf) {
		return &refusal{msg: fmt.Sprintf("certificate serial %s is revoked (CRL)", leaf.SerialNumber)}
	}
	var first error
	for _, chain := range state.VerifiedChains {
		err := c.checkCAs(chain)
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return first
}

func (c *CRL) checkCAs(chain []*x509.Certificate) error {
	for i, ca := range chain {
		if i > 0 && c.Revoked(ca) {
			return &refusal{msg: fmt.Sprintf("issuing CA certificate %q serial %s is revoked (CRL)",
				printable(ca.Subject.CommonName), ca.SerialNumber)}
		}
	}
	return nil
}

// WithCRL refuses peers that crl lists as revoked before next is asked (so
// no SCEP request is spent on them). The result is a Rechecker: its Recheck
// checks the CRL again and then rechecks with next. A nil crl returns next.
func WithCRL(next Verifier, crl *CRL) Verifier {
	if crl == nil {
		return next
	}
	return &crlVerifier{next: next, crl: crl}
}

type crlVerifier struct {
	next Verifier
	crl  *CRL
}

func (v *crlVerifier) Verify(ctx context.Context, state tls.ConnectionState) (string, error) {
	if err := v.crl.Check(state); err != nil {
		return "", err
	}
	return v.next.Verify(ctx, state)
}

func (v *crlVerifier) Recheck(ctx context.Context, state tls.ConnectionState) (string, error) {
	if err := v.crl.Check(state); err != nil {
		return "", err
	}
	return Recheck(ctx, v.next, state)
}

// Run keeps the CRL fresh until ctx ends. A failed refresh keeps the list in
// use; it is logged at the start of a streak of failures and at its end.
func (c *CRL) Run(ctx context.Context) {
	for {
		t := time.NewTimer(c.nextDelay())
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		c.poll(ctx)
	}
}

// nextDelay is the wait before Run's next look at the source.
func (c *CRL) nextDelay() time.Duration {
	if c.url == "" {
		return c.refresh
	}
	c.mu.RLock()
	next := c.cur.rl.NextUpdate
	c.mu.RUnlock()
	d := c.refresh
	if !next.IsZero() {
		if until := next.Sub(c.now()); until > 0 && until < d {
			d = until
		}
	}
	return max(d, min(minCRLURLDelay, c.refresh))
}

// poll reloads a URL each time; a file only when it changed, or after a
// failure (its content may have been the problem, or its absence).
func (c *CRL) poll(ctx context.Context) {
	if c.path != "" {
		c.reloadMu.Lock()
		fi, err := os.Stat(c.path)
		unchanged := err == nil && !c.failing && sameFile(c.stamp, fi)
		c.reloadMu.Unlock()
		if unchanged {
			return
		}
	}
	_ = c.Reload(ctx)
}

func sameFile(a, b os.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// Reload reads the source now (Run does so on its schedule; a daemon may on
// SIGHUP). On failure the list in use is kept and the error returned. A CRL
// older than the one in use (an earlier ThisUpdate or a lower CRL number) is
// refused, so a replayed old CRL cannot un-revoke anything.
func (c *CRL) Reload(ctx context.Context) error {
	c.reloadMu.Lock()
	changed, err := c.reloadLocked(ctx)
	c.reloadMu.Unlock()
	if changed && c.onChange != nil {
		c.onChange()
	}
	return err
}

func (c *CRL) reloadLocked(ctx context.Context) (changed bool, err error) {
	l, stamp, err := c.load(ctx)
	if err != nil && ctx.Err() != nil {
		return false, err // cut short (shutdown): no failure to report
	}
	if err == nil {
		c.mu.RLock()
		cur := c.cur
		c.mu.RUnlock()
		err = newerCRL(cur.rl, l.rl)
		if err == nil {
			changed = !bytes.Equal(cur.rl.Raw, l.rl.Raw)
			if changed {
				c.mu.Lock()
				c.cur = l
				c.mu.Unlock()
			}
			c.stamp = stamp
		} else {
			err = fmt.Errorf("CRL %s: %w", c.source, err)
		}
	}
	switch {
	case err != nil && !c.failing:
		c.log.Warn("crl refresh failed: keeping the list in use", zap.Error(err))
	case err != nil:
		c.log.Debug("crl refresh failed again", zap.Error(err))
	case c.failing:
		c.log.Info("crl refresh works again")
	}
	c.failing = err != nil
	if changed {
		c.log.Info("crl updated", crlFields(l.rl)...)
	}
	if err == nil {
		c.warnStaleLocked(l.rl)
	}
	return changed, err
}

// newerCRL refuses next if it is older than cur.
func newerCRL(cur, next *x509.RevocationList) error {
	if next.ThisUpdate.Before(cur.ThisUpdate) {
		return fmt.Errorf("older than the CRL in use (this update %s, in use %s)",
			next.ThisUpdate.UTC().Format(time.RFC3339), cur.ThisUpdate.UTC().Format(time.RFC3339))
	}
	if cur.Number != nil && next.Number != nil && next.Number.Cmp(cur.Number) < 0 {
		return fmt.Errorf("older than the CRL in use (number %s, in use %s)", next.Number, cur.Number)
	}
	return nil
}

// warnStaleLocked logs, once per CRL, that it is past its NextUpdate: it is
// still used, as the best list there is.
func (c *CRL) warnStaleLocked(rl *x509.RevocationList) {
	if rl.NextUpdate.IsZero() || c.now().Before(rl.NextUpdate) || bytes.Equal(c.staleLog, rl.Raw) {
		return
	}
	c.staleLog = rl.Raw
	c.log.Warn("crl is past its next update: still in use, is the CA publishing?", crlFields(rl)...)
}

func crlFields(rl *x509.RevocationList) []zap.Field {
	f := []zap.Field{
		zap.Int("entries", len(rl.RevokedCertificateEntries)),
		zap.Time("this_update", rl.ThisUpdate),
	}
	if !rl.NextUpdate.IsZero() {
		f = append(f, zap.Time("next_update", rl.NextUpdate))
	}
	if rl.Number != nil {
		f = append(f, zap.String("number", rl.Number.String()))
	}
	return f
}

// load reads, parses and verifies the CRL; the error names the source. For a
// file, it also returns the file's stat from before the read.
func (c *CRL) load(ctx context.Context) (*crlList, os.FileInfo, error) {
	var (
		data  []byte
		stamp os.FileInfo
		err   error
	)
	if c.path != "" {
		data, stamp, err = readCRLFile(c.path)
	} else {
		data, err = c.fetch(ctx)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("CRL %s: %w", c.source, err)
	}
	l, err := parseCRL(data, c.cas)
	if err != nil {
		return nil, nil, fmt.Errorf("CRL %s: %w", c.source, err)
	}
	return l, stamp, nil
}

// readCRLFile stats before it reads: a file replaced in between is then seen
// as changed at the next poll, never the other way round.
func readCRLFile(path string) ([]byte, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxCRLSize+1))
	if err != nil {
		return nil, nil, err
	}
	if len(data) > maxCRLSize {
		return nil, nil, fmt.Errorf("larger than %d MiB", maxCRLSize>>20)
	}
	return data, fi, nil
}

func (c *CRL) fetch(ctx context.Context) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is named by the caller already
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("no answer within %s", c.timeout)
		}
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxCRLSize+1))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, snippet(data[:min(len(data), 1<<10)]))
	}
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	if len(data) > maxCRLSize {
		return nil, fmt.Errorf("larger than %d MiB", maxCRLSize>>20)
	}
	return data, nil
}

// parseCRL accepts DER, or PEM with an "X509 CRL" block, and keeps the CRL
// only if one of cas signed it.
func parseCRL(data []byte, cas []*x509.Certificate) (*crlList, error) {
	der := data
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN")) {
		der = nil
		for rest := data; ; {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			if block.Type == "X509 CRL" {
				der = block.Bytes
				break
			}
		}
		if der == nil {
			return nil, errors.New(`no "X509 CRL" PEM block`)
		}
	}
	if len(der) == 0 {
		return nil, errors.New("empty")
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, err
	}
	for _, ext := range rl.Extensions {
		if ext.Id.Equal(oidDeltaCRLIndicator) {
			return nil, errors.New("a delta CRL; a full CRL is needed")
		}
	}
	if err := checkCRLSigner(rl, cas); err != nil {
		return nil, err
	}
	l := &crlList{rl: rl, serials: make(map[string]struct{}, len(rl.RevokedCertificateEntries))}
	for _, e := range rl.RevokedCertificateEntries {
		if e.SerialNumber != nil {
			l.serials[e.SerialNumber.Text(16)] = struct{}{}
		}
	}
	return l, nil
}

func checkCRLSigner(rl *x509.RevocationList, cas []*x509.Certificate) error {
	var lastErr error
	for _, ca := range cas {
		if !bytes.Equal(ca.RawSubject, rl.RawIssuer) {
			continue
		}
		if len(ca.SubjectKeyId) > 0 && len(rl.AuthorityKeyId) > 0 && !bytes.Equal(ca.SubjectKeyId, rl.AuthorityKeyId) {
			continue
		}
		if lastErr = rl.CheckSignatureFrom(ca); lastErr == nil {
			return nil
		}
	}
	if lastErr != nil {
		return fmt.Errorf("not signed by a trusted CA (issuer %s): %w", rl.Issuer, lastErr)
	}
	return fmt.Errorf("not signed by a trusted CA (issuer %s)", rl.Issuer)
}

// LoadCertificates reads every PEM "CERTIFICATE" in path: the listener's CA
// file (SWL_CA_PATH), for CRLOptions.CAs.
func LoadCertificates(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA certificate %s: %w", path, err)
	}
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
