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
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/listener/auth"
	"github.com/socket-warp/socket-warp/shared/metrics"
)

// OpenAPI is the description of every route New registers (openapi.yaml,
// served at GET /openapi.yaml). openapi_test.go holds the two to each other.
//
//go:embed openapi.yaml
var OpenAPI []byte

// MaxBodyBytes caps request bodies; the largest valid one is far smaller.
const MaxBodyBytes = 64 << 10

// Sentinel errors a Service returns (wrapped) for the API to map to statuses.
var (
	ErrNotConnected = errors.New("uid is not connected")
	ErrAlreadyOpen  = errors.New("port is already open")
	ErrNotOpen      = errors.New("port is not open")
	ErrUnavailable  = errors.New("service unavailable")
	// ErrLimit: a configured limit is reached (409: closing something
	// first makes room).
	ErrLimit = errors.New("limit reached")
)

// Port is an opened port: the shape POST /open accepts, plus Error.
type Port struct {
	UID            string `json:"uid"`
	Port           int    `json:"port"`
	ConnectAddress string `json:"connect_address"`
	ConnectPort    int    `json:"connect_port"`
	// ProxyProtocol is ProxyV1 or ProxyV2 to have the connector send the
	// target a PROXY protocol header with the client's address; "" sends
	// none, and is left out of the JSON so the original shape holds.
	ProxyProtocol string `json:"proxy_protocol,omitempty"`
	// Error, set only in GET /list (and the answer of DELETE /close), says
	// why a port restored at start cannot be served, e.g. "bad stream
	// header: target port is 0", or why a served port does not listen for
	// now (its socket died, or was not bound at start, and is being bound).
	Error string `json:"error,omitempty"`
}

// Live are the figures of a served port, added to its entry in GET /list.
type Live struct {
	ActiveConnections int64 `json:"active_connections"` // tunnelled now
	BytesUp           int64 `json:"bytes_up"`           // client → target, since the port was opened
	BytesDown         int64 `json:"bytes_down"`         // target → client
}

// Connection is a connected connector, in GET /connections.
type Connection struct {
	UID            string    `json:"uid"`
	Remote         string    `json:"remote"`
	ConnectedSince time.Time `json:"connected_since"`
	CertNotAfter   time.Time `json:"cert_not_after"`
	RTTSeconds     float64   `json:"rtt_seconds"` // smoothed QUIC round-trip time
	ActiveStreams  int64     `json:"active_streams"`
	BytesUp        int64     `json:"bytes_up"` // tunnelled over this connection
	BytesDown      int64     `json:"bytes_down"`
	Draining       bool      `json:"draining"` // it said it is going away
}

// Values of Port.ProxyProtocol.
const (
	ProxyV1 = "v1"
	ProxyV2 = "v2"
)

// Service is what the API drives.
type Service interface {
	Open(ctx context.Context, p Port) error
	Close(ctx context.Context, port int) (Port, error)
	List() []Port
	// Live is nil for a port that is not served (any more).
	Live(port int) *Live
	Connections() []Connection
}

// listEntry is a port in GET /list: the Port fields, then the Live ones
// when it is served (also while its socket is bound anew: its tunnels go
// on).
type listEntry struct {
	Port
	*Live
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
	p := Port{UID: *req.UID, Port: *req.Port, ConnectAddress: *req.ConnectAddress, ConnectPort: *req.ConnectPort}
	if req.ProxyProtocol != nil {
		p.ProxyProtocol = *req.ProxyProtocol
	}
	if err := validate(p); err != nil {
		return err
	}
	if err := h.svc.Open(c.Request().Context(), p); err != nil {
		return serviceError(err)
	}
	return c.JSON(http.StatusOK, p)
}

func validate(p Port) error {
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
	case "", ProxyV1, ProxyV2:
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
	p, err := h.svc.Close(c.Request().Context(), *req.Port)
	if err != nil {
		return serviceError(err)
	}
	return c.JSON(http.StatusOK, p)
}

func (h *handlers) list(c echo.Context) error {
	ports := h.svc.List()
	out := make([]listEntry, 0, len(ports))
	for _, p := range ports {
		out = append(out, listEntry{Port: p, Live: h.svc.Live(p.Port)})
	}
	return c.JSON(http.StatusOK, out)
}

func (h *handlers) connections(c echo.Context) error {
	conns := h.svc.Connections()
	if conns == nil {
		conns = []Connection{}
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
	case errors.Is(err, ErrNotConnected), errors.Is(err, ErrNotOpen):
		status = http.StatusNotFound
	case errors.Is(err, ErrAlreadyOpen), errors.Is(err, ErrLimit), errors.Is(err, syscall.EADDRINUSE):
		status = http.StatusConflict
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		status = http.StatusForbidden
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		status = http.StatusBadRequest
	case errors.Is(err, ErrUnavailable):
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
