package devca

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"
)

// maxAdminBody bounds an admin request body.
const maxAdminBody = 1 << 20

// AddClientRequest is the body of POST /admin/api/client/add.
type AddClientRequest struct {
	UID        string         `json:"uid"`
	Attributes map[string]any `json:"attributes"`
}

// CreateSecretRequest is the body of POST /admin/api/secret/create. The
// periods are Go durations ("24h", "90m"); Secret empty means generate one.
type CreateSecretRequest struct {
	Target          string `json:"target"`
	Secret          string `json:"secret,omitempty"`
	AvailablePeriod string `json:"available_period,omitempty"`
	PendingPeriod   string `json:"pending_period,omitempty"`
}

// CreateSecretResponse is the 201 answer of POST /admin/api/secret/create.
type CreateSecretResponse struct {
	Target        string    `json:"target"`
	Secret        string    `json:"secret"`
	Type          string    `json:"type"`
	DeleteAt      time.Time `json:"delete_at"`
	PendingPeriod string    `json:"pending_period"`
}

// RevokeClientRequest is the body of POST /admin/api/client/revoke.
type RevokeClientRequest struct {
	UID string `json:"uid"`
}

// ErrorResponse is the body of every admin (and verify) error.
type ErrorResponse struct {
	Message string `json:"message"`
}

// AdminHandler returns the admin API: /admin/api/ping, /admin/api/client/add,
// /admin/api/secret/create and /admin/api/client/revoke. Like the reference it
// needs no authentication; serve it on loopback, or wrap it in WithAdminToken.
func (ca *CA) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/api/ping", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "pong")
	})
	mux.HandleFunc("POST /admin/api/client/add", ca.serveAddClient)
	mux.HandleFunc("POST /admin/api/secret/create", ca.serveCreateSecret)
	mux.HandleFunc("POST /admin/api/client/revoke", ca.serveRevoke)
	mux.HandleFunc("PUT /admin/api/client/revoke", ca.serveRevoke)
	return mux
}

// WithAdminToken wraps an admin handler so that it requires
// "Authorization: Bearer <token>", compared in constant time. An empty token
// returns next unchanged.
func WithAdminToken(token string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
		if subtle.ConstantTimeCompare(sum[:], want[:]) != 1 || !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sw-devca admin"`)
			writeJSON(w, http.StatusUnauthorized, ErrorResponse{"Unauthorized"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// decodeBody reads a JSON body into v; it answers the error itself.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAdminBody))
	if err := dec.Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, ErrorResponse{"Failed to decode request: " + err.Error()})
		return false
	}
	if dec.More() {
		writeJSON(w, http.StatusBadRequest, ErrorResponse{"Failed to decode request: trailing data"})
		return false
	}
	return true
}

// writeAdminError maps the CA's errors to status codes and the reference's
// messages where it has one.
func writeAdminError(w http.ResponseWriter, err error, notFound string) {
	status, msg := http.StatusInternalServerError, "internal error"
	switch {
	case errors.Is(err, ErrInvalidUID), errors.Is(err, ErrInvalidSecret), errors.Is(err, ErrInvalidPeriod):
		status, msg = http.StatusBadRequest, strings.TrimPrefix(err.Error(), "devca: ")
		if _, after, ok := strings.Cut(msg, ": "); ok && errors.Is(err, ErrInvalidUID) {
			msg = after // "UID is required", "UID contains backslash"
		}
	case errors.Is(err, ErrClientNotFound):
		status, msg = http.StatusNotFound, notFound
	case errors.Is(err, ErrClientExists):
		status, msg = http.StatusConflict, "Client already exists"
	case errors.Is(err, ErrClientState):
		status, msg = http.StatusConflict, "Client is not in INACTIVE or ISSUED state"
	case errors.Is(err, ErrAlreadyInactive):
		status, msg = http.StatusBadRequest, "Client is already in INACTIVE state"
	case errors.Is(err, ErrClosed):
		status, msg = http.StatusServiceUnavailable, "CA is closed"
	}
	writeJSON(w, status, ErrorResponse{msg})
}

func (ca *CA) serveAddClient(w http.ResponseWriter, r *http.Request) {
	var req AddClientRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if err := ca.AddClient(req.UID, req.Attributes); err != nil {
		ca.logAdminError("client add", req.UID, err)
		writeAdminError(w, err, "Client not found")
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (ca *CA) serveCreateSecret(w http.ResponseWriter, r *http.Request) {
	var req CreateSecretRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if strings.Contains(req.Target, `\`) {
		writeJSON(w, http.StatusBadRequest, ErrorResponse{"Target contains backslash"})
		return
	}
	opts := SecretOptions{Secret: req.Secret}
	for _, p := range []struct {
		name, value string
		dst         *time.Duration
	}{
		{"available_period", req.AvailablePeriod, &opts.AvailablePeriod},
		{"pending_period", req.PendingPeriod, &opts.PendingPeriod},
	} {
		if p.value == "" {
			continue
		}
		d, err := time.ParseDuration(p.value)
		if err != nil || d < 0 {
			writeJSON(w, http.StatusBadRequest, ErrorResponse{fmt.Sprintf("%s: %q is not a duration such as 24h", p.name, p.value)})
			return
		}
		*p.dst = d
	}
	info, err := ca.CreateSecretWith(req.Target, opts)
	if err != nil {
		ca.logAdminError("secret create", req.Target, err)
		writeAdminError(w, err, "Target not found")
		return
	}
	writeJSON(w, http.StatusCreated, CreateSecretResponse{
		Target:        info.UID,
		Secret:        info.Secret,
		Type:          info.Type,
		DeleteAt:      info.ExpiresAt,
		PendingPeriod: info.PendingPeriod.String(),
	})
}

func (ca *CA) serveRevoke(w http.ResponseWriter, r *http.Request) {
	var req RevokeClientRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if err := ca.Revoke(req.UID); err != nil {
		ca.logAdminError("client revoke", req.UID, err)
		writeAdminError(w, err, "Client not found")
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (ca *CA) logAdminError(op, uid string, err error) {
	ca.log.Info("admin request refused", zap.String("op", op), zap.String("uid", uid), zap.Error(err))
}
