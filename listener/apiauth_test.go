package listener

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/socket-warp/socket-warp/listener/api"
	"github.com/socket-warp/socket-warp/listener/port"
	"github.com/socket-warp/socket-warp/shared/testutil"
)

const (
	apiToken   = "swl-7d1e4b9c2a"
	wrongToken = "swl-7d1e4b9c2b"
)

// expectNoToken fails if any log entry shows either token, whole or in part.
func expectNoToken(t *testing.T, logs *observer.ObservedLogs) {
	t.Helper()
	for _, e := range logs.All() {
		line := fmt.Sprint(e.Message, e.ContextMap())
		if strings.Contains(line, "swl-7d1e") {
			t.Fatalf("a token shows in the log: %s", line)
		}
	}
}

// expectAuth checks the three cases: no header, a wrong token, the right one.
func expectAuth(t *testing.T, base, token string) {
	t.Helper()
	for _, tc := range []struct{ name, token string }{{"no header", ""}, {"wrong token", wrongToken}} {
		status, body := httpDo(t, http.MethodGet, base+"/list", tc.token, "")
		if status != http.StatusUnauthorized || !strings.Contains(body, "Authorization: Bearer <token>") {
			t.Fatalf("%s: %d %s, want 401 saying how to authenticate", tc.name, status, body)
		}
	}
	if status, body := httpDo(t, http.MethodGet, base+"/list", token, ""); status != http.StatusOK || body != "[]" {
		t.Fatalf("with the token: %d %s", status, body)
	}
	// Past the check, the API answers as ever.
	status, body := httpDo(t, http.MethodPost, base+"/open", token,
		openBody(port.Spec{UID: "swc-1", Port: 1, ConnectAddress: "a", ConnectPort: 1}))
	if status != http.StatusNotFound || !strings.Contains(body, "uid is not connected") {
		t.Fatalf("open with the token: %d %s", status, body)
	}
}

// TestAPIToken: with SWL_API_TOKEN set, the real API wants it on every
// request, and neither it nor a wrong one ever shows in the log.
func TestAPIToken(t *testing.T) {
	f := newFiles(t)
	cfg := f.config()
	cfg.APIToken = apiToken
	l := launch(t, cfg)
	expectAuth(t, l.api, apiToken)
	l.stop()
	// No header, then the wrong token.
	if n := metricValue(t, l.Listener, "socketwarp_listener_api_refusals_total", "reason", api.RefusedToken); n != 2 {
		t.Errorf("%v token refusals counted, want 2", n)
	}
	expectNoToken(t, l.logs)

	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		if s := fmt.Sprintf(verb, cfg); strings.Contains(s, apiToken) {
			t.Fatalf("the configuration printed with %s shows the token: %s", verb, s)
		}
	}
}

