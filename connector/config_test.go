package connector

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/shared/testutil"
)

// clearEnv removes every SWC_ variable for the test, so that neither the
// environment the tests run in nor another test decides the outcome.
func clearEnv(t *testing.T) {
	t.Helper()
	names := []string{"SWC_SETTINGS"}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "SWC_") {
			names = append(names, k)
		}
	}
	for _, k := range names {
		t.Setenv(k, "") // restores the old value after the test
		os.Unsetenv(k)
	}
}

func writeSettings(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "settings.json")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const settingsJSON = `{
	"client_cert_path": "/etc/sw/client.crt",
	"client_key_path": "/etc/sw/client.key",
	"ca_cert_path": "/etc/sw/ca.crt",
	"server_name": "listener.example",
	"service_port": 12443,
	"keep_alive": "15s",
	"idle_timeout": "45s",
	"drain_timeout": "5s"
}`

func TestLoadConfigFileThenEnv(t *testing.T) {
	clearEnv(t)
	t.Setenv("SWC_SETTINGS", writeSettings(t, t.TempDir(), settingsJSON))
	t.Setenv("SWC_SERVER_NAME", "other.example")
	t.Setenv("SWC_IDLE_TIMEOUT", "90s")
	t.Setenv("SWC_RETRY_MAX", "1m")
	t.Setenv("SWC_DRAIN_TIMEOUT", "0s")
	t.Setenv("SWC_HANDOVER_TIMEOUT", "1h")
	t.Setenv("SWC_METRICS_ADDR", "127.0.0.1:9091")

	c, err := LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := Defaults()
	want.ClientCertPath, want.ClientKeyPath, want.CACertPath = "/etc/sw/client.crt", "/etc/sw/client.key", "/etc/sw/ca.crt"
	want.ServerName = "other.example" // the environment wins over the file
	want.ServicePort = 12443
	want.KeepAlive = Duration(15 * time.Second)
	want.IdleTimeout = Duration(90 * time.Second)
	want.RetryMax = Duration(time.Minute)
	want.DrainTimeout = 0 // set, not defaulted: tunnels are cut at once
	want.HandoverTimeout = Duration(time.Hour)
	want.MetricsAddr = "127.0.0.1:9091"
	if c != want {
		t.Fatalf("LoadConfig:\n got %+v\nwant %+v", c, want)
	}
}

func TestLoadConfigDefaultFileInWorkingDir(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	writeSettings(t, dir, settingsJSON)
	t.Chdir(dir)
	c, err := LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if c.ServerName != "listener.example" || c.ServicePort != 12443 {
		t.Fatalf("./settings.json not read: %+v", c)
	}
}

func TestLoadConfigEnvOnlyWithoutDefaultFile(t *testing.T) {
	clearEnv(t)
	t.Chdir(t.TempDir()) // no ./settings.json here
	t.Setenv("SWC_CLIENT_CERT_PATH", "c.crt")
	t.Setenv("SWC_CLIENT_KEY_PATH", "c.key")
	t.Setenv("SWC_CA_CERT_PATH", "ca.crt")
	t.Setenv("SWC_SERVER_NAME", "listener.example")
	t.Setenv("SWC_KEEPALIVE", "20s")
	t.Setenv("SWC_HEADER_TIMEOUT", "3s")

	c, err := LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := Defaults()
	want.ClientCertPath, want.ClientKeyPath, want.CACertPath, want.ServerName = "c.crt", "c.key", "ca.crt", "listener.example"
	want.KeepAlive, want.HeaderTimeout = Duration(20*time.Second), Duration(3*time.Second)
	if c != want {
		t.Fatalf("LoadConfig:\n got %+v\nwant %+v", c, want)
	}
	d := Defaults()
	if d.ServicePort != 11443 || d.KeepAlive != Duration(3*time.Second) || d.IdleTimeout != Duration(60*time.Second) ||
		d.DialTimeout != Duration(10*time.Second) || d.HeaderTimeout != Duration(10*time.Second) ||
		d.RetryMin != Duration(time.Second) || d.RetryMax != Duration(30*time.Second) ||
		d.DrainTimeout != Duration(10*time.Second) ||
		d.LogLevel != "info" || d.LogFormat != "console" {
		t.Fatalf("Defaults() = %+v", d)
	}
}

func TestLoadConfigFileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"unknown key", `{"server_name": "x", "server_nme": "y"}`, []string{"server_nme"}},
		{"syntax error", "{\n\t\"server_name\": \"x\",\n\t\"service_port\": 1,,\n}", []string{"line 3"}},
		{"wrong type", `{"service_port": "11443"}`, []string{`"service_port"`, "string"}},
		{"duration as a number", `{"keep_alive": 20}`, []string{`"keep_alive"`, "20s"}},
		{"unparsable duration", `{"retry_max": "20 seconds"}`, []string{`"retry_max"`, "20 seconds"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			path := writeSettings(t, t.TempDir(), tc.body)
			t.Setenv("SWC_SETTINGS", path)
			_, err := LoadConfig()
			testutil.WantErr(t, err, append([]string{path}, tc.want...)...)
		})
	}
}

func TestLoadConfigNamedFileMissing(t *testing.T) {
	clearEnv(t)
	path := filepath.Join(t.TempDir(), "nope.json")
	t.Setenv("SWC_SETTINGS", path)
	_, err := LoadConfig()
	testutil.WantErr(t, err, path, "no such file")
}

func TestLoadConfigEnvErrors(t *testing.T) {
	clearEnv(t)
	t.Chdir(t.TempDir())
	t.Setenv("SWC_IDLE_TIMEOUT", "soon")
	_, err := LoadConfig()
	testutil.WantErr(t, err, "SWC_IDLE_TIMEOUT", "soon")
}

func TestLoadConfigValidates(t *testing.T) {
	clearEnv(t)
	t.Setenv("SWC_SETTINGS", writeSettings(t, t.TempDir(), settingsJSON))
	t.Setenv("SWC_KEEPALIVE", "1m")
	_, err := LoadConfig()
	testutil.WantErr(t, err, "keep_alive 1m0s must be shorter than idle_timeout 45s")
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := Config{ServicePort: 70000, KeepAlive: Duration(time.Minute), IdleTimeout: Duration(time.Minute),
		DialTimeout: -1, RetryMin: Duration(time.Minute), RetryMax: Duration(time.Second), DrainTimeout: -1,
		HandoverTimeout: -1, MetricsAddr: "9091", PprofAddr: "192.0.2.1:6060"}
	testutil.WantErr(t, c.Validate(),
		`metrics_addr (SWC_METRICS_ADDR) "9091" is not host:port`,
		`pprof_addr (SWC_PPROF_ADDR) "192.0.2.1:6060" is not a loopback address`,
		"client_cert_path (SWC_CLIENT_CERT_PATH) is not set",
		"client_key_path (SWC_CLIENT_KEY_PATH) is not set",
		"ca_cert_path (SWC_CA_CERT_PATH) is not set",
		"server_name (SWC_SERVER_NAME) is not set",
		"service_port (SWC_SERVICE_PORT) 70000 is outside 1-65535",
		"dial_timeout (SWC_DIAL_TIMEOUT) must be positive",
		"header_timeout (SWC_HEADER_TIMEOUT) must be positive",
		"keep_alive 1m0s must be shorter than idle_timeout 1m0s",
		"retry_min 1m0s is larger than retry_max 1s",
		"renew_at (SWC_RENEW_AT) 0 must be a fraction",
		"drain_timeout (SWC_DRAIN_TIMEOUT) must not be negative",
		"handover_timeout (SWC_HANDOVER_TIMEOUT) must not be negative",
	)
	c = Defaults()
	c.ClientCertPath, c.ClientKeyPath, c.CACertPath, c.ServerName = "a", "b", "c", "d"
	c.SCEPURL, c.EnrollSecret, c.RenewSecret, c.RenewAt = "ca.example:3000", `se\cret`, `x\y`, 1
	testutil.WantErr(t, c.Validate(),
		`scep_url (SWC_SCEP_URL) "ca.example:3000" is not an http(s) URL`,
		"enroll_secret (SWC_ENROLL_SECRET) needs scep_url (SWC_SCEP_URL) and uid (SWC_UID)",
		"enroll_secret (SWC_ENROLL_SECRET) must not contain a backslash",
		"renew_secret (SWC_RENEW_SECRET) must not contain a backslash",
		"renew_at (SWC_RENEW_AT) 1 must be a fraction",
	)
	c.SCEPURL = ""
	testutil.WantErr(t, c.Validate(), "renew_secret (SWC_RENEW_SECRET) needs scep_url (SWC_SCEP_URL)")
	c.RenewSecretFile = "/run/secrets/update"
	testutil.WantErr(t, c.Validate(),
		"renew_secret_file (SWC_RENEW_SECRET_FILE) needs scep_url (SWC_SCEP_URL)",
		"renew_secret (SWC_RENEW_SECRET) and renew_secret_file (SWC_RENEW_SECRET_FILE) are both set: choose one")
	ok := Defaults()
	ok.ClientCertPath, ok.ClientKeyPath, ok.CACertPath, ok.ServerName = "a", "b", "c", "d"
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults with the four required settings: %v", err)
	}
}

