package devca

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestAdminPing(t *testing.T) {
	e := newEnv(t, InitOptions{})
	status, body := e.adminDo(http.MethodGet, "/admin/api/ping", "", nil)
	if status != http.StatusOK || string(body) != "pong" {
		t.Fatalf("ping: %d %q", status, body)
	}
	if status, _ := e.adminDo(http.MethodPost, "/admin/api/ping", "", nil); status != http.StatusMethodNotAllowed {
		t.Fatalf("POST ping: %d, want 405", status)
	}
}

func TestAdminFlow(t *testing.T) {
	e := newEnv(t, InitOptions{})

	status, body := e.adminDo(http.MethodPost, "/admin/api/client/add", "",
		AddClientRequest{UID: "swc-1", Attributes: map[string]any{"site": "lab"}})
	if status != http.StatusOK || len(body) != 0 {
		t.Fatalf("client/add: %d %q, want 200 and no body", status, body)
	}

	status, body = e.adminDo(http.MethodPost, "/admin/api/secret/create", "",
		CreateSecretRequest{Target: "swc-1", AvailablePeriod: "1h"})
	if status != http.StatusCreated {
		t.Fatalf("secret/create: %d %s", status, body)
	}
	var created CreateSecretResponse
	if err := json.Unmarshal(body, &created); err != nil {
		t.Fatal(err)
	}
	if created.Target != "swc-1" || created.Type != SecretActivate || created.Secret == "" ||
		created.DeleteAt.Sub(e.clock.Now()) > time.Hour+time.Second {
		t.Fatalf("secret/create answered %+v", created)
	}
	// A secret for an ISSUABLE client is refused (the reference does the same).
	if status, body := e.adminDo(http.MethodPost, "/admin/api/secret/create", "", CreateSecretRequest{Target: "swc-1"}); status != http.StatusConflict {
		t.Fatalf("second secret/create: %d %s, want 409", status, body)
	}

	cert := e.mustEnroll("swc-1", created.Secret, request{})
	got := e.verify(cert)
	if got.status != http.StatusOK || got.body["attributes"].(map[string]any)["site"] != "lab" {
		t.Fatalf("verify: %d %v", got.status, got.body)
	}

	// Update secret with a caller-chosen secret and a pending period.
	status, body = e.adminDo(http.MethodPost, "/admin/api/secret/create", "",
		CreateSecretRequest{Target: "swc-1", Secret: "hoge", AvailablePeriod: "24h", PendingPeriod: "30m"})
	if status != http.StatusCreated {
		t.Fatalf("update secret/create: %d %s", status, body)
	}
	if err := json.Unmarshal(body, &created); err != nil {
		t.Fatal(err)
	}
	if created.Type != SecretUpdate || created.Secret != "hoge" || created.PendingPeriod != "30m0s" {
		t.Fatalf("update secret answered %+v", created)
	}
	e.wantVerifyOK(cert, "swc-1", StatusUpdatable)

	status, body = e.adminDo(http.MethodPost, "/admin/api/client/revoke", "", RevokeClientRequest{UID: "swc-1"})
	if status != http.StatusOK || len(body) != 0 {
		t.Fatalf("client/revoke: %d %q", status, body)
	}
	e.wantVerifyErr(e.verify(cert), http.StatusUnauthorized, MsgRevoked)
	e.mustFail("swc-1", "hoge", request{}, "no valid secret") // revoke deleted the secret

	// Reactivation after a revoke: a fresh activation secret works.
	status, body = e.adminDo(http.MethodPost, "/admin/api/secret/create", "", CreateSecretRequest{Target: "swc-1"})
	if status != http.StatusCreated {
		t.Fatalf("reactivation secret: %d %s", status, body)
	}
	if err := json.Unmarshal(body, &created); err != nil {
		t.Fatal(err)
	}
	if created.Type != SecretActivate {
		t.Fatalf("reactivation secret type %q", created.Type)
	}
	e.mustEnroll("swc-1", created.Secret, request{key: clientKey2()})
	e.assertSecretsNotLogged(created.Secret, "hoge")
}

