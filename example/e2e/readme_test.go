package e2e

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/example/internal/readme"
	"github.com/socket-warp/socket-warp/listener"
	"github.com/socket-warp/socket-warp/shared/pki"
	"github.com/socket-warp/socket-warp/shared/testutil"
)

// TestREADMEAPIErrors makes the listener give the errors of the README's
// API error table (<!-- check: api-errors -->) and compares each row's
// status and example with the answer. The examples use port 9000 and the
// default SWL_OPEN_ADDRS, 0.0.0.0; here the ports are free ones and the
// opened ports listen on 127.0.0.1 only, so both are written back as the
// README has them before comparing. Rows that need what a test cannot
// arrange (a privileged port refused, 1000 ports, a broken state file)
// are listed in the log, unchecked.
func TestREADMEAPIErrors(t *testing.T) {
	table, err := readme.Find("api-errors")
	if err != nil {
		t.Fatal(err)
	}
	const token = "readme-test-token"
	e := newEnv(t)
	cfg := e.listenerConfig()
	cfg.APIToken = listener.Secret(token)
	rl := e.startListener(cfg)
	e.startConnector(e.connectorConfig("swc-1", rl.quicPort()))
	// A listener whose opened ports bind to an address this host does not
	// have (TEST-NET-1).
	noAddr := e.listenerConfig()
	noAddr.OpenAddrs = "192.0.2.1"
	rlNoAddr := e.startListener(noAddr)
	e.startConnector(e.connectorConfig("swc-1", rlNoAddr.quicPort()))
	testutil.Eventually(t, "connectors bound", func() bool { return rl.Connected("swc-1") && rlNoAddr.Connected("swc-1") })

	type answer struct {
		status int
		text   string
	}
	var ports []int // written back as 9000
	port := func() int {
		p := testutil.FreePort(t)
		ports = append(ports, p)
		return p
	}
	request := func(api, method, path, body string, header ...string) answer {
		t.Helper()
		req, err := http.NewRequest(method, api+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		for i := 0; i+1 < len(header); i += 2 {
			if header[i] == "Host" {
				req.Host = header[i+1]
				continue
			}
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusOK {
			return answer{resp.StatusCode, string(b)}
		}
		text := apiResult{resp.StatusCode, string(b)}.errorText(t)
		for _, p := range ports {
			text = strings.ReplaceAll(text, strconv.Itoa(p), "9000")
		}
		return answer{resp.StatusCode, strings.ReplaceAll(text, "tcp 127.0.0.1:", "tcp 0.0.0.0:")}
	}
	open := func(uid string, port int, addr string) string {
		return fmt.Sprintf(`{"uid":%q,"port":%d,"connect_address":%q,"connect_port":22}`, uid, port, addr)
	}
	api := rl.api

	opened := port()
	if a := request(api, "POST", "/open", open("swc-1", opened, "127.0.0.1")); a.status != http.StatusOK {
		t.Fatalf("open: %+v", a)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0") // another program's port
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	ports = append(ports, busy.Addr().(*net.TCPAddr).Port)

	// Each case names its row by a part of the "when" column.
	cases := map[string]func() answer{
		"malformed JSON": func() answer {
			return request(api, "POST", "/open", `{"uid":"swc-1","connect_address":"10.0.0.20"}`)
		},
		"`port` or `connect_port` outside": func() answer { return request(api, "POST", "/open", open("swc-1", 70000, "10.0.0.20")) },
		"a `connect_address` no connector could dial": func() answer {
			return request(api, "POST", "/open", open("swc-1", port(), "127.0.0.1:80"))
		},
		"a `uid` no connector can have": func() answer { return request(api, "POST", "/open", open("   ", port(), "10.0.0.20")) },
		"a key spelt otherwise":         func() answer { return request(api, "POST", "/open", `{"UID":"swc-1"}`) },
		"`proxy_protocol` other than": func() answer {
			return request(api, "POST", "/open", strings.TrimSuffix(open("swc-1", port(), "10.0.0.20"), "}")+`,"proxy_protocol":"v3"}`)
		},
		"the bind address cannot be used":    func() answer { return request(rlNoAddr.api, "POST", "/open", open("swc-1", port(), "10.0.0.20")) },
		"no or wrong bearer token":           func() answer { return request(api, "GET", "/list", "", "Authorization", "Bearer wrong") },
		"a `Host` not allowed":               func() answer { return request(api, "GET", "/list", "", "Host", "evil.example") },
		"for a UID that is not connected":    func() answer { return request(api, "POST", "/open", open("swc-9", port(), "10.0.0.20")) },
		"for a port that is not open":        func() answer { return request(api, "DELETE", "/close", fmt.Sprintf(`{"port":%d}`, port())) },
		"a known path with the wrong method": func() answer { return request(api, "GET", "/open", "") },
		"already open through the API":       func() answer { return request(api, "POST", "/open", open("swc-1", opened, "10.0.0.20")) },
		"another program holds": func() answer {
			return request(api, "POST", "/open", open("swc-1", busy.Addr().(*net.TCPAddr).Port, "10.0.0.20"))
		},
		"a body over 64 KiB": func() answer { return request(api, "POST", "/open", `{"uid":"`+strings.Repeat("x", 70<<10)+`"}`) },
		"without `Content-Type: application/json`": func() answer {
			return request(api, "POST", "/open", "uid=swc-1", "Content-Type", "application/x-www-form-urlencoded")
		},
	}
	used := map[string]bool{}
	for _, row := range table.Rows() {
		if len(row) != 3 {
			t.Fatalf("README.md:%d: API error row %q has %d cells, want 3", table.Line, row, len(row))
		}
		status, when, example := row[0], row[1], row[2]
		var key string
		for k := range cases {
			if strings.Contains(when, k) {
				if key != "" {
					t.Fatalf("row %q matches the cases %q and %q", when, key, k)
				}
				key = k
			}
		}
		if key == "" {
			t.Logf("unchecked row: %s %s", status, when)
			continue
		}
		used[key] = true
		got := cases[key]()
		if strconv.Itoa(got.status) != status || got.text != example {
			t.Errorf("README.md API errors, row %q:\n  README: %s %s\n  answer: %d %s", when, status, example, got.status, got.text)
		}
	}
	for k := range cases {
		if !used[k] {
			t.Errorf("no row of the README's API error table says %q", k)
		}
	}
}

// TestProcubeCARecipe runs the README's openssl lines for a listener
// certificate signed by a procube-open/scep CA (<!-- check:
// procube-ca-recipe -->) against a CA kept as that server keeps it:
// ca-certs/ca.crt, and ca-certs/ca.key, an RSA key in a PEM encrypted with
// 3DES under an empty password (as its `scepserver ca -init` writes it by
// default). The certificate made must serve a listener that a connector
// with a certificate from the same CA connects to.
func TestProcubeCARecipe(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatalf("openssl is not on PATH (%v): install openssl (e.g. apt-get install openssl) to run this test; CI installs it", err)
	}
	recipe, err := readme.Find("procube-ca-recipe")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, d := range []string{"ca-certs", "example"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf, err := os.ReadFile(filepath.Join("..", "server_csr.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "example", "server_csr.conf"), conf, 0o644); err != nil {
		t.Fatal(err)
	}
	ca := procubeCA(t, filepath.Join(dir, "ca-certs"))

	script := strings.Join(recipe.Body, "\n")
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = dir
	cmd.Stdin = nil // openssl must not need to ask for the password
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("README.md:%d: the recipe failed: %v\n%s", recipe.Line, err, out)
	}

	e := &env{t: t, caPath: filepath.Join(dir, "ca-certs", "ca.crt"),
		serverCert: filepath.Join(dir, "server.crt"), serverKey: filepath.Join(dir, "server.key")}
	rl := e.startListener(e.listenerConfig())
	const uid = "swc-procube"
	client, err := ca.Issue(pki.LeafOptions{CommonName: uid, Usage: pki.Client})
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath, err := client.WriteFiles(t.TempDir(), "client")
	if err != nil {
		t.Fatal(err)
	}
	c := opensslConnectorConfig(dir, rl.quicPort())
	c.ClientCertPath, c.ClientKeyPath, c.CACertPath = certPath, keyPath, e.caPath
	e.startConnector(c)
	testutil.Eventually(t, "connector bound to the listener with the recipe's certificate", func() bool { return rl.Connected(uid) })
}

// procubeCA writes a CA into dir as procube-open/scep's `ca -init` does:
// ca.crt, and ca.key encrypted with an empty password; both 0400.
func procubeCA(t *testing.T, dir string) *pki.CA {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "Procube SCEP CA", Organization: []string{"Procube"}, Country: []string{"JP"}},
		NotBefore:    time.Now().Add(-10 * time.Minute), NotAfter: time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1019 the legacy PEM encryption is the point: it is what the server writes and openssl must read
	block, err := x509.EncryptPEMBlock(rand.Reader, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key), []byte(""), x509.PEMCipher3DES)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"ca.crt": pki.CertPEM(cert), "ca.key": pem.EncodeToMemory(block)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o400); err != nil {
			t.Fatal(err)
		}
	}
	return &pki.CA{Cert: cert, Key: key}
}
