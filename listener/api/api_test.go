package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"

	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/listener/port"
	"github.com/socket-warp/socket-warp/shared/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }

// service is a small in-memory Service: the API layer is what is under test.
// openErr and closeErr, when set, are what OpenPort and ClosePort fail with.
type service struct {
	mu       sync.Mutex
	ports    map[int]port.Spec
	calls    int
	openErr  error
	closeErr error
}

func (s *service) OpenPort(_ context.Context, p port.Spec) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.openErr != nil {
		return s.openErr
	}
	if _, ok := s.ports[p.Port]; ok {
		return fmt.Errorf("open port %d: %w", p.Port, port.ErrAlreadyOpen)
	}
	s.ports[p.Port] = p
	return nil
}

func (s *service) ClosePort(_ context.Context, number int) (port.Spec, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.closeErr != nil {
		return port.Spec{}, s.closeErr
	}
	p, ok := s.ports[number]
	if !ok {
		return port.Spec{}, fmt.Errorf("close port %d: %w", number, port.ErrNotOpen)
	}
	delete(s.ports, number)
	return p, nil
}

func (s *service) List() []port.Spec {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []port.Spec // nil when empty, which must still list as []
	for _, p := range s.ports {
		out = append(out, p)
	}
	return out
}

// Connections lists one connector, so that GET /connections has a shape
// to check.
func (s *service) Connections() []port.Connection {
	return []port.Connection{{UID: "swc-1", Remote: "192.0.2.1:4433", ActiveStreams: 2, BytesUp: 10, BytesDown: 20}}
}

// Live gives every port the same figures: the API only passes them on.
func (s *service) Live(int) *port.Live {
	return &port.Live{ActiveConnections: 1, BytesUp: 10, BytesDown: 20}
}

func serve(t *testing.T, svc Service) string {
	t.Helper()
	srv := httptest.NewServer(New(svc, zap.NewNop()))
	t.Cleanup(srv.Close)
	return srv.URL
}

type result struct {
	status int
	ctype  string
	body   string
}

func call(t *testing.T, method, url, body string) result {
	t.Helper()
	r, _ := do(t, method, url, body, nil)
	return r
}

// do sends one request with the given headers and reads the whole answer.
// A body goes as application/json unless header says otherwise; a header
// given as "" is not sent at all. "Host" sets the request's Host.
func do(t *testing.T, method, url, body string, header map[string]string) (result, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		switch {
		case k == "Host":
			req.Host = v
		case v == "":
			req.Header.Del(k)
		default:
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return result{resp.StatusCode, resp.Header.Get("Content-Type"), strings.TrimSpace(string(b))}, resp.Header
}

// errorText checks that r is a JSON error body {"error": "..."} with nothing
// else in it, and returns the message.
func (r result) errorText(t *testing.T) string {
	t.Helper()
	if !strings.HasPrefix(r.ctype, "application/json") {
		t.Fatalf("Content-Type %q, want application/json (body %q)", r.ctype, r.body)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		t.Fatalf("error body %q is not JSON: %v", r.body, err)
	}
	msg, ok := body["error"].(string)
	if !ok || msg == "" || len(body) != 1 {
		t.Fatalf("error body %q, want {\"error\": \"...\"}", r.body)
	}
	return msg
}

func bindError(errno syscall.Errno) error {
	return fmt.Errorf("open port 8022: %w", &net.OpError{
		Op: "listen", Net: "tcp",
		Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8022},
		Err:  os.NewSyscallError("bind", errno),
	})
}

