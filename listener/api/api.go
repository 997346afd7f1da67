// Package api is sw-listener's HTTP API: open, close and list tunnelled ports.
//
// Every error is JSON {"error": "..."} that says what is wrong; a malformed
// request never changes any state.
package api

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/listener/auth"
	"github.com/socket-warp/socket-warp/listener/port"
	"github.com/socket-warp/socket-warp/shared/metrics"
)

// OpenAPI is the description of every route New registers (openapi.yaml,
// served at GET /openapi.yaml). openapi_test.go holds the two to each other.
//
//go:embed openapi.yaml
var OpenAPI []byte

// MaxBodyBytes caps request bodies; the largest valid one is far smaller.
const MaxBodyBytes = 64 << 10

// Service is what the API drives.
type Service interface {
	OpenPort(ctx context.Context, p port.Spec) error
	ClosePort(ctx context.Context, number int) (port.Spec, error)
	List() []port.Spec
	// Live is nil for a port that is not served (any more).
	Live(number int) *port.Live
	Connections() []port.Connection
}

// listEntry is a port in GET /list: the Port fields, then the Live ones
// when it is served (also while its socket is bound anew: its tunnels go
// on).
type listEntry struct {
	port.Spec
	*port.Live
}

// New returns the echo server with every route registered.
func New(svc Service, log *zap.Logger, opts ...Option) *echo.Echo {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	g := newGuard(log, o)
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	// A failure is logged sampled: callers decide how many there are.
	e.HTTPErrorHandler = errorHandler(g.log)
	e.Pre(g.sameSite)
	if o.token != "" {
		// Before routing: an unknown path or method says nothing either
		// to a caller without the token.
		e.Pre(requireToken(o.token, g))
	}
	h := &handlers{svc: svc, guard: g}
	// Every GET route answers HEAD, alike but without the body, which
	// net/http drops (setting Content-Length from it when it can).
	get := func(path string, handler echo.HandlerFunc) {
		e.GET(path, handler)
		e.HEAD(path, handler)
	}
	e.POST("/open", h.open)
	e.DELETE("/close", h.close)
	get("/list", h.list)
	get("/connections", h.connections)
	// Behind the token like the rest: the file is public in the repository,
	// but the token's exemptions stay the health probes alone.
	get("/openapi.yaml", func(c echo.Context) error {
		return c.Blob(http.StatusOK, "application/yaml", OpenAPI)
	})
	if o.metrics != nil {
		get("/metrics", echo.WrapHandler(o.metrics))
	}
	if o.ready != nil {
		get("/healthz", echo.WrapHandler(metrics.Healthz()))
		get("/readyz", echo.WrapHandler(metrics.Readyz(o.ready)))
	}
	return e
}

type handlers struct {
	svc   Service
	guard *guard
}

type openRequest struct {
	UID            *string `json:"uid"`
	Port           *int    `json:"port"`
	ConnectAddress *string `json:"connect_address"`
	ConnectPort    *int    `json:"connect_port"`
	ProxyProtocol  *string `json:"proxy_protocol"` // optional
}

type closeRequest struct {
	Port *int `json:"port"`
}

func (h *handlers) open(c echo.Context) error {
	var req openRequest
	if err := h.decode(c, &req); err != nil {
		return err
	}
	var missing []string
	if req.UID == nil {
		missing = append(missing, "uid")
	}
	if req.Port == nil {
		missing = append(missing, "port")
	}
	if req.ConnectAddress == nil {
		missing = append(missing, "connect_address")
	}
	if req.ConnectPort == nil {
		missing = append(missing, "connect_port")
	}
	if len(missing) > 0 {
		return badRequest("missing field(s): %s", strings.Join(missing, ", "))
	}
	p := port.Spec{UID: *req.UID, Port: *req.Port, ConnectAddress: *req.ConnectAddress, ConnectPort: *req.ConnectPort}
	if req.ProxyProtocol != nil {
		p.ProxyProtocol = *req.ProxyProtocol
	}
	if err := validate(p); err != nil {
		return err
	}
	if err := h.svc.OpenPort(c.Request().Context(), p); err != nil {
		return serviceError(err)
	}
	return c.JSON(http.StatusOK, p)
}

func validate(p port.Spec) error {
	var problems []string
	// The listener binds connectors by the same rule: a UID refused here
	// never connects.
	if err := auth.ValidUID(p.UID); err != nil {
		problems = append(problems, err.Error())
	}
	if p.Port < 1 || p.Port > 65535 {
		problems = append(problems, fmt.Sprintf("port %d is outside 1-65535", p.Port))
	}
	if strings.TrimSpace(p.ConnectAddress) == "" {
		problems = append(problems, "connect_address is empty")
	} else if err := CheckHost(p.ConnectAddress); errors.Is(err, ErrHostWithPort) {
		problems = append(problems, fmt.Sprintf("connect_address %q is not a host name or IP address: put the port in connect_port", p.ConnectAddress))
	} else if err != nil {
		// No connector could ever dial it: every client would be reset.
		problems = append(problems, fmt.Sprintf("connect_address %q is not a host name or IP address: %v", p.ConnectAddress, err))
	}
	if p.ConnectPort < 1 || p.ConnectPort > 65535 {
		problems = append(problems, fmt.Sprintf("connect_port %d is outside 1-65535", p.ConnectPort))
	}
	switch p.ProxyProtocol {
	case "", port.ProxyV1, port.ProxyV2:
	default:
		problems = append(problems, fmt.Sprintf(`proxy_protocol %q is not "v1" or "v2" (leave it out for none)`, p.ProxyProtocol))
	}
	if len(problems) > 0 {
		return badRequest("%s", strings.Join(problems, "; "))
	}
	return nil
}

