package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/listener/port"
)

// FuzzOpenRequest sends any bytes as the body of POST /open, through the
// handler without a socket. Whatever it is: no panic, a JSON answer, 200 only
// for a request that is valid (and then exactly what reached the service),
// otherwise a 4xx {"error": "..."} and nothing reached the service. Seeds are
// in testdata/fuzz/FuzzOpenRequest.
func FuzzOpenRequest(f *testing.F) {
	f.Add([]byte(`{"uid":"swc-1","port":8022,"connect_address":"127.0.0.1","connect_port":22}`))
	f.Add([]byte("{\"uid\":\"\xff\",\"port\":1,\"connect_address\":\"a\",\"connect_port\":1}"))
	f.Add([]byte(strings.Repeat("[", 100)))
	f.Add([]byte(`{"uid":"swc-1","port":8022,"connect_address":"127.0.0.1","connect_port":22,"proxy_protocol":"v2"}`))
	f.Add([]byte(`{"uid":"swc-1","port":8022,"connect_address":"127.0.0.1","connect_port":22,"proxy_protocol":"v3"}`))

	// One handler for every input (they run one at a time); the recorder is
	// emptied before each.
	svc := &recorder{}
	e := New(svc, zap.NewNop())
	f.Fuzz(func(t *testing.T, body []byte) {
		svc.opened, svc.closed = nil, nil
		req := httptest.NewRequest(http.MethodPost, "/open", bytes.NewReader(body))
		req.Host = "127.0.0.1:8080" // not httptest's example.com, which the API does not answer to
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)

		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Fatalf("status %d, Content-Type %q", rec.Code, ct)
		}
		answer := rec.Body.Bytes()
		if !json.Valid(answer) {
			t.Fatalf("status %d, answer is not JSON: %q", rec.Code, answer)
		}

		if rec.Code == http.StatusOK {
			if !utf8.Valid(body) {
				t.Fatalf("accepted a body that is not valid UTF-8: %q", body)
			}
			if len(svc.opened) != 1 || len(svc.closed) != 0 {
				t.Fatalf("200, but the service saw opened %+v closed %v", svc.opened, svc.closed)
			}
			p := svc.opened[0]
			if p.Port < 1 || p.Port > 65535 || p.ConnectPort < 1 || p.ConnectPort > 65535 ||
				strings.TrimSpace(p.UID) == "" || strings.TrimSpace(p.ConnectAddress) == "" ||
				!utf8.ValidString(p.UID) || !utf8.ValidString(p.ConnectAddress) || p.Error != "" ||
				(p.ProxyProtocol != "" && p.ProxyProtocol != port.ProxyV1 && p.ProxyProtocol != port.ProxyV2) {
				t.Fatalf("accepted an invalid request %+v from %q", p, body)
			}
			var got port.Spec
			if err := json.Unmarshal(answer, &got); err != nil || got != p {
				t.Fatalf("answered %s for %+v (%v)", answer, p, err)
			}
			return
		}

		if rec.Code != http.StatusBadRequest && rec.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d for %q: %s", rec.Code, body, answer)
		}
		if rec.Code == http.StatusRequestEntityTooLarge && len(body) <= MaxBodyBytes {
			t.Fatalf("413 for a body of %d bytes", len(body))
		}
		if n := len(svc.opened) + len(svc.closed); n != 0 {
			t.Fatalf("status %d, but the request reached the service %d times", rec.Code, n)
		}
		var errBody map[string]any
		if err := json.Unmarshal(answer, &errBody); err != nil {
			t.Fatalf("answer %s: %v", answer, err)
		}
		if msg, ok := errBody["error"].(string); !ok || msg == "" || len(errBody) != 1 {
			t.Fatalf("status %d, answer %s, want {\"error\": \"...\"}", rec.Code, answer)
		}
	})
}
