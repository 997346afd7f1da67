package listener

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/shared/testutil"
)

// clearEnv removes every SWL_ and APIS_ variable for the test, so that
// neither the environment the tests run in nor another test decides the outcome.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "SWL_") || strings.HasPrefix(k, "APIS_") {
			t.Setenv(k, "") // restores the old value after the test
			os.Unsetenv(k)
		}
	}
}

func setPaths(t *testing.T) {
	t.Setenv("SWL_CERT_PATH", "/etc/sw/server.crt")
	t.Setenv("SWL_KEY_PATH", "/etc/sw/server.key")
	t.Setenv("SWL_CA_PATH", "/etc/sw/ca.crt")
}

func TestLoadConfigDefaults(t *testing.T) {
	clearEnv(t)
	setPaths(t)
	c, err := LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		CertPath: "/etc/sw/server.crt", KeyPath: "/etc/sw/server.key", CAPath: "/etc/sw/ca.crt",
		Addrs: "0.0.0.0", Port: 11443,
		KeepAlive: 50 * time.Second, IdleTimeout: 60 * time.Second, StreamOpenTimeout: 5 * time.Second,
		VerifyCacheTTL: 60 * time.Second, VerifyTimeout: 5 * time.Second, CRLRefresh: 60 * time.Second,
		OpenAddrs: "0.0.0.0", ProbeTimeout: 3 * time.Second, DrainTimeout: 10 * time.Second,
		MaxConnsPerUID: 10000, MaxPorts: 1000,
		APIAddrs: "127.0.0.1", APIPort: 8080,
		LogLevel: "info", LogFormat: "console",
		StatePath: "./data/state.db",
	}
	if c != want {
		t.Fatalf("LoadConfig:\n got %+v\nwant %+v", c, want)
	}
}

