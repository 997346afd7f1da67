package auth

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/shared/logging"
)

// SCEP defaults.
const (
	DefaultSCEPTimeout  = 5 * time.Second
	DefaultSCEPCacheTTL = 60 * time.Second

	// SCEPVerifyPath is the verify endpoint of a procube-open/scep server.
	SCEPVerifyPath = "/api/cert/verify"
	// SCEPCertHeader carries the percent-encoded PEM of the leaf certificate.
	SCEPCertHeader = "X-Mtls-Clientcert"

	maxSCEPAnswer = 64 << 10 // bytes of an answer read at most
	maxSCEPText   = 120      // bytes of a server's message quoted at most
)

// UnavailableMessage is logged when the verify endpoint stops answering.
const UnavailableMessage = "scep server unavailable: certificates it accepted within the cache TTL are still accepted, others are refused until it answers"

// scepAccepted are the client statuses a 200 answer may carry. A PENDING
// client is renewing: both its old and its new certificate verify.
var scepAccepted = map[string]bool{"ISSUED": true, "PENDING": true, "UPDATABLE": true}

// SCEPOptions tune a SCEP verifier. The zero value is usable.
type SCEPOptions struct {
	// Timeout bounds one verify request, connection included, so that
	// handshakes cannot pile up behind a slow server. 0: DefaultSCEPTimeout.
	Timeout time.Duration
	// CacheTTL is how long a positive answer is reused for the same
	// certificate (never beyond its NotAfter). 0: DefaultSCEPCacheTTL;
	// negative: no cache. Refusals are never cached.
	CacheTTL time.Duration
	// Client makes the requests (e.g. one that trusts the SCEP server's CA
	// for https); its owner closes its idle connections. nil: a client of
	// the SCEP's own, on a clone of http.DefaultTransport, whose idle
	// connections Close closes. Timeout applies either way.
	Client *http.Client
	// Now is the clock of the cache (for tests). nil: time.Now.
	Now func() time.Time
	// Logger receives the server's unavailability, once per streak. nil: none.
	Logger *zap.Logger
}

// SCEP asks a procube-open/scep server who the peer is:
//
//	GET <endpoint>   X-Mtls-Clientcert: <percent-encoded PEM of the leaf>
//	200 {"uid":"swc-1","status":"ISSUED"|"PENDING"|"UPDATABLE","attributes":{…}}
//	401 {"message":"Certificate is revoked"}   (also: "Failed to verify
//	    certificate", "User Not Found", "Certificate is expired")
//
// The endpoint is derived from the configured URL (SWL_SCEP_URL): the
// server's base URL, e.g. http://scep.internal:3000 or a reverse-proxy prefix
// such as https://gw.example/scep-server, gets /api/cert/verify appended; a
// URL whose path already ends in /api/cert/verify is used as it is. Only
// http and https are accepted; a query is kept.
//
// A 200 binds its uid, which must equal the certificate's CN, with one of
// the accepted statuses. A 401 with a JSON message, a uid other than the CN
// or another status is a definitive refusal (ErrRefused). Anything else
// (unreachable, timeout, 5xx, another code, an unreadable answer) fails
// closed too, but also wraps ErrUnavailable. Positive answers are cached per
// certificate (SHA-256 of its DER) for CacheTTL; concurrent requests about
// one certificate share one HTTP request. Close ends what is in flight.
type SCEP struct {
	endpoint  string
	timeout   time.Duration
	ttl       time.Duration
	client    *http.Client
	ownClient bool // made by NewSCEP: Close closes its idle connections
	now       func() time.Time
	log       *zap.Logger

	// base is what every request derives from, rather than its first
	// caller's context (see ask); stop cancels it at Close.
	base      context.Context
	stop      context.CancelFunc
	flying    sync.WaitGroup // the fly goroutines; Close waits for them
	closeOnce sync.Once

	mu        sync.Mutex // guards the following fields
	cache     map[[32]byte]scepEntry
	flights   map[[32]byte]*scepFlight
	lastSweep time.Time
	failing   bool // in a streak of unavailability (logged at its start)
	closed    bool // no request starts any more
}

