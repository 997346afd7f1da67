package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/listener/port"
	"github.com/socket-warp/socket-warp/shared/testutil"
)

// refusals counts what WithRefusals reports, by reason.
type refusals struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *refusals) add(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[string]int{}
	}
	r.n[reason]++
}

func (r *refusals) get(reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[reason]
}

// TestCrossSiteRefused: a web page the listener's operator views must not be
// able to use the API, which on loopback has no token by default. Browsers
// send a cross-site form or text/plain POST without asking first, and a
// page whose name was made to resolve to 127.0.0.1 (DNS rebinding) talks to
// the API as its own origin. So a body must be JSON, the Origin (which
// browsers add) must be the API's own, and the Host must be a name the API
// answers to. Real requests over a real socket; none reaches the service.
func TestCrossSiteRefused(t *testing.T) {
	svc := &recorder{}
	var counted refusals
	log, _ := testutil.Logger(t, "api")
	srv := httptest.NewServer(New(svc, log, WithAllowedHosts("listener.example.com"), WithRefusals(counted.add)))
	t.Cleanup(srv.Close)
	const open = `{"uid":"swc-1","port":8022,"connect_address":"127.0.0.1","connect_port":22}`
	hostPort := strings.TrimPrefix(srv.URL, "http://")
	_, port, _ := strings.Cut(hostPort, ":")

	for _, tc := range []struct {
		name, method, path string
		header             map[string]string
		status             int
		errorHas, refusal  string
	}{
		// What a web page can send without a preflight, as the page at
		// http://evil.example would send it.
		{"form POST from another site", "POST", "/open", map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil.example"},
			http.StatusForbidden, `Origin "http://evil.example" is not this API's own`, RefusedOrigin},
		{"text/plain POST from another site", "POST", "/open", map[string]string{"Content-Type": "text/plain", "Origin": "http://evil.example"},
			http.StatusForbidden, "cross-site request", RefusedOrigin},
		{"JSON POST from another site", "POST", "/open", map[string]string{"Origin": "https://evil.example"},
			http.StatusForbidden, "cross-site request", RefusedOrigin},
		{"POST from a sandboxed page", "POST", "/open", map[string]string{"Origin": "null"},
			http.StatusForbidden, `Origin "null"`, RefusedOrigin},
		{"POST from another port of the same host", "POST", "/open", map[string]string{"Origin": "http://127.0.0.1:1"},
			http.StatusForbidden, "cross-site request", RefusedOrigin},
		{"close from another site", "DELETE", "/close", map[string]string{"Origin": "http://evil.example"},
			http.StatusForbidden, "cross-site request", RefusedOrigin},
		{"list from another site", "GET", "/list", map[string]string{"Origin": "http://evil.example"},
			http.StatusForbidden, "cross-site request", RefusedOrigin},
		// Without an Origin (a form POST from an old browser, curl -d):
		// not JSON, so refused all the same.
		{"form POST", "POST", "/open", map[string]string{"Content-Type": "application/x-www-form-urlencoded"},
			http.StatusUnsupportedMediaType, "is not application/json", RefusedContentType},
		{"text/plain POST", "POST", "/open", map[string]string{"Content-Type": "text/plain;charset=UTF-8"},
			http.StatusUnsupportedMediaType, "is not application/json", RefusedContentType},
		// DNS rebinding: evil.example now resolves to 127.0.0.1, and the
		// page, same-origin as far as the browser knows, says so in Host.
		{"rebound name, POST", "POST", "/open", map[string]string{"Host": "evil.example:" + port, "Origin": "http://evil.example:" + port},
			http.StatusForbidden, `host "evil.example" is not one this API answers to`, RefusedHost},
		{"rebound name, GET", "GET", "/list", map[string]string{"Host": "evil.example:" + port},
			http.StatusForbidden, "SWL_API_ALLOWED_HOSTS", RefusedHost},
		{"rebound name, no port", "GET", "/connections", map[string]string{"Host": "evil.example"}, http.StatusForbidden, "evil.example", RefusedHost},
		{"name that ends like an allowed one", "GET", "/list", map[string]string{"Host": "evil-listener.example.com"}, http.StatusForbidden, "evil-listener.example.com", RefusedHost},
		{"subdomain of localhost", "GET", "/list", map[string]string{"Host": "evil.localhost"}, http.StatusForbidden, "evil.localhost", RefusedHost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := counted.get(tc.refusal)
			body := ""
			if tc.method != http.MethodGet {
				body = open
				if tc.path == "/close" {
					body = `{"port":8022}`
				}
			}
			r, _ := do(t, tc.method, srv.URL+tc.path, body, tc.header)
			if r.status != tc.status {
				t.Fatalf("status %d (%s), want %d", r.status, r.body, tc.status)
			}
			if msg := r.errorText(t); !strings.Contains(msg, tc.errorHas) {
				t.Fatalf("error %q does not say %q", msg, tc.errorHas)
			}
			if got := counted.get(tc.refusal) - before; got != 1 {
				t.Errorf("refusals %s counted %d times, want 1", tc.refusal, got)
			}
		})
	}
	if n := svc.calls(); n != 0 {
		t.Fatalf("cross-site requests reached the service %d times: opened %+v, closed %v", n, svc.opened, svc.closed)
	}

	// What the API's own clients send passes.
	for _, tc := range []struct {
		name   string
		header map[string]string
	}{
		{"curl or a program: no Origin", nil},
		{"Host localhost", map[string]string{"Host": "localhost:" + port}},
		{"Host LOCALHOST without a port", map[string]string{"Host": "LOCALHOST"}},
		{"Host localhost. (absolute)", map[string]string{"Host": "localhost.:" + port}},
		{"Host 127.0.0.1", map[string]string{"Host": "127.0.0.1"}},
		{"Host [::1]", map[string]string{"Host": "[::1]:" + port}},
		{"Host an address of the machine", map[string]string{"Host": "192.0.2.7:" + port}},
		{"Host a configured name", map[string]string{"Host": "listener.example.com:443"}},
		{"Host a configured name in another case", map[string]string{"Host": "Listener.Example.COM"}},
		{"Origin the API's own", map[string]string{"Origin": srv.URL}},
		{"Origin the API's own behind a TLS proxy", map[string]string{"Host": "listener.example.com", "Origin": "https://listener.example.com"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc.opened = nil
			r, _ := do(t, http.MethodPost, srv.URL+"/open", open, tc.header)
			if r.status != http.StatusOK || len(svc.opened) != 1 {
				t.Fatalf("status %d (%s), service opened %v; want 200 and the port opened", r.status, r.body, svc.opened)
			}
		})
	}
}

