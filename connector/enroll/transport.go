package enroll

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"

	"github.com/smallstep/scep"
	"go.uber.org/zap"
)

// Content types of RFC 8894 §4.
const (
	typeCACert   = "application/x-x509-ca-cert"
	typeCARACert = "application/x-x509-ca-ra-cert"
	typePKIMsg   = "application/x-pki-message"
)

// session is one Enroll or Renew: the options, the HTTP client, and what
// GetCACaps said.
type session struct {
	o    Options
	log  *zap.Logger
	hc   *http.Client
	own  bool // hc is ours: close its idle connections when done
	base *url.URL
	post bool // PKIOperation by POST
}

func newSession(o Options) *session {
	base, _ := url.Parse(o.URL) // checked by Options.check
	hc, own := o.HTTPClient, false
	if hc == nil {
		hc = &http.Client{Timeout: DefaultHTTPTimeout, Transport: http.DefaultTransport.(*http.Transport).Clone()}
		own = true
	}
	return &session{o: o, log: o.Log.With(zap.String("scep_url", base.Redacted())), hc: hc, own: own, base: base}
}

func (s *session) close() {
	if s.own {
		s.hc.CloseIdleConnections()
	}
}

// caps are the GetCACaps keywords.
type caps []string

// has reports whether the server named the capability; RFC 8894 §3.5.2 says
// keywords are case-insensitive.
func (c caps) has(name string) bool {
	return slices.ContainsFunc(c, func(k string) bool { return strings.EqualFold(k, name) })
}

func (s *session) getCACaps(ctx context.Context) (caps, error) {
	const step = "GetCACaps"
	body, ct, err := s.roundTrip(ctx, step, http.MethodGet, s.opURL(step, ""), nil)
	if err != nil {
		return nil, err
	}
	if (ct != "" && ct != "text/plain") || bytes.ContainsAny(body, "<>") || !utf8.Valid(body) {
		return nil, stepError(step, ErrBadResponse, "the server answered %s, not a text/plain list of capabilities — is %s the SCEP endpoint? %s",
			orNone(ct), s.base.Redacted(), snippet(body))
	}
	c := caps(strings.Fields(string(body)))
	s.log.Debug("scep capabilities", zap.Strings("caps", c))
	return c, nil
}

func (s *session) getCACert(ctx context.Context) ([]*x509.Certificate, error) {
	const step = "GetCACert"
	body, ct, err := s.roundTrip(ctx, step, http.MethodGet, s.opURL(step, ""), nil)
	if err != nil {
		return nil, err
	}
	if len(body) == 0 {
		return nil, stepError(step, ErrBadResponse, "empty answer (content type %s)", orNone(ct))
	}
	var certs []*x509.Certificate
	switch ct {
	case typeCACert:
		certs, err = x509.ParseCertificates(body)
	case typeCARACert:
		err = guard(func() (err error) {
			certs, err = scep.CACerts(body)
			return err
		})
	default:
		return nil, stepError(step, ErrBadResponse, "the server answered %s, not %s or %s: %s", orNone(ct), typeCACert, typeCARACert, snippet(body))
	}
	if err != nil {
		return nil, stepError(step, ErrBadResponse, "unreadable %s (%d bytes): %v", ct, len(body), err)
	}
	if len(certs) == 0 {
		return nil, stepError(step, ErrBadResponse, "no certificate in the %s answer", ct)
	}
	return certs, nil
}

// pkiOperation sends a PKI message and returns the answer's body.
func (s *session) pkiOperation(ctx context.Context, msg []byte) ([]byte, error) {
	const step = "PKIOperation"
	var (
		body []byte
		ct   string
		err  error
	)
	if s.post {
		body, ct, err = s.roundTrip(ctx, step, http.MethodPost, s.opURL(step, ""), msg)
	} else {
		// Standard base64: the reference server rejects URL-safe base64.
		body, ct, err = s.roundTrip(ctx, step, http.MethodGet, s.opURL(step, base64.StdEncoding.EncodeToString(msg)), nil)
	}
	if err != nil {
		return nil, err
	}
	if len(body) == 0 {
		return nil, stepError(step, ErrBadResponse, "empty answer (content type %s)", orNone(ct))
	}
	switch ct {
	case typePKIMsg, "application/octet-stream", "":
		return body, nil
	}
	return nil, stepError(step, ErrBadResponse, "the server answered %s, not %s: %s", ct, typePKIMsg, snippet(body))
}

func (s *session) opURL(op, message string) string {
	u := *s.base
	q := u.Query()
	q.Set("operation", op)
	if message != "" {
		q.Set("message", message)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// roundTrip makes one request and reads at most maxResponse bytes of a 200
// answer; it returns the body and the media type without parameters.
func (s *session) roundTrip(ctx context.Context, step, method, target string, body []byte) ([]byte, string, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, "", &stepErr{step: step, err: err}
	}
	if body != nil {
		req.Header.Set("Content-Type", typePKIMsg)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		// The url.Error would repeat the whole URL, a GET PKIOperation's
		// message included: name the endpoint instead.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = fmt.Errorf("%s %s: %w", method, s.base.Redacted(), ue.Err)
		}
		if step == "PKIOperation" && ctx.Err() == nil && dropped(err) {
			return nil, "", &stepErr{step: step, kind: ErrNoResponse, err: fmt.Errorf("%w (%w)", ErrNoResponse, err)}
		}
		return nil, "", &stepErr{step: step, err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, "", stepError(step, ErrBadResponse, "HTTP %d, and the body broke off after %d bytes: %w", resp.StatusCode, len(data), err)
	}
	if len(data) > maxResponse {
		return nil, "", stepError(step, ErrBadResponse, "HTTP %d with a body larger than %d bytes", resp.StatusCode, maxResponse)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", stepError(step, ErrBadResponse, "HTTP %d: %s", resp.StatusCode, snippet(data))
	}
	return data, mediaType(resp.Header.Get("Content-Type")), nil
}

// dropped reports whether the server closed the connection instead of
// answering.
func dropped(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func mediaType(v string) string {
	if mt, _, err := mime.ParseMediaType(v); err == nil {
		return mt
	}
	mt, _, _ := strings.Cut(v, ";")
	return strings.ToLower(strings.TrimSpace(mt))
}

func orNone(ct string) string {
	if ct == "" {
		return "no content type"
	}
	return ct
}

// snippet shows the start of a body in an error: one line, printable, short.
func snippet(b []byte) string {
	const limit = 200 // runes shown
	if len(b) == 0 {
		return "(empty body)"
	}
	head := b
	if len(head) > 4*limit {
		head = head[:4*limit]
		// Drop a rune the cut split in two.
		for i := 0; i < utf8.UTFMax && !utf8.Valid(head); i++ {
			head = head[:len(head)-1]
		}
	}
	if !utf8.Valid(head) {
		return fmt.Sprintf("(%d bytes of binary data)", len(b))
	}
	s := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, string(head))
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return fmt.Sprintf("(%d bytes of white space)", len(b))
	}
	if r := []rune(s); len(r) > limit {
		s = string(r[:limit]) + "…"
	} else if len(head) < len(b) {
		s += "…"
	}
	return s
}
