package process

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/connector"
	"github.com/socket-warp/socket-warp/listener"
	"github.com/socket-warp/socket-warp/shared/pki"
	"github.com/socket-warp/socket-warp/shared/testutil"
)

// runCmd runs a binary to its end with exactly env (plus PATH) and returns
// its exit code, stdout and stderr.
func runCmd(t *testing.T, bin string, env []string, args ...string) (int, string, string) {
	t.Helper()
	return runCmdIn(t, "", bin, env, args...)
}

// runCmdIn is runCmd in the working directory dir ("": the test's).
func runCmdIn(t *testing.T, dir, bin string, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, bin), args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s %v did not exit; output:\n%s%s", bin, args, stdout.String(), stderr.String())
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// tags lists the values of one struct tag over the fields of v's type.
func tags(v any, tag string) []string {
	var out []string
	t := reflect.TypeOf(v)
	for i := range t.NumField() {
		if s, _, _ := strings.Cut(t.Field(i).Tag.Get(tag), ","); s != "" && s != "-" {
			out = append(out, s)
		}
	}
	return out
}

func TestVersion(t *testing.T) {
	for _, bin := range []string{"sw-listener", "sw-connector"} {
		code, out, errOut := runCmd(t, bin, nil, "--version")
		want := bin + " " + testVersion + " (" + runtime.Version()
		if code != 0 || !strings.HasPrefix(out, want) || strings.Count(out, "\n") != 1 || errOut != "" {
			t.Errorf("%s --version: exit %d, %q %q; want one line starting %q", bin, code, out, errOut, want)
		}
	}
}

// TestHelp: --help lists every setting of the configuration struct, found
// here by reflection so that a new field without help fails the test; the
// connector's also lists every settings.json key.
func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		bin  string
		want []string
	}{
		{"sw-listener", tags(listener.Config{}, "envconfig")},
		{"sw-connector", append(append(tags(connector.Config{}, "envconfig"), tags(connector.Config{}, "json")...), "SWC_SETTINGS")},
	} {
		for _, arg := range []string{"--help", "-h"} {
			code, out, _ := runCmd(t, tc.bin, nil, arg)
			if code != 0 || !strings.Contains(out, "usage: "+tc.bin) || !strings.Contains(out, "check-config") {
				t.Fatalf("%s %s: exit %d, output:\n%s", tc.bin, arg, code, out)
			}
			if len(tc.want) < 20 {
				t.Fatalf("%s: only %d settings found by reflection", tc.bin, len(tc.want))
			}
			for _, w := range tc.want {
				line := lineWith(out, " "+w+" ")
				// Every setting has its line and a description on it.
				if line == "" || len(strings.Fields(line)) < 4 {
					t.Errorf("%s %s: setting %s has no line with a description in:\n%s", tc.bin, arg, w, out)
				}
			}
		}
	}
	// Defaults come from the struct: spot-check one per daemon.
	if _, out, _ := runCmd(t, "sw-listener", nil, "--help"); !strings.Contains(lineWith(out, " SWL_PORT "), "11443") {
		t.Errorf("listener --help: SWL_PORT without its default 11443")
	}
	if _, out, _ := runCmd(t, "sw-connector", nil, "--help"); !strings.Contains(lineWith(out, " SWC_KEEPALIVE "), "3s") {
		t.Errorf("connector --help: SWC_KEEPALIVE without its default 3s")
	}
}

// TestHelpExitsZero: asking for help is never a usage error, wherever it is
// asked, sw-devca's subcommands included.
func TestHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{
		{"sw-listener", "check-config", "--help"},
		{"sw-listener", "--version", "--help"},
		{"sw-connector", "check-config", "-h"},
		{"sw-connector", "enroll", "--help"},
		{"sw-connector", "enroll", "-h"},
		{"sw-devca", "--help"},
		{"sw-devca", "init", "--help"},
		{"sw-devca", "bootstrap", "--help"},
		{"sw-devca", "serve", "--help"},
		{"sw-devca", "client", "--help"},
		{"sw-devca", "client", "add", "--help"},
		{"sw-devca", "secret", "--help"},
		{"sw-devca", "secret", "create", "--help"},
		{"sw-devca", "revoke", "--help"},
	} {
		code, out, errOut := runCmd(t, args[0], nil, args[1:]...)
		if code != 0 || !strings.Contains(strings.ToLower(out+errOut), "usage") {
			t.Errorf("%v: exit %d, want 0 and the usage; output:\n%s%s", args, code, out, errOut)
		}
	}
}