func TestAdminErrors(t *testing.T) {
	e := newEnv(t, InitOptions{})
	e.register("swc-1")

	for _, tc := range []struct {
		name, method, path string
		body               any
		status             int
		message            string
	}{
		{"bad json", http.MethodPost, "/admin/api/client/add", "{", http.StatusBadRequest, ""},
		{"no uid", http.MethodPost, "/admin/api/client/add", AddClientRequest{}, http.StatusBadRequest, "UID is required"},
		{"backslash uid", http.MethodPost, "/admin/api/client/add", AddClientRequest{UID: `a\b`}, http.StatusBadRequest, "UID contains backslash"},
		{"duplicate", http.MethodPost, "/admin/api/client/add", AddClientRequest{UID: "swc-1"}, http.StatusConflict, "Client already exists"},
		{"secret unknown target", http.MethodPost, "/admin/api/secret/create", CreateSecretRequest{Target: "nobody"}, http.StatusNotFound, "Target not found"},
		{"secret backslash target", http.MethodPost, "/admin/api/secret/create", CreateSecretRequest{Target: `a\b`}, http.StatusBadRequest, "Target contains backslash"},
		{"secret with backslash", http.MethodPost, "/admin/api/secret/create", CreateSecretRequest{Target: "swc-1", Secret: `x\y`}, http.StatusBadRequest, ""},
		{"bad period", http.MethodPost, "/admin/api/secret/create", CreateSecretRequest{Target: "swc-1", AvailablePeriod: "soon"}, http.StatusBadRequest, ""},
		{"revoke unknown", http.MethodPost, "/admin/api/client/revoke", RevokeClientRequest{UID: "nobody"}, http.StatusNotFound, "Client not found"},
		{"wrong method", http.MethodGet, "/admin/api/client/add", nil, http.StatusMethodNotAllowed, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := e.adminDo(tc.method, tc.path, "", tc.body)
			if status != tc.status {
				t.Fatalf("%d %s, want %d", status, body, tc.status)
			}
			if tc.message == "" {
				return
			}
			var er ErrorResponse
			if err := json.Unmarshal(body, &er); err != nil || er.Message != tc.message {
				t.Fatalf("body %s, want message %q", body, tc.message)
			}
		})
	}

	// Revoking an INACTIVE client is an error, as in the reference.
	if err := e.ca.AddClient("swc-2", nil); err != nil {
		t.Fatal(err)
	}
	status, body := e.adminDo(http.MethodPost, "/admin/api/client/revoke", "", RevokeClientRequest{UID: "swc-2"})
	if status != http.StatusBadRequest || !strings.Contains(string(body), "already in INACTIVE") {
		t.Fatalf("revoke INACTIVE: %d %s", status, body)
	}
}

func TestAdminToken(t *testing.T) {
	e := newEnv(t, InitOptions{})
	srv := httptest.NewServer(WithAdminToken("s3cret-token", e.ca.AdminHandler()))
	e.admin.Close()
	e.admin = srv

	for _, token := range []string{"", "wrong", "s3cret-tokenX"} {
		status, _ := e.adminDo(http.MethodGet, "/admin/api/ping", token, nil)
		if status != http.StatusUnauthorized {
			t.Fatalf("token %q: %d, want 401", token, status)
		}
	}
	if status, _ := e.adminDo(http.MethodGet, "/admin/api/ping", "s3cret-token", nil); status != http.StatusOK {
		t.Fatalf("right token: %d", status)
	}
	if status, _ := e.adminDo(http.MethodPost, "/admin/api/client/add", "s3cret-token", AddClientRequest{UID: "a"}); status != http.StatusOK {
		t.Fatalf("client/add with token: %d", status)
	}
}

func TestAdminAfterClose(t *testing.T) {
	e := newEnv(t, InitOptions{})
	if err := e.ca.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.ca.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	status, _ := e.adminDo(http.MethodPost, "/admin/api/client/add", "", AddClientRequest{UID: "x"})
	if status != http.StatusServiceUnavailable {
		t.Fatalf("client/add after Close: %d, want 503", status)
	}
	if status, _, _ := e.get("/scep?operation=GetCACaps"); status != http.StatusServiceUnavailable {
		t.Fatalf("GetCACaps after Close: %d, want 503", status)
	}
}