func (h *handlers) close(c echo.Context) error {
	var req closeRequest
	if err := h.decode(c, &req); err != nil {
		return err
	}
	if req.Port == nil {
		return badRequest("missing field(s): port")
	}
	if *req.Port < 1 || *req.Port > 65535 {
		return badRequest("port %d is outside 1-65535", *req.Port)
	}
	p, err := h.svc.ClosePort(c.Request().Context(), *req.Port)
	if err != nil {
		return serviceError(err)
	}
	return c.JSON(http.StatusOK, p)
}

func (h *handlers) list(c echo.Context) error {
	ports := h.svc.List()
	out := make([]listEntry, 0, len(ports))
	for _, p := range ports {
		out = append(out, listEntry{Spec: p, Live: h.svc.Live(p.Port)})
	}
	return c.JSON(http.StatusOK, out)
}

func (h *handlers) connections(c echo.Context) error {
	conns := h.svc.Connections()
	if conns == nil {
		conns = []port.Connection{}
	}
	return c.JSON(http.StatusOK, conns)
}

// decode reads exactly one JSON object with only known fields, spelt
// exactly, from a request that says it is JSON (requireJSON). The body must
// be valid UTF-8: encoding/json would silently turn invalid bytes into
// U+FFFD and pass on a uid or address other than the one sent.
func (h *handlers) decode(c echo.Context, v any) error {
	if err := h.guard.requireJSON(c.Request()); err != nil {
		return err
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, MaxBodyBytes))
	if err != nil {
		return decodeError(err)
	}
	if !utf8.Valid(body) {
		return badRequest("request body is not valid UTF-8 (at byte %d)", firstInvalidUTF8(body))
	}
	if err := exactKeys(body, v); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("malformed JSON: unexpected data after the object")
	}
	return nil
}

// exactKeys refuses a key of the object in body that is not the JSON name
// of a field of *v as spelt: encoding/json matches keys without regard to
// case ("UID" for uid), which DisallowUnknownFields lets through. A body
// that is not an object, or not valid JSON, is left to the decoder to
// explain.
func exactKeys(body []byte, v any) error {
	known := map[string]bool{}
	t := reflect.TypeOf(v).Elem()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		known[name] = true
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		if key, _ := tok.(string); !known[key] {
			return badRequest("unknown field %q", key)
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil
		}
	}
	return nil
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return len(b)
}

func decodeError(err error) error {
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
		tooBig *http.MaxBytesError
	)
	switch {
	case errors.As(err, &tooBig):
		return echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", MaxBodyBytes))
	case errors.Is(err, io.EOF):
		return badRequest("malformed JSON: the request body is empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("malformed JSON: the body ends in the middle of the object")
	case errors.As(err, &syntax):
		return badRequest("malformed JSON at byte %d: %v", syntax.Offset, err)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return badRequest("malformed JSON: the body must be an object, not %s", typ.Value)
		}
		return badRequest("field %s must be a %s, not %s", typ.Field, jsonKind(typ.Type.Kind().String()), typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return badRequest("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		return badRequest("malformed JSON: %v", err)
	}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "int", "int64", "float64":
		return "whole number"
	default:
		return goKind
	}
}

func badRequest(format string, args ...any) error {
	return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf(format, args...))
}

// serviceError maps the service's errors to statuses. An OS bind failure keeps
// its own words (address already in use, permission denied) so the operator
// knows what to fix.
func serviceError(err error) error {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, port.ErrNotConnected), errors.Is(err, port.ErrNotOpen):
		status = http.StatusNotFound
	case errors.Is(err, port.ErrAlreadyOpen), errors.Is(err, port.ErrLimit), errors.Is(err, syscall.EADDRINUSE):
		status = http.StatusConflict
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		status = http.StatusForbidden
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		status = http.StatusBadRequest
	case errors.Is(err, port.ErrUnavailable):
		status = http.StatusServiceUnavailable
	}
	return echo.NewHTTPError(status, err.Error())
}

type errorBody struct {
	Error string `json:"error"`
}

func errorHandler(log *zap.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		status := http.StatusInternalServerError
		msg := "internal error"
		var he *echo.HTTPError
		if errors.As(err, &he) {
			status = he.Code
			if m, ok := he.Message.(string); ok {
				msg = m
			} else {
				msg = strings.ToLower(http.StatusText(status))
			}
		}
		if status >= 500 {
			log.Error("api request failed", zap.String("method", c.Request().Method),
				zap.String("path", c.Request().URL.Path), zap.Int("status", status), zap.Error(err))
		}
		if c.Request().Method == http.MethodHead {
			_ = c.NoContent(status)
			return
		}
		_ = c.JSON(status, errorBody{Error: msg})
	}
}