// TestHealthAnswersAnyHost: probes name the API however the orchestrator
// reaches it, and the health answers tell a foreign page nothing.
func TestHealthAnswersAnyHost(t *testing.T) {
	srv := httptest.NewServer(New(&recorder{}, zap.NewNop(), WithHealth(func() error { return nil })))
	t.Cleanup(srv.Close)
	for _, path := range []string{"/healthz", "/readyz"} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			r, _ := do(t, method, srv.URL+path, "", map[string]string{"Host": "sw-listener.ns.svc:8080", "Origin": "http://evil.example"})
			if r.status != http.StatusOK {
				t.Errorf("%s %s with a foreign host: %d %s", method, path, r.status, r.body)
			}
		}
	}
}

// TestHeadLikeGet: HEAD is GET without the body, on every GET route.
func TestHeadLikeGet(t *testing.T) {
	svc := &service{ports: map[int]port.Spec{8022: {UID: "swc-1", Port: 8022, ConnectAddress: "10.0.0.5", ConnectPort: 22}}}
	srv := httptest.NewServer(New(svc, zap.NewNop(), WithToken(testToken), WithHealth(func() error { return nil })))
	t.Cleanup(srv.Close)
	auth := map[string]string{"Authorization": "Bearer " + testToken}
	for _, path := range []string{"/list", "/connections", "/openapi.yaml", "/healthz", "/readyz"} {
		get, getHeader := do(t, http.MethodGet, srv.URL+path, "", auth)
		head, headHeader := do(t, http.MethodHead, srv.URL+path, "", auth)
		if get.status != http.StatusOK || head.status != http.StatusOK {
			t.Errorf("%s: GET %d, HEAD %d, want 200 both", path, get.status, head.status)
			continue
		}
		if head.body != "" {
			t.Errorf("HEAD %s has a body: %q", path, head.body)
		}
		if head.ctype != get.ctype || headHeader.Get("Content-Length") != getHeader.Get("Content-Length") {
			t.Errorf("HEAD %s: Content-Type %q, Content-Length %q; GET: %q, %q", path,
				head.ctype, headHeader.Get("Content-Length"), get.ctype, getHeader.Get("Content-Length"))
		}
	}
	// HEAD needs the token as GET does, and is no way around a method.
	if r, _ := do(t, http.MethodHead, srv.URL+"/list", "", nil); r.status != http.StatusUnauthorized {
		t.Errorf("HEAD /list without the token: %d", r.status)
	}
	if r, _ := do(t, http.MethodHead, srv.URL+"/open", "", auth); r.status != http.StatusMethodNotAllowed {
		t.Errorf("HEAD /open: %d, want 405", r.status)
	}
}
