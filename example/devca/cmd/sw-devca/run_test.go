package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smallstep/scep"
	"github.com/smallstep/scep/x509util"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer is a bytes.Buffer safe for the serve goroutine and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type harness struct {
	t      *testing.T
	vars   map[string]string
	logger *zap.Logger
	logs   *observer.ObservedLogs
	stderr *syncBuffer
}

func newHarness(t *testing.T) *harness {
	core, logs := observer.New(zap.DebugLevel)
	return &harness{t: t, vars: map[string]string{}, logger: zap.New(core), logs: logs, stderr: &syncBuffer{}}
}

func (h *harness) env(stdout io.Writer) *cliEnv {
	return &cliEnv{
		stdout: stdout,
		stderr: h.stderr,
		getenv: func(k string) string { return h.vars[k] },
		logger: h.logger,
	}
}

// run runs one command to completion and returns its exit code and stdout.
func (h *harness) run(args ...string) (int, string) {
	h.t.Helper()
	var out bytes.Buffer
	code := run(context.Background(), args, h.env(&out))
	return code, out.String()
}

// serve starts "sw-devca serve" and returns its addresses; it stops at cleanup.
func (h *harness) serve(args ...string) (public, admin net.Addr) {
	h.t.Helper()
	type addrs struct{ pub, admin net.Addr }
	ready := make(chan addrs, 1)
	env := h.env(io.Discard)
	env.onListen = func(p, a net.Addr) { ready <- addrs{p, a} }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, append([]string{"serve"}, args...), env) }()
	h.t.Cleanup(func() {
		cancel() // as SIGINT or SIGTERM would
		if code := <-done; code != 0 {
			h.t.Errorf("serve exited with %d: %s", code, h.stderr.String())
		}
	})
	select {
	case a := <-ready:
		return a.pub, a.admin
	case code := <-done:
		h.t.Fatalf("serve exited early with %d: %s", code, h.stderr.String())
	}
	return nil, nil
}

func (h *harness) assertNotLogged(words ...string) {
	h.t.Helper()
	for _, entry := range h.logs.All() {
		line := entry.Message + " " + fmt.Sprint(entry.ContextMap())
		for _, w := range words {
			if strings.Contains(line, w) {
				h.t.Errorf("%q appears in the log line %q", w, line)
			}
		}
	}
	for _, w := range words {
		if strings.Contains(h.stderr.String(), w) {
			h.t.Errorf("%q appears on stderr", w)
		}
	}
}

func TestInitServeAndAdminCommands(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "state", "devca.json")
	out := filepath.Join(dir, "listener")

	if code, _ := h.run("init", "--state", state, "--out", out, "--ca-key-bits", "2048",
		"--dns-name", "localhost", "--ip", "127.0.0.1"); code != 0 {
		t.Fatalf("init exited with %d: %s", code, h.stderr.String())
	}
	for name, mode := range map[string]os.FileMode{"ca.crt": 0o644, "server.crt": 0o644, "server.key": 0o600} {
		fi, err := os.Stat(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		if runtime.GOOS != "windows" && fi.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	if code, _ := h.run("init", "--state", state, "--out", t.TempDir(), "--ca-key-bits", "2048"); code != 1 {
		t.Fatalf("second init exited with %d, want 1", code)
	}

	const token = "admin-token-for-test"
	h.vars[envAdminToken] = token
	pub, admin := h.serve("--state", state, "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--tls")
	h.vars[envAdminURL] = "http://" + admin.String()

	if code, _ := h.run("client", "add", "swc-1", "--attr", "site=lab"); code != 0 {
		t.Fatalf("client add exited with %d: %s", code, h.stderr.String())
	}
	if code, _ := h.run("client", "add", "swc-2", "--admin-token", "wrong"); code != 1 {
		t.Fatalf("client add with a wrong token exited with %d, want 1", code)
	}
	code, secret := h.run("secret", "create", "swc-1")
	if code != 0 {
		t.Fatalf("secret create exited with %d: %s", code, h.stderr.String())
	}
	if !regexp.MustCompile(`^[a-z2-7]{32}\n$`).MatchString(secret) {
		t.Fatalf("secret create printed %q, want only the secret", secret)
	}
	secret = strings.TrimSpace(secret)

	c := newSCEPClient(t, pub, filepath.Join(out, "ca.crt"))
	cert := c.enroll("swc-1", secret)
	if cert.Subject.CommonName != "swc-1" {
		t.Fatalf("enrolled CN %q", cert.Subject.CommonName)
	}
	if status, body := c.verify(cert); status != http.StatusOK || body["status"] != "ISSUED" {
		t.Fatalf("verify: %d %v", status, body)
	}

	if code, _ := h.run("revoke", "swc-1"); code != 0 {
		t.Fatalf("revoke exited with %d: %s", code, h.stderr.String())
	}
	if status, body := c.verify(cert); status != http.StatusUnauthorized || body["message"] != "Certificate is revoked" {
		t.Fatalf("verify after revoke: %d %v", status, body)
	}
	if code, _ := h.run("revoke", "nobody"); code != 1 || !strings.Contains(h.stderr.String(), "Client not found") {
		t.Fatalf("revoke of an unknown uid exited with %d: %s", code, h.stderr.String())
	}
	h.assertNotLogged(secret, token)
}

func TestUsage(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		args []string
		code int
	}{
		{nil, 2},
		{[]string{"frobnicate"}, 2},
		{[]string{"help"}, 0},
		{[]string{"client"}, 2},
		{[]string{"client", "add"}, 2},
		{[]string{"secret", "create"}, 2},
		{[]string{"secret", "create", `a\b`}, 2},
		{[]string{"revoke", "a", "b"}, 2},
		{[]string{"init"}, 2},
		{[]string{"init", "--ip", "not-an-ip", "--state", filepath.Join(t.TempDir(), "s.json")}, 2},
		{[]string{"serve"}, 2},
		{[]string{"serve", "--state", filepath.Join(t.TempDir(), "missing.json")}, 1},
		{[]string{"serve", "--nope"}, 2},
	} {
		if code, _ := h.run(tc.args...); code != tc.code {
			t.Errorf("sw-devca %q exited with %d, want %d", tc.args, code, tc.code)
		}
	}
}