func TestLoadConfigFromEnv(t *testing.T) {
	clearEnv(t)
	setPaths(t)
	for k, v := range map[string]string{
		"SWL_ADDRS": "127.0.0.1,::1", "SWL_PORT": "12443",
		"SWL_KEEPALIVE": "10s", "SWL_IDLE_TIMEOUT": "30s", "SWL_STREAM_OPEN_TIMEOUT": "2s",
		"SWL_OPEN_ADDRS": "127.0.0.1", "APIS_ADDRS": "::1", "APIS_PORT": "9090",
		"SWL_LOG_LEVEL": "debug", "SWL_LOG_FORMAT": "json",
		"SWL_SCEP_URL": "http://scep.internal:3000", "SWL_VERIFY_CACHE_TTL": "30s", "SWL_VERIFY_TIMEOUT": "2s",
		"SWL_CRL_URL": "http://scep.internal:3000/scep?operation=GetCRL", "SWL_CRL_REFRESH": "15s",
		"SWL_STATE_PATH": "/var/lib/sw/state.db", "SWL_API_TOKEN": "s3cret-token", "SWL_API_INSECURE": "true",
		"SWL_PROBE_TIMEOUT": "1s", "SWL_DRAIN_TIMEOUT": "0s",
		"SWL_MAX_CONNS_PER_PORT": "50", "SWL_MAX_CONNS_PER_UID": "0", "SWL_MAX_PORTS": "7",
		"SWL_PPROF_ADDR": "127.0.0.1:6060", "SWL_API_ALLOWED_HOSTS": "listener.example.com, sw-listener",
	} {
		t.Setenv(k, v)
	}
	c, err := LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		CertPath: "/etc/sw/server.crt", KeyPath: "/etc/sw/server.key", CAPath: "/etc/sw/ca.crt",
		Addrs: "127.0.0.1,::1", Port: 12443,
		KeepAlive: 10 * time.Second, IdleTimeout: 30 * time.Second, StreamOpenTimeout: 2 * time.Second,
		SCEPURL: "http://scep.internal:3000", VerifyCacheTTL: 30 * time.Second, VerifyTimeout: 2 * time.Second,
		CRLURL: "http://scep.internal:3000/scep?operation=GetCRL", CRLRefresh: 15 * time.Second,
		OpenAddrs: "127.0.0.1", APIAddrs: "::1", APIPort: 9090,
		ProbeTimeout: time.Second, MaxConnsPerPort: 50, MaxPorts: 7, PprofAddr: "127.0.0.1:6060",
		LogLevel: "debug", LogFormat: "json",
		StatePath: "/var/lib/sw/state.db", APIToken: "s3cret-token", APIInsecure: true,
		APIAllowedHosts: "listener.example.com, sw-listener",
	}
	if c != want {
		t.Fatalf("LoadConfig:\n got %+v\nwant %+v", c, want)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	t.Run("unparsable value", func(t *testing.T) {
		clearEnv(t)
		setPaths(t)
		t.Setenv("SWL_PORT", "udp")
		_, err := LoadConfig()
		testutil.WantErr(t, err, "SWL_PORT", "udp")
	})
	t.Run("invalid values", func(t *testing.T) {
		clearEnv(t)
		t.Setenv("APIS_ADDRS", "localhost")
		t.Setenv("SWL_KEEPALIVE", "2m")
		_, err := LoadConfig()
		testutil.WantErr(t, err, "SWL_CERT_PATH is not set", `APIS_ADDRS: "localhost" is not an IP address`,
			"SWL_KEEPALIVE=2m0s must be shorter than SWL_IDLE_TIMEOUT=1m0s")
	})
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := Config{
		Addrs: "127.0.0.1, not-an-ip", Port: -1,
		KeepAlive: time.Minute, IdleTimeout: time.Minute,
		OpenAddrs: " , ", APIAddrs: "127.0.0.1", APIPort: 65536,
	}
	testutil.WantErr(t, c.Validate(),
		"SWL_CERT_PATH is not set", "SWL_KEY_PATH is not set", "SWL_CA_PATH is not set",
		"SWL_PORT=-1 is outside 1-65535", "APIS_PORT=65536 is outside 1-65535",
		`SWL_ADDRS: "not-an-ip" is not an IP address`, "SWL_OPEN_ADDRS: no address given",
		"SWL_KEEPALIVE=1m0s must be shorter than SWL_IDLE_TIMEOUT=1m0s",
		"SWL_STREAM_OPEN_TIMEOUT=0s must be positive",
	)

	c = Config{Addrs: "0.0.0.0", OpenAddrs: "0.0.0.0", APIAddrs: "127.0.0.1",
		ProbeTimeout: -time.Second, DrainTimeout: -time.Second, MaxConnsPerPort: -1, MaxConnsPerUID: -2, MaxPorts: -3,
		MetricsAddr: "9090", PprofAddr: "0.0.0.0:6060", APIAllowedHosts: "ok.example,listener.example.com:8080"}
	testutil.WantErr(t, c.Validate(),
		`SWL_API_ALLOWED_HOSTS: "listener.example.com:8080": give the name without a port`,
		`SWL_METRICS_ADDR="9090" is not host:port`,
		`SWL_PPROF_ADDR: "0.0.0.0:6060" is not a loopback address`,
		"SWL_PROBE_TIMEOUT=-1s must not be negative", "SWL_DRAIN_TIMEOUT=-1s must not be negative",
		"SWL_MAX_CONNS_PER_PORT=-1 must not be negative (0 means unlimited)",
		"SWL_MAX_CONNS_PER_UID=-2 must not be negative", "SWL_MAX_PORTS=-3 must not be negative")

	c = Config{
		SCEPURL: "scep.internal:3000", CRLPath: "/etc/sw/crl.der", CRLURL: "ftp://x/crl",
		Addrs: "0.0.0.0", OpenAddrs: "0.0.0.0", APIAddrs: "127.0.0.1", APIAllowedHosts: "http://listener.example.com",
	}
	testutil.WantErr(t, c.Validate(),
		`SWL_SCEP_URL="scep.internal:3000" is not an http(s) URL`, "SWL_VERIFY_CACHE_TTL=0s must be positive",
		`SWL_API_ALLOWED_HOSTS: "http://listener.example.com" is not a host name`,
		"SWL_VERIFY_TIMEOUT=0s must be positive", "SWL_CRL_PATH and SWL_CRL_URL are both set",
		`SWL_CRL_URL="ftp://x/crl" is not an http(s) URL`, "SWL_CRL_REFRESH=0s must be positive")

	c = Config{IdleTimeout: -time.Second, Addrs: "0.0.0.0", OpenAddrs: "0.0.0.0", APIAddrs: "127.0.0.1"}
	testutil.WantErr(t, c.Validate(), "SWL_KEEPALIVE=0s must be positive", "SWL_IDLE_TIMEOUT=-1s must be positive")

	ok := Config{CertPath: "a", KeyPath: "b", CAPath: "c", Addrs: "0.0.0.0", OpenAddrs: "::", APIAddrs: "127.0.0.1",
		KeepAlive: time.Second, IdleTimeout: 2 * time.Second, StreamOpenTimeout: time.Second, StatePath: "state.db"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("a valid config (port 0 included): %v", err)
	}
}

func TestSplitAddrs(t *testing.T) {
	got, err := SplitAddrs(" 127.0.0.1, [::1],,::")
	if want := []string{"127.0.0.1", "::1", "::"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("SplitAddrs = %q, %v; want %q", got, err, want)
	}
	for _, bad := range []string{"", " , ", "127.0.0.1,host.example", "127.0.0.1:80"} {
		if _, err := SplitAddrs(bad); err == nil {
			t.Errorf("SplitAddrs(%q) accepted", bad)
		}
	}
}