// TestServiceErrorStatuses maps what a Service returns to a status, keeping
// the error's own words. A real EACCES cannot be provoked here (the tests may
// run as root), so the OS errors are built as net.Listen returns them.
func TestServiceErrorStatuses(t *testing.T) {
	const openBody = `{"uid":"swc-1","port":8022,"connect_address":"127.0.0.1","connect_port":22}`
	for _, tc := range []struct {
		name     string
		err      error
		status   int
		errorHas string
	}{
		{"bind permission denied", bindError(syscall.EACCES), http.StatusForbidden, "permission denied"},
		{"bind not permitted", bindError(syscall.EPERM), http.StatusForbidden, "operation not permitted"},
		{"address in use", bindError(syscall.EADDRINUSE), http.StatusConflict, "address already in use"},
		{"address not available", bindError(syscall.EADDRNOTAVAIL), http.StatusBadRequest, "cannot assign requested address"},
		{"not connected", fmt.Errorf("open port 8022: uid swc-1: %w", port.ErrNotConnected), http.StatusNotFound, "uid swc-1: uid is not connected"},
		{"already open", fmt.Errorf("open port 8022: %w", port.ErrAlreadyOpen), http.StatusConflict, "port is already open"},
		{"limit", fmt.Errorf("open port 8022: too many open ports (1000, SWL_MAX_PORTS): %w", port.ErrLimit), http.StatusConflict, "too many open ports"},
		{"unavailable", fmt.Errorf("open port 8022: listener is shutting down: %w", port.ErrUnavailable), http.StatusServiceUnavailable, "shutting down"},
		{"anything else", errors.New("open port 8022: disk on fire"), http.StatusInternalServerError, "disk on fire"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := serve(t, &service{ports: map[int]port.Spec{}, openErr: tc.err})
			r := call(t, http.MethodPost, url+"/open", openBody)
			if r.status != tc.status {
				t.Fatalf("status %d (%s), want %d", r.status, r.body, tc.status)
			}
			if msg := r.errorText(t); !strings.Contains(msg, tc.errorHas) || !strings.Contains(msg, "open port 8022") {
				t.Fatalf("error %q, want the service's words %q", msg, tc.errorHas)
			}
		})
	}

	t.Run("close not open", func(t *testing.T) {
		url := serve(t, &service{ports: map[int]port.Spec{}})
		r := call(t, http.MethodDelete, url+"/close", `{"port":8022}`)
		if msg := r.errorText(t); r.status != http.StatusNotFound || !strings.Contains(msg, "port is not open") {
			t.Fatalf("close: %d %q", r.status, msg)
		}
	})
	t.Run("close fails in the OS", func(t *testing.T) {
		url := serve(t, &service{ports: map[int]port.Spec{}, closeErr: bindError(syscall.EACCES)})
		r := call(t, http.MethodDelete, url+"/close", `{"port":8022}`)
		if msg := r.errorText(t); r.status != http.StatusForbidden || !strings.Contains(msg, "permission denied") {
			t.Fatalf("close: %d %q", r.status, msg)
		}
	})
}

// TestErrorsAreJSON: every failure, including those echo produces itself,
// is {"error": ...} as JSON, and none reaches the service.
func TestErrorsAreJSON(t *testing.T) {
	svc := &service{ports: map[int]port.Spec{}}
	url := serve(t, svc)
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		errorHas                 string
	}{
		{"unknown route", http.MethodGet, "/nope", "", http.StatusNotFound, "Not Found"},
		{"unknown route with a body", http.MethodPost, "/open/extra", `{}`, http.StatusNotFound, "Not Found"},
		{"wrong method on /open", http.MethodGet, "/open", "", http.StatusMethodNotAllowed, "Method Not Allowed"},
		{"wrong method on /list", http.MethodPost, "/list", `{}`, http.StatusMethodNotAllowed, "Method Not Allowed"},
		{"wrong method on /close", http.MethodPost, "/close", `{"port":1}`, http.StatusMethodNotAllowed, "Method Not Allowed"},
		{"malformed JSON", http.MethodPost, "/open", `{"uid":`, http.StatusBadRequest, "malformed JSON"},
		{"null body", http.MethodPost, "/open", `null`, http.StatusBadRequest, "missing field(s): uid, port, connect_address, connect_port"},
		{"string body", http.MethodPost, "/open", `"swc-1"`, http.StatusBadRequest, "must be an object, not string"},
		{"several problems at once", http.MethodPost, "/open",
			`{"uid":" ","port":0,"connect_address":"a b","connect_port":65536}`, http.StatusBadRequest,
			`uid " " is blank; port 0 is outside 1-65535; connect_address "a b" is not a host name or IP address`},
		{"body too large", http.MethodDelete, "/close", `{"port":1` + strings.Repeat(" ", MaxBodyBytes) + `}`,
			http.StatusRequestEntityTooLarge, "larger than"},
		{"close port wrong type", http.MethodDelete, "/close", `{"port":"1"}`, http.StatusBadRequest, "field port must be a whole number, not string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, tc.method, url+tc.path, tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d (%s), want %d", r.status, r.body, tc.status)
			}
			if msg := r.errorText(t); !strings.Contains(msg, tc.errorHas) {
				t.Fatalf("error %q does not say %q", msg, tc.errorHas)
			}
		})
	}
	if svc.calls != 0 {
		t.Fatalf("malformed requests reached the service %d times", svc.calls)
	}
}