func TestAdminUnreachable(t *testing.T) {
	h := newHarness(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	code, _ := h.run("client", "add", "swc-1", "--admin-url", "http://"+addr)
	if code != 1 || !strings.Contains(h.stderr.String(), "is sw-devca serve running?") {
		t.Fatalf("exit %d, stderr %s", code, h.stderr.String())
	}
}

// ---- a minimal SCEP client over TLS ----

type scepClient struct {
	t      *testing.T
	base   string
	http   *http.Client
	caCert *x509.Certificate
}

func newSCEPClient(t *testing.T, pub net.Addr, caFile string) *scepClient {
	t.Helper()
	pemData, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemData)
	caCert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}
	t.Cleanup(tr.CloseIdleConnections)
	c := &scepClient{t: t, base: "https://" + pub.String(), http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}

	// GetCACert over the TLS connection must give the same CA.
	resp, err := c.http.Get(c.base + "/scep?operation=GetCACert")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	der, _ := io.ReadAll(resp.Body)
	if c.caCert, err = x509.ParseCertificate(der); err != nil || !c.caCert.Equal(caCert) {
		t.Fatalf("GetCACert: %v", err)
	}
	return c
}

func (c *scepClient) enroll(uid, secret string) *x509.Certificate {
	t := c.t
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	csrDER, err := x509util.CreateCertificateRequest(rand.Reader, &x509util.CertificateRequest{
		CertificateRequest: x509.CertificateRequest{Subject: pkix.Name{CommonName: uid}},
		ChallengePassword:  uid + `\` + secret,
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: uid},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	selfDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	self, _ := x509.ParseCertificate(selfDER)
	msg, err := scep.NewCSRRequest(csr, &scep.PKIMessage{MessageType: scep.PKCSReq,
		Recipients: []*x509.Certificate{c.caCert}, SignerCert: self, SignerKey: key})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.http.Post(c.base+"/scep?operation=PKIOperation", "application/x-pki-message", bytes.NewReader(msg.Raw))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	rep, err := scep.ParsePKIMessage(body, scep.WithCACerts([]*x509.Certificate{c.caCert}))
	if err != nil {
		t.Fatal(err)
	}
	if rep.PKIStatus != scep.SUCCESS {
		t.Fatalf("enroll: %s %s", rep.PKIStatus, rep.FailInfo)
	}
	if err := rep.DecryptPKIEnvelope(self, key); err != nil {
		t.Fatal(err)
	}
	return rep.CertRepMessage.Certificate
}

func (c *scepClient) verify(cert *x509.Certificate) (int, map[string]any) {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, c.base+"/api/cert/verify", nil)
	req.Header.Set("X-Mtls-Clientcert", url.QueryEscape(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))))
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		c.t.Fatal(err)
	}
	return resp.StatusCode, body
}