func TestNewNamesBrokenFiles(t *testing.T) {
	p := testutil.NewPKI(t)
	cert, key := p.ClientCert(t, "swc-1")
	otherCert, _ := p.ClientCert(t, "swc-2")
	dir := t.TempDir()
	noCert, noKey, noCA := filepath.Join(dir, "no.crt"), filepath.Join(dir, "no.key"), filepath.Join(dir, "no-ca.crt")
	for _, tc := range []struct {
		name          string
		cert, key, ca string
		want          []string
	}{
		{"missing certificate", noCert, key, p.CAPath, []string{"certificate " + noCert, "no such file"}},
		{"missing key", cert, noKey, p.CAPath, []string{"private key " + noKey, "no such file"}},
		{"missing CA", cert, key, noCA, []string{"CA certificate " + noCA, "no such file"}},
		{"CA is not a certificate", cert, key, key, []string{"CA certificate " + key, "no PEM certificate"}},
		{"key does not match", otherCert, key, p.CAPath, []string{otherCert, key, "does not match"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Defaults()
			cfg.ClientCertPath, cfg.ClientKeyPath, cfg.CACertPath, cfg.ServerName = tc.cert, tc.key, tc.ca, "localhost"
			c, err := New(cfg, zap.NewNop())
			if c != nil {
				t.Fatal("New returned a connector along with an error")
			}
			testutil.WantErr(t, err, tc.want...)
		})
	}
	cfg := Defaults()
	cfg.ClientCertPath, cfg.ClientKeyPath, cfg.CACertPath = cert, key, p.CAPath
	if _, err := New(cfg, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "server_name") {
		t.Fatalf("New with an invalid config: %v, want the validation error", err)
	}
}

// settingsWithAllow is a valid settings file with an "allow" key, or none.
func settingsWithAllow(allow string) string {
	if allow == "" {
		return settingsJSON
	}
	return strings.TrimSuffix(settingsJSON, "\n}") + ",\n\t\"allow\": " + allow + "\n}"
}