func TestOpenListClose(t *testing.T) {
	url := serve(t, &service{ports: map[int]port.Spec{}})
	r := call(t, http.MethodGet, url+"/list", "")
	if r.status != http.StatusOK || r.body != "[]" || !strings.HasPrefix(r.ctype, "application/json") {
		t.Fatalf("empty list: %d %q %q, want 200 []", r.status, r.ctype, r.body)
	}
	const body = `{"uid":"swc-1","port":8022,"connect_address":"10.0.0.5","connect_port":22}`
	if r = call(t, http.MethodPost, url+"/open", body); r.status != http.StatusOK || r.body != body {
		t.Fatalf("open: %d %s", r.status, r.body)
	}
	// The fields of /open, then the live ones.
	const listed = `{"uid":"swc-1","port":8022,"connect_address":"10.0.0.5","connect_port":22,` +
		`"active_connections":1,"bytes_up":10,"bytes_down":20}`
	if r = call(t, http.MethodGet, url+"/list", ""); r.status != http.StatusOK || r.body != "["+listed+"]" {
		t.Fatalf("list: %d %s, want [%s]", r.status, r.body, listed)
	}
	if r = call(t, http.MethodGet, url+"/connections", ""); r.status != http.StatusOK ||
		!strings.Contains(r.body, `"uid":"swc-1","remote":"192.0.2.1:4433"`) || !strings.Contains(r.body, `"active_streams":2,"bytes_up":10,"bytes_down":20`) {
		t.Fatalf("connections: %d %s", r.status, r.body)
	}
	if r = call(t, http.MethodDelete, url+"/close", `{"port":8022}`); r.status != http.StatusOK || r.body != body {
		t.Fatalf("close: %d %s", r.status, r.body)
	}
}

// TestProxyProtocolShape: proxy_protocol shows in the answers only when it
// is set, so a client of the original four fields sees them alone.
func TestProxyProtocolShape(t *testing.T) {
	url := serve(t, &service{ports: map[int]port.Spec{}})
	const plain = `{"uid":"swc-1","port":8022,"connect_address":"10.0.0.5","connect_port":22}`
	const v2 = `{"uid":"swc-1","port":8023,"connect_address":"10.0.0.5","connect_port":22,"proxy_protocol":"v2"}`
	for _, tc := range []struct{ body, want string }{
		{plain, plain},
		{v2, v2},
		{`{"uid":"swc-1","port":8024,"connect_address":"10.0.0.5","connect_port":22,"proxy_protocol":""}`,
			`{"uid":"swc-1","port":8024,"connect_address":"10.0.0.5","connect_port":22}`},
	} {
		if r := call(t, http.MethodPost, url+"/open", tc.body); r.status != http.StatusOK || r.body != tc.want {
			t.Fatalf("open %s: %d %s, want %s", tc.body, r.status, r.body, tc.want)
		}
	}
	r := call(t, http.MethodGet, url+"/list", "")
	var listed []map[string]any
	if err := json.Unmarshal([]byte(r.body), &listed); err != nil || len(listed) != 3 {
		t.Fatalf("list: %d %s (%v)", r.status, r.body, err)
	}
	for _, p := range listed {
		pp, has := p["proxy_protocol"]
		if want := p["port"] == 8023.0; has != want || (has && pp != "v2") {
			t.Errorf("listed %v: proxy_protocol present=%v, want %v", p, has, want)
		}
	}
	if r = call(t, http.MethodDelete, url+"/close", `{"port":8023}`); r.status != http.StatusOK || r.body != v2 {
		t.Fatalf("close: %d %s", r.status, r.body)
	}
}
