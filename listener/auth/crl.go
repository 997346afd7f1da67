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
	"math/big"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/shared/logging"
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
	// CAs returns the CA certificates that may sign the CRL: those the
	// listener trusts for connectors right now (tlsutil.Reloader.CACerts).
	// It is called at every load and every Check, so that a CA rotation
	// is followed: a CRL signed by none of them is rejected, and once the
	// CRL in use is signed by none of them any more, Check fails closed
	// (see Check). Required.
	CAs func() []*x509.Certificate
	// CAsChanged, if set, makes Run read the source at once when it
	// receives a value (tlsutil.Reloader.Subscribe): after a CA rotation
	// the CRL of the new CA is wanted now, not at the next refresh.
	CAsChanged <-chan struct{}
	// Refresh is how often Run checks the source: a file is stat'ed (and
	// re-read when its identity, size or mtime changed, so an atomic rename
	// is seen), a URL fetched; a URL is fetched earlier when the CRL's
	// NextUpdate comes first. 0: DefaultCRLFileRefresh or
	// DefaultCRLURLRefresh.
	Refresh time.Duration
	// Timeout bounds one fetch of URL. 0: DefaultCRLTimeout.
	Timeout time.Duration
	// Client fetches URL; its owner closes its idle connections. nil: a
	// client of the CRL's own, on a clone of http.DefaultTransport, whose
	// idle connections Close closes.
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
	source     string // "file /path" or the URL, password redacted
	path       string
	url        string
	cas        func() []*x509.Certificate
	casChanged <-chan struct{}
	refresh    time.Duration
	timeout    time.Duration
	client     *http.Client
	ownClient  bool // made by NewCRL: Close closes its idle connections
	now        func() time.Time
	log        *zap.Logger
	onChange   func()

	reloadMu   sync.Mutex // serialises reloads; guards the following fields
	stamp      os.FileInfo
	failing    bool // in a streak of failed refreshes (logged at its start)
	distrusted bool // the list in use is signed by no current CA (logged once)
	staleLog   []byte
	newest     map[crlIssuer]crlMark // per issuer, the newest CRL taken

	mu  sync.RWMutex // guards the following field
	cur *crlList
}

// crlList is one verified CRL, indexed for lookups.
type crlList struct {
	rl      *x509.RevocationList
	serials map[string]struct{} // big.Int.Text(16) of each revoked serial
	// signer is the CA certificate whose signature on rl was last found
	// good. While the current CAs hold it, nothing needs verifying again.
	signer atomic.Pointer[x509.Certificate]
}

// crlIssuer tells CAs apart: the CRL's issuer name and authority key.
type crlIssuer struct{ name, keyID string }

func issuerOf(rl *x509.RevocationList) crlIssuer {
	return crlIssuer{name: string(rl.RawIssuer), keyID: string(rl.AuthorityKeyId)}
}

// crlMark is how recent a CRL is, for refusing older ones.
type crlMark struct {
	thisUpdate time.Time
	number     *big.Int // nil without a CRL number
}

func markOf(rl *x509.RevocationList) crlMark {
	return crlMark{thisUpdate: rl.ThisUpdate, number: rl.Number}
}