type scepEntry struct {
	uid     string
	expires time.Time
}

// scepFlight is one request in progress; every caller asking about the same
// certificate meanwhile waits for its result.
type scepFlight struct {
	done    chan struct{}
	waiters int // callers waiting (for tests)
	uid     string
	err     error
}

// NewSCEP checks baseURL and returns a verifier for it; see SCEP for how
// the URL maps to the endpoint.
func NewSCEP(baseURL string, opts SCEPOptions) (*SCEP, error) {
	endpoint, err := SCEPEndpoint(baseURL)
	if err != nil {
		return nil, err
	}
	s := &SCEP{
		endpoint: endpoint,
		timeout:  opts.Timeout,
		ttl:      opts.CacheTTL,
		client:   opts.Client,
		now:      opts.Now,
		log:      opts.Logger,
		cache:    map[[32]byte]scepEntry{},
		flights:  map[[32]byte]*scepFlight{},
	}
	if s.timeout <= 0 {
		s.timeout = DefaultSCEPTimeout
	}
	if s.ttl == 0 {
		s.ttl = DefaultSCEPCacheTTL
	}
	if s.client == nil {
		// A transport of its own, so that Close can drop its idle
		// keep-alive connections without touching anyone else's.
		s.client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
		s.ownClient = true
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.log = s.log.With(zap.String("scep_url", s.Endpoint()))
	s.base, s.stop = context.WithCancel(context.Background())
	return s, nil
}

// Close cancels the requests in flight and waits for their goroutines to
// end, then closes the idle connections of the client NewSCEP made. Whoever
// waited for those requests hears "unavailable"; from then on every Verify
// and Recheck fails so, without a request. The daemon calls it when it
// shuts down, once nothing verifies any more. Close is idempotent.
func (s *SCEP) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.stop()
	})
	s.flying.Wait()
	if s.ownClient {
		s.client.CloseIdleConnections()
	}
}

// SCEPEndpoint maps a configured SCEP URL to the verify endpoint.
func SCEPEndpoint(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", fmt.Errorf("SCEP URL %q: %w", raw, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("SCEP URL %q: want http(s)://host[:port][/path]", raw)
	}
	if u.Fragment != "" {
		return "", fmt.Errorf("SCEP URL %q: a fragment has no place in it", raw)
	}
	p := strings.TrimRight(u.Path, "/")
	if !strings.HasSuffix(p, SCEPVerifyPath) {
		p += SCEPVerifyPath
	}
	u.Path, u.RawPath = p, ""
	return u.String(), nil
}

// Endpoint is the verify URL, any password redacted: for logs.
func (s *SCEP) Endpoint() string {
	u, err := url.Parse(s.endpoint)
	if err != nil {
		return s.endpoint
	}
	return u.Redacted()
}

// Verify implements Verifier, answering from the cache when it can: also
// while the server is unavailable, a certificate it accepted less than
// CacheTTL ago is accepted (a connector that reconnects after a network
// blip), while one it has no answer for is refused.
func (s *SCEP) Verify(ctx context.Context, state tls.ConnectionState) (string, error) {
	leaf, err := scepLeaf(state)
	if err != nil {
		return "", err
	}
	fp := sha256.Sum256(leaf.Raw)
	if uid, ok := s.cached(fp); ok {
		return uid, nil
	}
	return s.ask(ctx, leaf, fp)
}

// Recheck implements Rechecker: it always asks the server (sharing a
// request already in flight). A definitive refusal also drops the cached
// answer, so the certificate cannot come back in on the strength of it.
func (s *SCEP) Recheck(ctx context.Context, state tls.ConnectionState) (string, error) {
	leaf, err := scepLeaf(state)
	if err != nil {
		return "", err
	}
	return s.ask(ctx, leaf, sha256.Sum256(leaf.Raw))
}

