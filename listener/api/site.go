package api

import (
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"
	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/shared/logging"
)

// Kinds of requests refused before they reach the service: the reason
// label of socketwarp_listener_api_refusals_total, and the "refusal" field
// of the "api request refused" log line.
const (
	RefusedToken       = "token"        // no or a wrong bearer token (401)
	RefusedHost        = "host"         // a Host the API does not answer to (403)
	RefusedOrigin      = "origin"       // sent by a page of another site (403)
	RefusedContentType = "content_type" // a body that is not application/json (415)
)

// RefusalReasons are the kinds WithRefusals reports, in a fixed order.
var RefusalReasons = [...]string{RefusedToken, RefusedHost, RefusedOrigin, RefusedContentType}

// WithRefusals has f told the kind (one of RefusalReasons) of every request
// refused before it reached the service, for the metrics: the log keeps only
// a sample of them.
func WithRefusals(f func(reason string)) Option {
	return func(o *options) { o.refused = f }
}

// WithAllowedHosts adds names to those a request's Host may carry, besides
// localhost and any IP address (see sameSite). Names are compared without
// regard to case or a trailing dot; the port is not compared.
func WithAllowedHosts(names ...string) Option {
	return func(o *options) { o.hosts = append(o.hosts, names...) }
}

// guard refuses requests before they reach the service: it answers them,
// logs a sample (an outsider decides how many there are) and counts every
// one.
type guard struct {
	log     *zap.Logger // logging.Flood
	refused func(reason string)
	hosts   map[string]bool // lower case, no trailing dot
}

func newGuard(log *zap.Logger, o options) *guard {
	g := &guard{log: logging.Flood(log), refused: o.refused, hosts: map[string]bool{"localhost": true}}
	for _, h := range o.hosts {
		g.hosts[hostKey(h)] = true
	}
	return g
}

func hostKey(name string) string { return strings.TrimSuffix(strings.ToLower(name), ".") }

// refuse logs and counts a refusal; the caller answers it.
func (g *guard) refuse(req *http.Request, kind, reason string) {
	if g.refused != nil {
		g.refused(kind)
	}
	g.log.Warn("api request refused", logging.Remote(req.RemoteAddr), zap.String("method", req.Method),
		zap.String("path", req.URL.Path), logging.Reason(reason), zap.String("refusal", kind))
}

// sameSite refuses what a web page could make a browser send: the API has
// no token by default, and a page viewed on the listener's host could
// otherwise open ports into the private network.
//
//   - Origin, which browsers add to cross-site requests (and to every POST),
//     must be the API's own: same host and port as the request's Host.
//   - Host must be localhost, an IP address, or a name given with
//     WithAllowedHosts. A page whose name the attacker makes resolve to
//     127.0.0.1 (DNS rebinding) is same-origin for the browser, but its
//     requests still carry that name. An IP address needs no list: no page
//     can rebind one, and whoever browses to the API's own address is not
//     cross-site.
//
// The health probes are exempt: they tell nothing, and orchestrators call
// them by whatever name reaches the listener.
func (g *guard) sameSite(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if public[req.URL.Path] && (req.Method == http.MethodGet || req.Method == http.MethodHead) {
			return next(c)
		}
		if name, ok := g.hostAllowed(req.Host); !ok {
			msg := fmt.Sprintf("host %s is not one this API answers to: if it is yours, add it to SWL_API_ALLOWED_HOSTS", quote(name))
			g.refuse(req, RefusedHost, msg)
			return echo.NewHTTPError(http.StatusForbidden, msg)
		}
		if origin := req.Header.Get("Origin"); origin != "" {
			if u, err := url.Parse(origin); err != nil || u.Host == "" || !strings.EqualFold(u.Host, req.Host) {
				msg := fmt.Sprintf("cross-site request refused: Origin %s is not this API's own (%s)", quote(origin), quote(req.Host))
				g.refuse(req, RefusedOrigin, msg)
				return echo.NewHTTPError(http.StatusForbidden, msg)
			}
		}
		return next(c)
	}
}

// hostAllowed reports whether host (a Host header, with or without port) is
// one the API answers to, and returns its name. No Host at all (HTTP/1.0)
// comes from no browser.
func (g *guard) hostAllowed(host string) (string, bool) {
	if host == "" {
		return "", true
	}
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	name = strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
	if _, err := netip.ParseAddr(name); err == nil {
		return name, true
	}
	return name, g.hosts[hostKey(name)]
}

// requireJSON answers 415 unless the request says its body is JSON: a web
// page can post a form or text/plain to any site without asking it first,
// but not application/json.
func (g *guard) requireJSON(req *http.Request) error {
	ct := req.Header.Get(echo.HeaderContentType)
	mt, params, err := mime.ParseMediaType(ct)
	var problem string
	switch {
	case ct == "":
		problem = "no Content-Type"
	case err != nil || mt != echo.MIMEApplicationJSON:
		problem = fmt.Sprintf("Content-Type %s is not application/json", quote(ct))
	case params["charset"] != "" && !strings.EqualFold(params["charset"], "utf-8"):
		problem = fmt.Sprintf("Content-Type %s: the charset of JSON is utf-8", quote(ct))
	default:
		return nil
	}
	g.refuse(req, RefusedContentType, problem)
	return echo.NewHTTPError(http.StatusUnsupportedMediaType,
		problem+": send the body as JSON with the header 'Content-Type: application/json' (curl: -H 'Content-Type: application/json')")
}

// quote quotes what a caller sent for an answer and a log line, cut short:
// a header may be up to a megabyte long.
func quote(s string) string {
	const limit = 100
	if len(s) > limit {
		return fmt.Sprintf("%q…", s[:limit])
	}
	return fmt.Sprintf("%q", s)
}