// NewCRL loads the CRL once, so that a missing, unreadable or untrusted CRL
// stops the daemon at start; the error names the file or URL. Run keeps it
// fresh afterwards.
func NewCRL(ctx context.Context, opts CRLOptions) (*CRL, error) {
	c := &CRL{
		path:       opts.Path,
		url:        opts.URL,
		cas:        opts.CAs,
		casChanged: opts.CAsChanged,
		refresh:    opts.Refresh,
		timeout:    opts.Timeout,
		client:     opts.Client,
		now:        opts.Now,
		log:        opts.Logger,
		onChange:   opts.OnChange,
		newest:     map[crlIssuer]crlMark{},
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
	if c.cas == nil {
		return nil, fmt.Errorf("CRL %s: no CA certificates to check its signature against", c.source)
	}
	if c.timeout <= 0 {
		c.timeout = DefaultCRLTimeout
	}
	if c.client == nil {
		// A transport of its own, so that Close can drop its idle
		// keep-alive connections without touching anyone else's.
		c.client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
		c.ownClient = true
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
		c.Close() // nobody else will: no idle connection outlives the error
		return nil, err
	}
	c.cur, c.stamp = l, stamp
	c.newest[issuerOf(l.rl)] = markOf(l.rl)
	c.log.Info("crl loaded", crlFields(l.rl)...)
	c.warnStaleLocked(l.rl)
	return c, nil
}

// Close closes the idle connections of the client NewCRL made (a CRL URL
// is fetched with keep-alive). Call it once Run has returned and no Reload
// runs any more; the list stays usable for Check.
func (c *CRL) Close() {
	if c.ownClient {
		c.client.CloseIdleConnections()
	}
}

// Source names the CRL's file or URL, for logs.
func (c *CRL) Source() string { return c.source }

func (c *CRL) list() *crlList {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cur
}

// Revoked reports whether cert is on the list in use: the CRL's issuer
// (and, when both name one, authority key) is cert's, and cert's serial is
// listed. It looks the list up whether or not a current CA still signs it;
// Check is what refuses everyone when none does.
func (c *CRL) Revoked(cert *x509.Certificate) bool { return c.list().revoked(cert) }

func (l *crlList) revoked(cert *x509.Certificate) bool {
	if cert == nil || cert.SerialNumber == nil {
		return false
	}
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
//
// Check also refuses every peer while no current CA (CRLOptions.CAs) signs
// the list in use, with an error that wraps ErrUnavailable as well: after a
// CA rotation that list says nothing about the new CA's certificates, and
// taking it for "none revoked" would let any of them in. Until a CRL signed
// by a current CA is loaded, the daemon is where it would be had it started
// without one, which it refuses to do.
func (c *CRL) Check(state tls.ConnectionState) error {
	if len(state.PeerCertificates) == 0 {
		return nil
	}
	l := c.list()
	if err := c.trusted(l); err != nil {
		return &refusal{msg: "no usable CRL: the one in use is " + err.Error(), unavailable: true, cause: errCRLDistrusted}
	}
	if leaf := state.PeerCertificates[0]; l.revoked(leaf) {
		return &refusal{msg: fmt.Sprintf("certificate serial %s is revoked (CRL)", leaf.SerialNumber), cause: ErrRevoked}
	}
	var first error
	for _, chain := range state.VerifiedChains {
		err := l.checkCAs(chain)
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// errCRLDistrusted is the cause of Check's refusals while no current CA
// signs the CRL in use.
var errCRLDistrusted = errors.New("the CRL in use is signed by no current CA")

// trusted reports whether a current CA signs l. While the CA that was found
// to sign it is still among them (the CA file unchanged, or another CA added)
// that is a comparison of bytes; otherwise the signature is verified against
// the current CAs, and the CA found is remembered for the next time.
func (c *CRL) trusted(l *crlList) error {
	cas := c.cas()
	if signer := l.signer.Load(); signer != nil {
		for _, ca := range cas {
			if bytes.Equal(ca.Raw, signer.Raw) {
				return nil
			}
		}
	}
	ca, err := checkCRLSigner(l.rl, cas)
	if err != nil {
		return err
	}
	l.signer.Store(ca)
	return nil
}

func (l *crlList) checkCAs(chain []*x509.Certificate) error {
	for i, ca := range chain {
		if i > 0 && l.revoked(ca) {
			return &refusal{msg: fmt.Sprintf("issuing CA certificate %q serial %s is revoked (CRL)",
				printable(ca.Subject.CommonName), ca.SerialNumber), cause: ErrRevoked}
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
// A value on CRLOptions.CAsChanged makes it read the source at once.
func (c *CRL) Run(ctx context.Context) {
	for {
		t := time.NewTimer(c.nextDelay())
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-c.casChanged:
			t.Stop()
			// Even an unchanged file: it may hold the new CA's CRL,
			// refused until now for want of that CA.
			_ = c.Reload(ctx)
		case <-t.C:
			c.poll(ctx)
		}
	}
}

// nextDelay is the wait before Run's next look at the source.
func (c *CRL) nextDelay() time.Duration {
	if c.url == "" {
		return c.refresh
	}
	next := c.list().rl.NextUpdate
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
		cur := c.list()
		// Recency is a matter between CRLs of one CA: a new CA's first
		// CRL has a lower number than its predecessor's last. Compared
		// with the newest taken from its own CA, a replayed old CRL of
		// any CA is still refused.
		iss := issuerOf(l.rl)
		if seen, ok := c.newest[iss]; ok {
			err = newerCRL(seen, l.rl)
		}
		if err == nil {
			changed = !bytes.Equal(cur.rl.Raw, l.rl.Raw)
			if changed {
				c.mu.Lock()
				c.cur = l
				c.mu.Unlock()
			}
			c.newest[iss] = markOf(l.rl)
			c.stamp = stamp
		} else {
			err = fmt.Errorf("CRL %s: %w", c.source, err)
		}
	}
	switch {
	case err != nil && !c.failing:
		c.log.Warn("crl refresh failed: keeping the list in use", logging.Reason(err.Error()))
	case err != nil:
		c.log.Debug("crl refresh failed again", logging.Reason(err.Error()))
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
	// Said here, not by Check on every handshake: Run reloads as soon as
	// the CAs change, so this is when it shows.
	distrust := c.trusted(c.list())
	switch {
	case distrust != nil && !c.distrusted:
		c.log.Error("crl in use is signed by no current CA: every connector is refused until a CRL signed by one is loaded",
			logging.Reason(distrust.Error()))
	case distrust == nil && c.distrusted:
		c.log.Info("crl in use is signed by a current CA again")
	}
	c.distrusted = distrust != nil
	return changed, err
}

// newerCRL refuses next if it is older than the newest CRL taken from the
// same CA.
func newerCRL(seen crlMark, next *x509.RevocationList) error {
	if next.ThisUpdate.Before(seen.thisUpdate) {
		return fmt.Errorf("older than the CRL in use (this update %s, in use %s)",
			next.ThisUpdate.UTC().Format(time.RFC3339), seen.thisUpdate.UTC().Format(time.RFC3339))
	}
	if seen.number != nil && next.Number != nil && next.Number.Cmp(seen.number) < 0 {
		return fmt.Errorf("older than the CRL in use (number %s, in use %s)", next.Number, seen.number)
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
	l, err := parseCRL(data, c.cas())
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
	signer, err := checkCRLSigner(rl, cas)
	if err != nil {
		return nil, err
	}
	l := &crlList{rl: rl, serials: make(map[string]struct{}, len(rl.RevokedCertificateEntries))}
	l.signer.Store(signer)
	for _, e := range rl.RevokedCertificateEntries {
		if e.SerialNumber != nil {
			l.serials[e.SerialNumber.Text(16)] = struct{}{}
		}
	}
	return l, nil
}

// checkCRLSigner returns the CA of cas that signed rl.
func checkCRLSigner(rl *x509.RevocationList, cas []*x509.Certificate) (*x509.Certificate, error) {
	if len(cas) == 0 {
		return nil, errors.New("not signed by a trusted CA: no CA certificates to check its signature against")
	}
	var lastErr error
	for _, ca := range cas {
		if !bytes.Equal(ca.RawSubject, rl.RawIssuer) {
			continue
		}
		if len(ca.SubjectKeyId) > 0 && len(rl.AuthorityKeyId) > 0 && !bytes.Equal(ca.SubjectKeyId, rl.AuthorityKeyId) {
			continue
		}
		if lastErr = rl.CheckSignatureFrom(ca); lastErr == nil {
			return ca, nil
		}
	}
	if lastErr != nil {
		return nil, fmt.Errorf("not signed by a trusted CA (issuer %s): %w", rl.Issuer, lastErr)
	}
	return nil, fmt.Errorf("not signed by a trusted CA (issuer %s)", rl.Issuer)
}