func scepLeaf(state tls.ConnectionState) (*x509.Certificate, error) {
	if len(state.PeerCertificates) == 0 {
		return nil, &refusal{msg: "scep verify: no client certificate"}
	}
	return state.PeerCertificates[0], nil
}

func (s *SCEP) cached(fp [32]byte) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.cache[fp]
	if !ok {
		return "", false
	}
	if !s.now().Before(e.expires) {
		delete(s.cache, fp)
		return "", false
	}
	return e.uid, true
}

// storeLocked caches a positive answer, and now and then sweeps out expired
// ones so that the cache holds at most one TTL's worth of certificates.
func (s *SCEP) storeLocked(fp [32]byte, leaf *x509.Certificate, uid string) {
	if s.ttl < 0 {
		return
	}
	now := s.now()
	if now.Sub(s.lastSweep) >= s.ttl {
		for k, e := range s.cache {
			if !now.Before(e.expires) {
				delete(s.cache, k)
			}
		}
		s.lastSweep = now
	}
	expires := now.Add(s.ttl)
	if leaf.NotAfter.Before(expires) {
		expires = leaf.NotAfter
	}
	s.cache[fp] = scepEntry{uid: uid, expires: expires}
}

// errSCEPClosed is the cause of the refusals after Close.
var errSCEPClosed = errors.New("verifier closed")

// ask joins the request in flight for fp or starts one. The request is not
// tied to ctx, which may end first (its connection gone) while others wait
// for the same answer; it is bounded by the timeout instead, and by Close.
func (s *SCEP) ask(ctx context.Context, leaf *x509.Certificate, fp [32]byte) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", &refusal{msg: "scep verify: " + err.Error(), unavailable: true, cause: err}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return "", &refusal{msg: "scep verify: " + errSCEPClosed.Error(), unavailable: true, cause: errSCEPClosed}
	}
	f := s.flights[fp]
	if f == nil {
		f = &scepFlight{done: make(chan struct{})}
		s.flights[fp] = f
		// Added under mu, where closed was false: Close's Wait, which
		// follows its setting closed under mu, counts this goroutine.
		s.flying.Go(func() { s.fly(s.base, f, leaf, fp) })
	}
	f.waiters++
	s.mu.Unlock()
	select {
	case <-f.done:
		return f.uid, f.err
	case <-ctx.Done():
		return "", &refusal{msg: "scep verify: " + ctx.Err().Error(), unavailable: true, cause: ctx.Err()}
	}
}

func (s *SCEP) fly(ctx context.Context, f *scepFlight, leaf *x509.Certificate, fp [32]byte) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	uid, err := s.request(ctx, leaf)

	s.mu.Lock()
	delete(s.flights, fp)
	if s.base.Err() != nil {
		// Cut short by Close: the server said nothing, about this
		// certificate or its own health, so nothing is cached or logged.
		f.err = &refusal{msg: "scep verify: " + errSCEPClosed.Error(), unavailable: true, cause: errSCEPClosed}
		s.mu.Unlock()
		close(f.done)
		return
	}
	switch {
	case err == nil:
		s.storeLocked(fp, leaf, uid)
	case !errors.Is(err, ErrUnavailable):
		delete(s.cache, fp)
	}
	unavailable := errors.Is(err, ErrUnavailable)
	startStreak := unavailable && !s.failing
	endStreak := !unavailable && s.failing
	s.failing = unavailable
	f.uid, f.err = uid, err
	s.mu.Unlock()

	// Logged before the waiters hear the result, so that the log tells the
	// story in the order it happened.
	switch {
	case startStreak:
		// Exact about the cache: a certificate the server accepted less
		// than the TTL ago is still accepted (see Verify).
		s.log.Warn(UnavailableMessage, logging.Reason(err.Error()), zap.Duration("cache_ttl", s.ttl))
	case endStreak:
		s.log.Info("scep server answers again")
	}
	if err != nil && !unavailable {
		// The CN is the UID the certificate claims (see request).
		s.log.Debug("scep refused a certificate", logging.UID(leaf.Subject.CommonName), logging.Reason(err.Error()))
	}
	close(f.done)
}