func TestLoadConfigAllow(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		env        *string
		want       AllowList
		policy     string
	}{
		{"unset", "", nil, AllowList{}, ""},
		{"null", `null`, nil, AllowList{}, ""},
		{"string", `"10.0.0.0/24:22, db.internal:5432"`, nil,
			AllowList{Set: true, Value: "10.0.0.0/24:22, db.internal:5432"}, "10.0.0.0/24:22,db.internal:5432"},
		{"array", `["10.0.0.0/24:22", "[2001:db8::/64]:443", "127.0.0.1:8000-8100"]`, nil,
			AllowList{Set: true, Value: "10.0.0.0/24:22,[2001:db8::/64]:443,127.0.0.1:8000-8100"},
			"10.0.0.0/24:22,[2001:db8::/64]:443,127.0.0.1:8000-8100"},
		{"none", `"none"`, nil, AllowList{Set: true, Value: "none"}, "none"},
		{"environment wins", `["db.internal:5432"]`, ptr("*.corp.internal:443"),
			AllowList{Set: true, Value: "*.corp.internal:443"}, "*.corp.internal:443"},
		{"environment only", "", ptr("none"), AllowList{Set: true, Value: "none"}, "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			t.Setenv("SWC_SETTINGS", writeSettings(t, t.TempDir(), settingsWithAllow(tc.file)))
			if tc.env != nil {
				t.Setenv("SWC_ALLOW", *tc.env)
			}
			c, err := LoadConfig()
			if err != nil {
				t.Fatal(err)
			}
			if c.Allow != tc.want {
				t.Fatalf("Allow = %+v, want %+v", c.Allow, tc.want)
			}
			p, err := c.Allow.Policy()
			if err != nil || (p == nil) != (tc.policy == "") || p != nil && p.String() != tc.policy {
				t.Fatalf("Policy() = %v, %v; want %q", p, err, tc.policy)
			}
		})
	}
}

func ptr(s string) *string { return &s }

func TestLoadConfigAllowErrors(t *testing.T) {
	const empty = `allow (SWC_ALLOW) is set but empty: list the allowed targets, write "none" to refuse every target, or unset it to allow every target`
	for _, tc := range []struct {
		name, file string
		env        *string
		want       []string
	}{
		{"empty environment variable", "", ptr(""), []string{empty}},
		{"blank environment variable", "", ptr("  "), []string{empty}},
		{"empty string", `""`, nil, []string{empty}},
		{"empty array", `[]`, nil, []string{empty}},
		{"a number", `22`, nil, []string{`key "allow" must be a string such as "10.0.0.0/24:22,db.internal:5432" or an array of such targets, not 22`}},
		{"an array of numbers", `[22]`, nil, []string{`key "allow" must be a string`}},
		{"comma in an array element", `["a:1", "b:2,c:3"]`, nil, []string{`key "allow": element 2 "b:2,c:3" holds a comma`}},
		{"malformed entries, every one by position", `["db.internal:5432", "db.internal:99999", "x", "10.0.0.1/24:22"]`, nil, []string{
			`allow (SWC_ALLOW) entry 2 "db.internal:99999": port 99999 is outside 1-65535`,
			`allow (SWC_ALLOW) entry 3 "x": missing ":port"`,
			`allow (SWC_ALLOW) entry 4 "10.0.0.1/24:22": 10.0.0.1/24 has host bits set`,
		}},
		{"malformed environment variable", "", ptr("10.0.0.0/24:22,db.internal:99999"), []string{
			`allow (SWC_ALLOW) entry 2 "db.internal:99999": port 99999 is outside 1-65535`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			path := writeSettings(t, t.TempDir(), settingsWithAllow(tc.file))
			t.Setenv("SWC_SETTINGS", path)
			if tc.env != nil {
				t.Setenv("SWC_ALLOW", *tc.env)
			}
			_, err := LoadConfig()
			testutil.WantErr(t, err, tc.want...)
		})
	}
}

func TestValidateReportsEveryAllowEntry(t *testing.T) {
	c := Defaults()
	c.ClientCertPath, c.ClientKeyPath, c.CACertPath, c.ServerName = "a", "b", "c", "d"
	c.Allow = AllowList{Set: true, Value: "db.internal:0,10.0.0.0/24:22,,2001:db8::1:443"}
	err := c.Validate()
	testutil.WantErr(t, err,
		`allow (SWC_ALLOW) entry 1 "db.internal:0": port 0 is outside 1-65535`,
		`allow (SWC_ALLOW) entry 3 "": empty entry`,
		`allow (SWC_ALLOW) entry 4 "2001:db8::1:443": an IPv6 address goes in brackets`,
	)
	if strings.Contains(err.Error(), "entry 2") {
		t.Errorf("%v names the valid entry 2", err)
	}
}