// TestUnparsableSettingIsOneLineNamingIt: every typed setting of both
// daemons (found by reflection), set to what it cannot be, is one problem
// naming the variable and what it must be — not the parser's internals.
func TestUnparsableSettingIsOneLineNamingIt(t *testing.T) {
	s := newSetup(t)
	n := 0
	for _, d := range []struct {
		bin  string
		spec any
		env  []string
	}{
		{"sw-listener", listener.Config{}, s.listenerEnv()},
		{"sw-connector", connector.Config{}, s.connectorEnv()},
	} {
		typ := reflect.TypeOf(d.spec)
		for i := range typ.NumField() {
			f := typ.Field(i)
			env, _, _ := strings.Cut(f.Tag.Get("envconfig"), ",")
			if env == "" || f.Type.Kind() == reflect.String || f.Type.Kind() == reflect.Struct {
				continue // anything parses as a string; Validate judges it
			}
			n++
			want := `problem: ` + env + `: "abc" is not `
			code, out, errOut := runCmd(t, d.bin, append(d.env, env+"=abc"), "check-config")
			if code != 1 || !strings.HasPrefix(out, want) || strings.Contains(out, "envconfig") || errOut != "" {
				t.Errorf("%s with %s=abc: exit %d, output:\n%s%s\nwant exit 1 and a first line %q…", d.bin, env, code, out, errOut, want)
			}
		}
	}
	if n < 15 {
		t.Fatalf("only %d typed settings found by reflection", n)
	}
}

// TestMissingSettingsFileSaidFirst: a connector with no settings file and
// not every setting in the environment says first that the file was not
// found, where it looked, and how to name another, before the settings it
// lacks.
func TestMissingSettingsFileSaidFirst(t *testing.T) {
	abs, err := filepath.Abs(connector.DefaultSettingsPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(abs); err == nil {
		t.Fatalf("%s exists", abs)
	}
	want := "settings file ./settings.json not found (looked for " + abs + "): set SWC_SETTINGS to its path"
	code, out, errOut := runCmd(t, "sw-connector", nil)
	if code != 2 || !strings.HasPrefix(errOut, "sw-connector: configuration: "+want) ||
		!strings.Contains(errOut, "client_cert_path (SWC_CLIENT_CERT_PATH) is not set") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("run: exit %d, output:\n%s%s\nwant exit 2 and one line starting %q", code, out, errOut, want)
	}
	code, out, errOut = runCmd(t, "sw-connector", nil, "check-config")
	if code != 1 || !strings.HasPrefix(out, "problem: "+want) {
		t.Errorf("check-config: exit %d, output:\n%s%s\nwant exit 1 and a first problem %q", code, out, errOut, want)
	}
}

func lineWith(text, s string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l+" ", s) {
			return l
		}
	}
	return ""
}

func TestUnknownArguments(t *testing.T) {
	for _, tc := range []struct {
		bin  string
		args []string
	}{
		{"sw-listener", []string{"--verbose"}},
		{"sw-listener", []string{"start"}},
		{"sw-listener", []string{"check-config", "extra"}},
		{"sw-connector", []string{"-x"}},
		{"sw-connector", []string{"check"}},
		{"sw-connector", []string{"check-config", "--now"}},
	} {
		code, out, errOut := runCmd(t, tc.bin, nil, tc.args...)
		if code != 2 || out != "" || !strings.Contains(errOut, "unknown arguments") || !strings.Contains(errOut, "usage: "+tc.bin) {
			t.Errorf("%s %v: exit %d, stdout %q, stderr %q; want 2 and a usage error", tc.bin, tc.args, code, out, errOut)
		}
	}
}