// request asks the server once and judges its answer.
func (s *SCEP) request(ctx context.Context, leaf *x509.Certificate) (string, error) {
	unavailable := func(cause error, format string, args ...any) error {
		return &refusal{msg: "scep verify: " + fmt.Sprintf(format, args...), unavailable: true, cause: cause}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.endpoint, nil)
	if err != nil {
		return "", unavailable(err, "%v", err)
	}
	req.Header.Set(SCEPCertHeader, escapeAll(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}))))
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return "", unavailable(err, "server unreachable: no answer within %s", s.timeout)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			// The inner error, without the request line that wraps it.
			return "", unavailable(err, "server unreachable: %v", ue.Err)
		}
		return "", unavailable(err, "server unreachable: %v", err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSCEPAnswer+1))
	resp.Body.Close()
	code := resp.StatusCode
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "", unavailable(err, "server unreachable: no complete answer within %s (%d)", s.timeout, code)
	case err != nil:
		return "", unavailable(err, "reading the answer: %v (%d)", err, code)
	case len(body) > maxSCEPAnswer:
		return "", unavailable(nil, "answer larger than %d KiB (%d)", maxSCEPAnswer>>10, code)
	}

	if code != http.StatusOK {
		var e struct {
			Message *string `json:"message"`
		}
		if json.Unmarshal(body, &e) == nil && e.Message != nil && *e.Message != "" {
			if code == http.StatusUnauthorized {
				return "", &refusal{msg: fmt.Sprintf("scep verify: %s (%d)", printable(*e.Message), code)}
			}
			return "", unavailable(nil, "%s (%d)", printable(*e.Message), code)
		}
		// Not the SCEP server's own verdict: a proxy, a wrong URL...
		return "", unavailable(nil, "unexpected answer (%d): %s", code, snippet(body))
	}

	var ans struct {
		UID    *string `json:"uid"`
		Status *string `json:"status"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return "", unavailable(err, "unreadable answer (200): %s", snippet(body))
	}
	switch {
	case ans.UID == nil:
		return "", unavailable(nil, "answer without a uid (200): %s", snippet(body))
	case ans.Status == nil:
		return "", unavailable(nil, "answer without a status (200): %s", snippet(body))
	}
	uid, status := *ans.UID, *ans.Status
	if err := ValidUID(uid); err != nil {
		return "", &refusal{msg: fmt.Sprintf("scep verify: unusable uid: %v (200)", err)}
	}
	if !scepAccepted[status] {
		return "", &refusal{msg: fmt.Sprintf("scep verify: uid %s has status %s (200)", uid, printable(status))}
	}
	if cn := leaf.Subject.CommonName; uid != cn {
		return "", &refusal{msg: fmt.Sprintf("scep verify: server names uid %s for certificate CN %q (200)", uid, printable(cn))}
	}
	return uid, nil
}

// escapeAll percent-encodes every byte but RFC 3986's unreserved ones. The
// reference server decodes the header with url.PathUnescape, which leaves a
// '+' as it is: url.QueryEscape's "BEGIN+CERTIFICATE" would not parse there.
// Encoded like this, the PEM comes back from PathUnescape and QueryUnescape
// alike.
func escapeAll(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) * 3 / 2)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// printable makes a server's text safe and short enough for a log line and a
// QUIC close reason.
func printable(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, strings.TrimSpace(s))
	if len(s) <= maxSCEPText {
		return s
	}
	cut := maxSCEPText
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func snippet(body []byte) string {
	if len(strings.TrimSpace(string(body))) == 0 {
		return "empty body"
	}
	return printable(strings.Join(strings.Fields(string(body)), " "))
}
