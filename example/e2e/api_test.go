package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/socket-warp/socket-warp/shared/testutil"
)

func TestAPI(t *testing.T) {
	e, rl, _ := setup(t, "swc-1")
	target := testutil.EchoServer(t)
	port := testutil.FreePort(t)
	openBody := fmt.Sprintf(`{"uid":"swc-1","port":%d,"connect_address":"127.0.0.1","connect_port":%d}`, port, target.Port)

	// A port some other program holds.
	busy := testutil.Listen(t)
	busyPort := busy.Addr().(*net.TCPAddr).Port

	// Success first: /open, then /list shows it exactly as sent, with
	// its live figures after.
	r := call(t, "POST", rl.api+"/open", openBody)
	if r.status != http.StatusOK || !sameJSON(t, r.body, openBody) {
		t.Fatalf("open: %d %s", r.status, r.body)
	}
	listed := strings.TrimSuffix(openBody, "}") + `,"active_connections":0,"bytes_up":0,"bytes_down":0}`
	r = call(t, "GET", rl.api+"/list", "")
	if r.status != http.StatusOK || !sameJSON(t, r.body, "["+listed+"]") {
		t.Fatalf("list: %d %s, want [%s]", r.status, r.body, listed)
	}
	if got := roundTrip(t, dialPort(t, port), []byte("via api")); string(got) != "via api" {
		t.Fatalf("tunnel through the opened port answered %q", got)
	}

	open := func(uid string, port int, addr string, cport int) string {
		return fmt.Sprintf(`{"uid":%q,"port":%d,"connect_address":%q,"connect_port":%d}`, uid, port, addr, cport)
	}
	other := testutil.FreePort(t)
	big := `{"uid":"` + strings.Repeat("x", 70<<10) + `"}`
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		errorHas                 string
	}{
		{"malformed JSON", "POST", "/open", `{"uid":`, 400, "malformed JSON"},
		{"not JSON", "POST", "/open", `uid=swc-1`, 400, "malformed JSON"},
		{"empty body", "POST", "/open", ``, 400, "empty"},
		{"array body", "POST", "/open", `[1]`, 400, "object"},
		{"trailing data", "POST", "/open", open("swc-1", other, "127.0.0.1", 80) + `{}`, 400, "after the object"},
		{"unknown field", "POST", "/open", `{"uid":"swc-1","port":1,"connect_address":"a","connect_port":1,"color":"red"}`, 400, `unknown field "color"`},
		{"missing fields", "POST", "/open", `{"uid":"swc-1"}`, 400, "missing field(s): port, connect_address, connect_port"},
		{"wrong type", "POST", "/open", `{"uid":"swc-1","port":"80","connect_address":"a","connect_port":1}`, 400, "field port must be a whole number"},
		{"port zero", "POST", "/open", open("swc-1", 0, "127.0.0.1", 80), 400, "port 0 is outside 1-65535"},
		{"port too big", "POST", "/open", open("swc-1", 65536, "127.0.0.1", 80), 400, "port 65536 is outside 1-65535"},
		{"connect_port zero", "POST", "/open", open("swc-1", other, "127.0.0.1", 0), 400, "connect_port 0 is outside 1-65535"},
		{"connect_port too big", "POST", "/open", open("swc-1", other, "127.0.0.1", 70000), 400, "connect_port 70000"},
		{"empty connect_address", "POST", "/open", open("swc-1", other, "", 80), 400, "connect_address is empty"},
		{"body too large", "POST", "/open", big, 413, "larger than"},
		{"uid not connected", "POST", "/open", open("nobody", other, "127.0.0.1", 80), 404, "uid nobody: uid is not connected"},
		{"port already opened", "POST", "/open", open("swc-1", port, "127.0.0.1", 81), 409, "port is already open"},
		{"port in use by another program", "POST", "/open", open("swc-1", busyPort, "127.0.0.1", 80), 409, "address already in use"},
		{"close malformed", "DELETE", "/close", `{"port":}`, 400, "malformed JSON"},
		{"close missing port", "DELETE", "/close", `{}`, 400, "missing field(s): port"},
		{"close unknown field", "DELETE", "/close", `{"port":1,"uid":"x"}`, 400, `unknown field "uid"`},
		{"close port out of range", "DELETE", "/close", `{"port":-1}`, 400, "outside 1-65535"},
		{"close port not open", "DELETE", "/close", fmt.Sprintf(`{"port":%d}`, other), 404, "port is not open"},
		{"unknown route", "GET", "/nope", ``, 404, "Not Found"},
		{"wrong method", "GET", "/open", ``, 405, "Method Not Allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, tc.method, rl.api+tc.path, tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d (%s), want %d", r.status, r.body, tc.status)
			}
			if msg := r.errorText(t); !strings.Contains(msg, tc.errorHas) {
				t.Fatalf("error %q does not say %q", msg, tc.errorHas)
			}
		})
	}

	// None of the failures changed anything (the live figures aside).
	r = call(t, "GET", rl.api+"/list", "")
	var entries []map[string]any
	if err := json.Unmarshal([]byte(r.body), &entries); err != nil || len(entries) != 1 {
		t.Fatalf("list after bad requests: %s", r.body)
	}
	for _, k := range []string{"active_connections", "bytes_up", "bytes_down"} {
		delete(entries[0], k)
	}
	if b, _ := json.Marshal(entries); !sameJSON(t, string(b), "["+openBody+"]") {
		t.Fatalf("list after bad requests: %s", r.body)
	}

	r = call(t, "DELETE", rl.api+"/close", fmt.Sprintf(`{"port":%d}`, port))
	if r.status != http.StatusOK || !sameJSON(t, r.body, openBody) {
		t.Fatalf("close: %d %s", r.status, r.body)
	}
	r = call(t, "GET", rl.api+"/list", "")
	if r.status != http.StatusOK || r.body != "[]" {
		t.Fatalf("list after close: %d %s, want []", r.status, r.body)
	}
	_ = e
}

func TestAPIBindAddressNotAvailable(t *testing.T) {
	// An OS bind failure other than "in use": the configured bind address
	// (TEST-NET-1, never on this host) cannot be assigned.
	e := newEnv(t)
	cfg := e.listenerConfig()
	cfg.OpenAddrs = "192.0.2.1"
	rl := e.startListener(cfg)
	e.startConnector(e.connectorConfig("swc-1", rl.quicPort()))
	testutil.Eventually(t, "connector bound", func() bool { return rl.Connected("swc-1") })
	r := call(t, "POST", rl.api+"/open", fmt.Sprintf(`{"uid":"swc-1","port":%d,"connect_address":"127.0.0.1","connect_port":80}`, testutil.FreePort(t)))
	if r.status != http.StatusBadRequest || !strings.Contains(r.errorText(t), "cannot assign requested address") {
		t.Fatalf("open on an unavailable address: %d %s", r.status, r.body)
	}
}

func sameJSON(t *testing.T, a, b string) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal([]byte(a), &va); err != nil {
		t.Fatalf("%q: %v", a, err)
	}
	if err := json.Unmarshal([]byte(b), &vb); err != nil {
		t.Fatalf("%q: %v", b, err)
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return string(ja) == string(jb)
}
