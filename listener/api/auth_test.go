package api

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/listener/port"
	"github.com/socket-warp/socket-warp/shared/testutil"
)

const testToken = "tok-3f9a1c0d8b7e"

// callAs is call with an Authorization header (none when auth is "").
func callAs(t *testing.T, method, url, auth, body string) (result, http.Header) {
	t.Helper()
	var h map[string]string
	if auth != "" {
		h = map[string]string{"Authorization": auth}
	}
	return do(t, method, url, body, h)
}

// TestTokenRequired: with a token, every request without exactly that
// bearer token is 401 with a body that says how to authenticate, reaches no
// handler (an unknown route tells nothing either), is counted as a token
// refusal, and is logged without what it sent.
func TestTokenRequired(t *testing.T) {
	svc := &service{ports: map[int]port.Spec{}}
	var counted refusals
	log, logs := testutil.Logger(t, "api")
	srv := httptest.NewServer(New(svc, log, WithToken(testToken), WithRefusals(counted.add)))
	t.Cleanup(srv.Close)
	const openBody = `{"uid":"swc-1","port":8022,"connect_address":"10.0.0.5","connect_port":22}`

	cases := []struct {
		name, method, path, auth, body string
	}{
		{"no header", http.MethodGet, "/list", "", ""},
		{"wrong token", http.MethodGet, "/list", "Bearer tok-3f9a1c0d8b7f", ""},
		{"token prefix", http.MethodGet, "/list", "Bearer tok-3f9a", ""},
		{"token with more", http.MethodGet, "/list", "Bearer " + testToken + "x", ""},
		{"empty bearer", http.MethodGet, "/list", "Bearer", ""},
		{"token without scheme", http.MethodGet, "/list", testToken, ""},
		{"basic scheme", http.MethodGet, "/list", "Basic " + testToken, ""},
		{"open without token", http.MethodPost, "/open", "", openBody},
		{"close without token", http.MethodDelete, "/close", "", `{"port":8022}`},
		{"unknown route", http.MethodGet, "/nope", "", ""},
		{"wrong method", http.MethodGet, "/open", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, h := callAs(t, tc.method, srv.URL+tc.path, tc.auth, tc.body)
			if r.status != http.StatusUnauthorized {
				t.Fatalf("status %d (%s), want 401", r.status, r.body)
			}
			if msg := r.errorText(t); msg != UnauthorizedMessage {
				t.Fatalf("error %q, want %q", msg, UnauthorizedMessage)
			}
			if !strings.Contains(r.body, "'Authorization: Bearer <token>'") {
				t.Fatalf("body %s, want <token> readable as such", r.body)
			}
			if got := h.Get("WWW-Authenticate"); got != `Bearer realm="socket-warp"` {
				t.Fatalf("WWW-Authenticate %q", got)
			}
		})
	}
	if svc.calls != 0 {
		t.Fatalf("refused requests reached the service %d times", svc.calls)
	}
	if n := counted.get(RefusedToken); n != len(cases) {
		t.Errorf("%d token refusals counted, want %d", n, len(cases))
	}

	for _, auth := range []string{"Bearer " + testToken, "bearer " + testToken, "BEARER " + testToken} {
		if r, _ := callAs(t, http.MethodGet, srv.URL+"/list", auth, ""); r.status != http.StatusOK || r.body != "[]" {
			t.Fatalf("list with %q: %d %s", strings.Fields(auth)[0], r.status, r.body)
		}
	}
	auth := "Bearer " + testToken
	if r, _ := callAs(t, http.MethodPost, srv.URL+"/open", auth, openBody); r.status != http.StatusOK {
		t.Fatalf("open with the token: %d %s", r.status, r.body)
	}
	if r, _ := callAs(t, http.MethodDelete, srv.URL+"/close", auth, `{"port":8022}`); r.status != http.StatusOK {
		t.Fatalf("close with the token: %d %s", r.status, r.body)
	}
	// Behind the check, errors are the API's as ever.
	if r, _ := callAs(t, http.MethodGet, srv.URL+"/nope", auth, ""); r.status != http.StatusNotFound {
		t.Fatalf("unknown route with the token: %d %s", r.status, r.body)
	}

	for _, e := range logs.All() {
		line := fmt.Sprint(e.Message, e.ContextMap())
		if strings.Contains(line, "tok-3f9a") {
			t.Fatalf("a token shows in the log: %s", line)
		}
	}
}

func TestNoTokenNoCheck(t *testing.T) {
	url := serve(t, &service{ports: map[int]port.Spec{}})
	if r, _ := callAs(t, http.MethodGet, url+"/list", "", ""); r.status != http.StatusOK {
		t.Fatalf("list without a configured token: %d %s", r.status, r.body)
	}
	srv := httptest.NewServer(New(&service{ports: map[int]port.Spec{}}, zap.NewNop(), WithToken("")))
	t.Cleanup(srv.Close)
	if r, _ := callAs(t, http.MethodGet, srv.URL+"/list", "", ""); r.status != http.StatusOK {
		t.Fatalf("list with an empty token: %d %s", r.status, r.body)
	}
}

// TestHealthAndMetricsWithToken: /healthz and /readyz answer without the
// token (probes carry none), /metrics and /connections need it like the
// rest of the API, and a POST to a health path is no way around the token.
func TestHealthAndMetricsWithToken(t *testing.T) {
	ready := fmt.Errorf("starting")
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("socketwarp_test 1\n"))
	})
	srv := httptest.NewServer(New(&service{ports: map[int]port.Spec{}}, zap.NewNop(), WithToken(testToken),
		WithHealth(func() error { return ready }), WithMetrics(metrics)))
	t.Cleanup(srv.Close)

	if r, _ := callAs(t, http.MethodGet, srv.URL+"/healthz", "", ""); r.status != http.StatusOK {
		t.Errorf("/healthz without token: %d %s", r.status, r.body)
	}
	if r, _ := callAs(t, http.MethodGet, srv.URL+"/readyz", "", ""); r.status != http.StatusServiceUnavailable ||
		!strings.Contains(r.body, "not ready: starting") {
		t.Errorf("/readyz while starting: %d %s", r.status, r.body)
	}
	ready = nil
	if r, _ := callAs(t, http.MethodGet, srv.URL+"/readyz", "", ""); r.status != http.StatusOK {
		t.Errorf("/readyz when ready: %d %s", r.status, r.body)
	}
	for _, path := range []string{"/metrics", "/connections"} {
		if r, _ := callAs(t, http.MethodGet, srv.URL+path, "", ""); r.status != http.StatusUnauthorized {
			t.Errorf("%s without token: %d, want 401", path, r.status)
		}
		if r, _ := callAs(t, http.MethodGet, srv.URL+path, "Bearer "+testToken, ""); r.status != http.StatusOK {
			t.Errorf("%s with token: %d %s", path, r.status, r.body)
		}
	}
	if r, _ := callAs(t, http.MethodPost, srv.URL+"/healthz", "", ""); r.status != http.StatusUnauthorized {
		t.Errorf("POST /healthz without token: %d, want 401", r.status)
	}
}
