package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// UnauthorizedMessage is the error of every 401: it says how to get in.
const UnauthorizedMessage = "missing or wrong bearer token: send the header 'Authorization: Bearer <token>' (SWL_API_TOKEN)"

// Option configures New.
type Option func(*options)

type options struct {
	token   string
	ready   func() error // nil: no /healthz, /readyz
	metrics http.Handler // nil: no /metrics
	hosts   []string     // WithAllowedHosts
	refused func(reason string)
}

// WithHealth serves GET /healthz (200 while the process serves) and GET
// /readyz (200 when ready returns nil, else 503 with its error). Both are
// open without the token: probes of an orchestrator carry none, and they
// tell nothing beyond up or down.
func WithHealth(ready func() error) Option {
	return func(o *options) { o.ready = ready }
}

// WithMetrics serves h on GET /metrics, behind the token like the rest of
// the API (Prometheus sends one with authorization.credentials).
func WithMetrics(h http.Handler) Option {
	return func(o *options) { o.metrics = h }
}

// public are the paths requireToken lets through: health probes only.
var public = map[string]bool{"/healthz": true, "/readyz": true}

// WithToken makes every request need the header "Authorization: Bearer
// <token>". An empty token changes nothing.
func WithToken(token string) Option {
	return func(o *options) { o.token = token }
}

// requireToken answers 401 to a request without the right bearer token. The
// token is compared in constant time: both sides are hashed first, so that
// not even its length shows in the time an answer takes. Neither the token
// nor what a caller sent is ever logged.
func requireToken(token string, g *guard) echo.MiddlewareFunc {
	want := sha256.Sum256([]byte(token))
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			if public[req.URL.Path] && (req.Method == http.MethodGet || req.Method == http.MethodHead) {
				return next(c)
			}
			header := req.Header.Get(echo.HeaderAuthorization)
			// The scheme is case-insensitive (RFC 9110 §11.1); it is no
			// secret, the credential is.
			scheme, cred, _ := strings.Cut(header, " ")
			got := sha256.Sum256([]byte(cred))
			if strings.EqualFold(scheme, "Bearer") && subtle.ConstantTimeCompare(got[:], want[:]) == 1 {
				return next(c)
			}
			reason := "wrong bearer token"
			switch {
			case header == "":
				reason = "no Authorization header"
			case !strings.EqualFold(scheme, "Bearer"):
				reason = "Authorization header is not a bearer token"
			}
			g.refuse(req, RefusedToken, reason)
			// Written here rather than by the error handler, whose JSON
			// would turn <token> into \u003ctoken\u003e for a reader of
			// the raw answer.
			resp := c.Response()
			resp.Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="socket-warp"`)
			resp.Header().Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
			resp.WriteHeader(http.StatusUnauthorized)
			enc := json.NewEncoder(resp)
			enc.SetEscapeHTML(false)
			return enc.Encode(errorBody{Error: UnauthorizedMessage})
		}
	}
}