func TestAPITokenFile(t *testing.T) {
	f := newFiles(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	t.Run("read at start, trailing newline trimmed", func(t *testing.T) {
		cfg := f.config()
		cfg.APITokenFile = write("token", apiToken+"\n")
		l := launch(t, cfg)
		expectAuth(t, l.api, apiToken)
		l.stop()
		expectNoToken(t, l.logs)
	})

	for _, tc := range []struct {
		name, file string
		want       []string
	}{
		{"missing", filepath.Join(dir, "nope"), []string{"SWL_API_TOKEN_FILE", filepath.Join(dir, "nope"), "no such file"}},
		{"empty", write("empty", "\n"), []string{"SWL_API_TOKEN_FILE", filepath.Join(dir, "empty"), "is empty"}},
		{"spaces inside", write("spaces", "swl-7d1e 4b9c\n"), []string{filepath.Join(dir, "spaces"), "whitespace"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := f.config()
			cfg.APITokenFile = tc.file
			l, err := New(cfg, zap.NewNop())
			if l != nil {
				t.Fatal("New returned a listener along with an error")
			}
			testutil.WantErr(t, err, tc.want...)
			if strings.Contains(err.Error(), "swl-7d1e") {
				t.Fatalf("the error shows the token: %v", err)
			}
		})
	}

	t.Run("both set", func(t *testing.T) {
		cfg := f.config()
		cfg.APIToken, cfg.APITokenFile = apiToken, write("both", apiToken)
		_, err := New(cfg, zap.NewNop())
		testutil.WantErr(t, err, "SWL_API_TOKEN and SWL_API_TOKEN_FILE are both set")
		if strings.Contains(err.Error(), apiToken) {
			t.Fatalf("the error shows the token: %v", err)
		}
	})
}

// TestAPIOnNonLoopbackAddress: without a token the API may listen on
// loopback addresses only, unless SWL_API_INSECURE=true says otherwise.
func TestAPIOnNonLoopbackAddress(t *testing.T) {
	f := newFiles(t)
	for _, tc := range []struct{ addrs, named string }{
		{"0.0.0.0", "APIS_ADDRS=0.0.0.0 "},
		{"::", "APIS_ADDRS=:: "},
		{"127.0.0.1,192.0.2.1", "APIS_ADDRS=192.0.2.1 "},
	} {
		cfg := f.config()
		cfg.APIAddrs = tc.addrs
		_, err := New(cfg, zap.NewNop())
		testutil.WantErr(t, err, tc.named, "no token", "SWL_API_TOKEN", "SWL_API_INSECURE=true")
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("refusal is more than one line: %q", err)
		}
	}

	for _, addrs := range []string{"127.0.0.1", "127.0.0.2,::1", "::ffff:127.0.0.1"} {
		cfg := f.config()
		cfg.APIAddrs = addrs
		if err := cfg.Validate(); err != nil {
			t.Errorf("APIS_ADDRS=%s (loopback) refused: %v", addrs, err)
		}
	}
	for name, set := range map[string]func(*Config){
		"token":      func(c *Config) { c.APIToken = apiToken },
		"token file": func(c *Config) { c.APITokenFile = "/run/secrets/swl-token" },
		"insecure":   func(c *Config) { c.APIInsecure = true },
	} {
		cfg := f.config()
		cfg.APIAddrs = "0.0.0.0"
		set(&cfg)
		if err := cfg.Validate(); err != nil {
			t.Errorf("APIS_ADDRS=0.0.0.0 with %s refused: %v", name, err)
		}
	}

	cfg := f.config()
	cfg.APIAddrs, cfg.APIInsecure = "0.0.0.0", true
	l := launch(t, cfg)
	if !testutil.Logged(l.logs, "api has no token on a non-loopback address (SWL_API_INSECURE=true): whoever reaches it can open ports", "addrs", "0.0.0.0") {
		t.Error("serving the API without a token on every address is not warned of")
	}
	port := l.APIAddrs()[0].(*net.TCPAddr).Port
	if status, body := httpDo(t, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/list", port), "", ""); status != http.StatusOK {
		t.Fatalf("list on an insecure API: %d %s", status, body)
	}
}

// TestAPIAllowedHosts: the real API answers to the names of
// SWL_API_ALLOWED_HOSTS besides localhost and IP addresses, refuses any
// other name and a foreign Origin, and counts each refusal.
func TestAPIAllowedHosts(t *testing.T) {
	f := newFiles(t)
	cfg := f.config()
	cfg.APIAllowedHosts = "listener.example.com,sw-listener"
	l := launch(t, cfg)
	list := func(header map[string]string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, l.api+"/list", nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			if k == "Host" {
				req.Host = v
			} else {
				req.Header.Set(k, v)
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, host := range []string{"", "localhost:8080", "sw-listener:8080", "LISTENER.example.com"} {
		if status := list(map[string]string{"Host": host}); status != http.StatusOK {
			t.Errorf("Host %q: %d, want 200", host, status)
		}
	}
	for _, h := range []map[string]string{{"Host": "evil.example"}, {"Host": "listener.example.org"}, {"Origin": "http://evil.example"}} {
		if status := list(h); status != http.StatusForbidden {
			t.Errorf("%v: %d, want 403", h, status)
		}
	}
	m := testutil.Scrape(t, l.api+"/metrics", "")
	if n, _ := m.Value("socketwarp_listener_api_refusals_total", "reason", api.RefusedHost); n != 2 {
		t.Errorf("api refusals host = %v, want 2", n)
	}
	if n, _ := m.Value("socketwarp_listener_api_refusals_total", "reason", api.RefusedOrigin); n != 1 {
		t.Errorf("api refusals origin = %v, want 1", n)
	}
}