// TestCheckConfig runs check-config on good and bad configurations. It
// binds nothing: the listener's QUIC and API ports are held by this test
// meanwhile, and a good configuration still checks out.
func TestCheckConfig(t *testing.T) {
	s := newSetup(t)
	api, err := net.Listen("tcp", "127.0.0.1:"+itoa(s.apiPort))
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()
	quic, err := net.ListenPacket("udp", "127.0.0.1:"+itoa(s.quicPort))
	if err != nil {
		t.Fatal(err)
	}
	defer quic.Close()

	now := time.Now()
	expCert, expKey := s.pki.Issue(t, "expired", pki.LeafOptions{CommonName: "localhost", Usage: pki.Server,
		DNSNames: []string{"localhost"}, NotBefore: now.Add(-30 * time.Minute), NotAfter: now.Add(-10 * time.Minute)})
	expClient, expClientKey := s.pki.Issue(t, "expired-client", pki.LeafOptions{CommonName: "swc-proc", Usage: pki.Client,
		NotBefore: now.Add(-30 * time.Minute), NotAfter: now.Add(-10 * time.Minute)})
	soonCert, soonKey := s.pki.Issue(t, "soon", pki.LeafOptions{CommonName: "localhost", Usage: pki.Server,
		DNSNames: []string{"localhost"}, NotAfter: now.Add(5 * 24 * time.Hour)})
	foreign := testutil.NewPKI(t)
	foreignCert, foreignKey := foreign.ServerCert(t)
	foreignClient, foreignClientKey := foreign.ClientCert(t, "swc-proc")
	missing := filepath.Join(t.TempDir(), "missing.pem")
	enrollDir := t.TempDir()

	for _, tc := range []struct {
		name, bin string
		env       []string
		code      int
		want      []string
	}{
		{"listener good", "sw-listener", s.listenerEnv(), 0,
			[]string{"note: SWL_CERT_PATH: certificate " + s.serverCert + " is valid for localhost, 127.0.0.1", "sw-listener check-config: ok (0 warning(s))"}},
		{"listener expiring soon", "sw-listener", append(s.listenerEnv(), "SWL_CERT_PATH="+soonCert, "SWL_KEY_PATH="+soonKey), 0,
			[]string{"warning: SWL_CERT_PATH: certificate " + soonCert, "expires on", "in 5 days", "ok (1 warning(s))"}},
		{"listener expired", "sw-listener", append(s.listenerEnv(), "SWL_CERT_PATH="+expCert, "SWL_KEY_PATH="+expKey), 1,
			[]string{"problem: SWL_CERT_PATH: certificate " + expCert + " (CN=localhost): expired on", "1 problem(s)"}},
		{"listener key mismatch", "sw-listener", append(s.listenerEnv(), "SWL_KEY_PATH="+s.clientKey), 1,
			[]string{"problem: SWL_CERT_PATH, SWL_KEY_PATH:", s.clientKey, "private key does not match public key"}},
		{"listener foreign CA", "sw-listener", append(s.listenerEnv(), "SWL_CERT_PATH="+foreignCert, "SWL_KEY_PATH="+foreignKey), 1,
			[]string{"problem: SWL_CERT_PATH:", "does not chain to the CA in SWL_CA_PATH (" + s.pki.CAPath + ")"}},
		{"listener client certificate", "sw-listener", append(s.listenerEnv(), "SWL_CERT_PATH="+s.clientCert, "SWL_KEY_PATH="+s.clientKey), 1,
			[]string{"extended key usage serverAuth is missing", "no DNS or IP subject alternative name"}},
		{"listener missing CA and bad setting", "sw-listener", append(s.listenerEnv(), "SWL_CA_PATH="+missing, "SWL_KEEPALIVE=90s"), 1,
			[]string{"problem: SWL_KEEPALIVE=1m30s must be shorter than SWL_IDLE_TIMEOUT=1m0s", "problem: SWL_CA_PATH: CA certificate " + missing, "2 problem(s)"}},
		{"listener unparsable setting", "sw-listener", append(s.listenerEnv(), "SWL_PORT=many"), 1,
			[]string{`problem: SWL_PORT: "many" is not a number`}},
		{"listener SCEP endpoint for the verify URL", "sw-listener", append(s.listenerEnv(), "SWL_SCEP_URL=http://ca.internal:3000/scep/"), 0,
			[]string{"warning: SWL_SCEP_URL=http://ca.internal:3000/scep/ ends in /scep",
				"asks http://ca.internal:3000/scep/api/cert/verify", "404", "base URL, e.g. http://ca.internal:3000", "ok (1 warning(s))"}},
		{"listener token file missing", "sw-listener", append(s.listenerEnv(), "SWL_API_TOKEN_FILE="+missing), 1,
			[]string{"problem: SWL_API_TOKEN_FILE:", missing}},

		{"connector good", "sw-connector", s.connectorEnv(), 0,
			[]string{`note: connects as UID "swc-proc"`, `server_name (SWC_SERVER_NAME) "localhost"`, "sw-connector check-config: ok"}},
		{"connector expired", "sw-connector", append(s.connectorEnv(), "SWC_CLIENT_CERT_PATH="+expClient, "SWC_CLIENT_KEY_PATH="+expClientKey), 1,
			[]string{"problem: client_cert_path (SWC_CLIENT_CERT_PATH): certificate " + expClient, "expired on"}},
		{"connector key mismatch", "sw-connector", append(s.connectorEnv(), "SWC_CLIENT_KEY_PATH="+s.serverKey), 1,
			[]string{"problem: client_cert_path (SWC_CLIENT_CERT_PATH), client_key_path (SWC_CLIENT_KEY_PATH):", "private key does not match public key"}},
		{"connector foreign CA", "sw-connector", append(s.connectorEnv(), "SWC_CLIENT_CERT_PATH="+foreignClient, "SWC_CLIENT_KEY_PATH="+foreignClientKey), 1,
			[]string{"does not chain to the CA in ca_cert_path (SWC_CA_CERT_PATH)"}},
		{"connector server certificate", "sw-connector", append(s.connectorEnv(), "SWC_CLIENT_CERT_PATH="+s.serverCert, "SWC_CLIENT_KEY_PATH="+s.serverKey), 1,
			[]string{"extended key usage clientAuth is missing (has serverAuth)"}},
		{"connector no server_name", "sw-connector", append(s.connectorEnv(), "SWC_SERVER_NAME="), 1,
			[]string{"problem: server_name (SWC_SERVER_NAME) is not set"}},
		{"connector to enroll", "sw-connector", append(s.connectorEnv(),
			"SWC_CLIENT_CERT_PATH="+filepath.Join(enrollDir, "cert.pem"), "SWC_CLIENT_KEY_PATH="+filepath.Join(enrollDir, "key.pem"),
			"SWC_SCEP_URL=https://ca.example/scep", "SWC_UID=swc-new", "SWC_ENROLL_SECRET=s3cret"), 0,
			[]string{"note: client_cert_path " + filepath.Join(enrollDir, "cert.pem") + " does not exist yet", `enrolls as uid "swc-new"`, "ok"}},
		{"connector to enroll over http without a pin", "sw-connector", append(s.connectorEnv(),
			"SWC_CLIENT_CERT_PATH="+filepath.Join(enrollDir, "cert.pem"), "SWC_CLIENT_KEY_PATH="+filepath.Join(enrollDir, "key.pem"),
			"SWC_CA_CERT_PATH="+missing, "SWC_SCEP_URL=http://ca.example/scep", "SWC_UID=swc-new", "SWC_ENROLL_SECRET=s3cret"), 1,
			[]string{"problem: enroll_secret: ca_cert_path " + missing + " does not exist", "ca_fingerprint"}},
		{"connector missing certificate, no enrollment", "sw-connector", append(s.connectorEnv(), "SWC_CLIENT_CERT_PATH="+missing), 1,
			[]string{"problem: client_cert_path (SWC_CLIENT_CERT_PATH): certificate " + missing, "no such file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, tc.bin, tc.env, "check-config")
			if code != tc.code {
				t.Fatalf("exit %d, want %d; output:\n%s%s", code, tc.code, out, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Fatalf("output does not say %q:\n%s%s", w, out, errOut)
				}
			}
			if strings.Contains(out, "s3cret") {
				t.Fatal("the output shows the secret")
			}
		})
	}
	if _, err := os.Stat(filepath.Join(enrollDir, "cert.pem")); err == nil {
		t.Fatal("check-config enrolled")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
