package listener

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/socket-warp/socket-warp/listener/api"
	"github.com/socket-warp/socket-warp/shared/cli"
	"github.com/socket-warp/socket-warp/shared/debugserver"
)

// Config is sw-listener's configuration, read from the environment. The
// names of the original socket-warp are kept; new settings use SWL_.
type Config struct {
	CertPath string `envconfig:"SWL_CERT_PATH" desc:"server certificate (PEM); required"`
	KeyPath  string `envconfig:"SWL_KEY_PATH" desc:"server private key (PEM); required"`
	CAPath   string `envconfig:"SWL_CA_PATH" desc:"CA that issues connector certificates (PEM); required"`

	Addrs string `envconfig:"SWL_ADDRS" default:"0.0.0.0" desc:"QUIC bind addresses, comma separated"`
	Port  int    `envconfig:"SWL_PORT" default:"11443" desc:"QUIC (UDP) port"`

	KeepAlive   time.Duration `envconfig:"SWL_KEEPALIVE" default:"50s" desc:"QUIC keep-alive period"`
	IdleTimeout time.Duration `envconfig:"SWL_IDLE_TIMEOUT" default:"60s" desc:"a connector silent this long is gone"`
	// StreamOpenTimeout bounds the wait for stream credit from a connector
	// that has too many tunnelled connections open.
	StreamOpenTimeout time.Duration `envconfig:"SWL_STREAM_OPEN_TIMEOUT" default:"5s" desc:"wait for a QUIC stream to a connector"`
	// ProbeTimeout bounds the liveness probe of a bound connection when a
	// second one arrives for its UID; 0 means the default, 3s.
	ProbeTimeout time.Duration `envconfig:"SWL_PROBE_TIMEOUT" default:"3s" desc:"a bound connector that does not answer a probe this fast is replaced by a newcomer with its UID"`
	// DrainTimeout is how long shutdown lets tunnelled connections finish;
	// 0 ends them at once.
	DrainTimeout time.Duration `envconfig:"SWL_DRAIN_TIMEOUT" default:"10s" desc:"on shutdown, how long tunnelled connections may finish before they are cut"`

	// SCEPURL, when set, makes the SCEP server's verify endpoint the judge
	// of every connector (UID, revocation); empty means CA check, UID = CN.
	SCEPURL        string        `envconfig:"SWL_SCEP_URL" desc:"SCEP server base URL for /api/cert/verify"`
	VerifyCacheTTL time.Duration `envconfig:"SWL_VERIFY_CACHE_TTL" default:"60s" desc:"cache of positive verify answers, used also while the server is unreachable; connected connectors are re-verified this often, and dropped after 5 re-checks in a row without an answer"`
	VerifyTimeout  time.Duration `envconfig:"SWL_VERIFY_TIMEOUT" default:"5s" desc:"timeout of one verify request"`

	CRLPath    string        `envconfig:"SWL_CRL_PATH" desc:"CRL file (DER or PEM), re-read when it changes"`
	CRLURL     string        `envconfig:"SWL_CRL_URL" desc:"CRL URL, e.g. the SCEP server's ?operation=GetCRL"`
	CRLRefresh time.Duration `envconfig:"SWL_CRL_REFRESH" default:"60s" desc:"how often the CRL is re-read or re-fetched"`

	OpenAddrs string `envconfig:"SWL_OPEN_ADDRS" default:"0.0.0.0" desc:"bind addresses of opened ports, comma separated"`

	// Limits; 0 means unlimited. A client beyond a connection limit is
	// reset at once, never queued.
	MaxConnsPerPort int `envconfig:"SWL_MAX_CONNS_PER_PORT" default:"0" desc:"concurrent tunnelled connections per opened port (0: unlimited)"`
	MaxConnsPerUID  int `envconfig:"SWL_MAX_CONNS_PER_UID" default:"10000" desc:"concurrent tunnelled connections per connector, all its ports together (0: unlimited)"`
	MaxPorts        int `envconfig:"SWL_MAX_PORTS" default:"1000" desc:"opened ports (0: unlimited)"`

	APIAddrs string `envconfig:"APIS_ADDRS" default:"127.0.0.1" desc:"HTTP API bind addresses, comma separated"`
	APIPort  int    `envconfig:"APIS_PORT" default:"8080" desc:"HTTP API port"`
	// An API bound to a non-loopback address needs a token, or
	// APIInsecure set explicitly.
	APIToken     Secret `envconfig:"SWL_API_TOKEN" desc:"bearer token every API request must send"`
	APITokenFile string `envconfig:"SWL_API_TOKEN_FILE" desc:"file holding the API token, read at start"`
	APIInsecure  bool   `envconfig:"SWL_API_INSECURE" desc:"serve the API on a non-loopback address without a token"`
	// The API answers to these names in the Host header besides localhost
	// and IP addresses: a web page must not reach it by a name of its own
	// made to resolve to the listener (DNS rebinding).
	APIAllowedHosts string `envconfig:"SWL_API_ALLOWED_HOSTS" desc:"host names, comma separated, by which clients reach the API, besides localhost and IP addresses"`

	// MetricsAddr moves /metrics off the API to an address of its own,
	// served without authentication.
	MetricsAddr string `envconfig:"SWL_METRICS_ADDR" desc:"host:port serving /metrics, /healthz and /readyz without a token; unset: /metrics is on the API"`

	StatePath string `envconfig:"SWL_STATE_PATH" default:"./data/state.db" desc:"bbolt file keeping the opened ports across restarts"`

	// PprofAddr serves net/http/pprof (shared/debugserver); empty: off.
	PprofAddr string `envconfig:"SWL_PPROF_ADDR" desc:"loopback host:port serving /debug/pprof/ (empty: off)"`

	LogLevel  string `envconfig:"SWL_LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	LogFormat string `envconfig:"SWL_LOG_FORMAT" default:"console" desc:"console or json"`
}

// LoadConfig reads the environment and validates the result.
func LoadConfig() (Config, error) {
	var c Config
	if err := cli.LoadEnv(&c); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// Validate reports every problem at once, so an operator fixes them in one go.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, f := range []struct{ name, value string }{
		{"SWL_CERT_PATH", c.CertPath}, {"SWL_KEY_PATH", c.KeyPath}, {"SWL_CA_PATH", c.CAPath},
	} {
		if f.value == "" {
			add("%s is not set", f.name)
		}
	}
	checkPort := func(name string, port int, zeroOK bool) {
		if port < 0 || port > 65535 || (port == 0 && !zeroOK) {
			add("%s=%d is outside 1-65535", name, port)
		}
	}
	// Port 0 (any free port) is accepted for tests and embedding.
	checkPort("SWL_PORT", c.Port, true)
	checkPort("APIS_PORT", c.APIPort, true)
	for _, f := range []struct{ name, value string }{
		{"SWL_ADDRS", c.Addrs}, {"SWL_OPEN_ADDRS", c.OpenAddrs}, {"APIS_ADDRS", c.APIAddrs},
	} {
		if _, err := SplitAddrs(f.value); err != nil {
			add("%s: %v", f.name, err)
		}
	}
	if c.KeepAlive <= 0 {
		add("SWL_KEEPALIVE=%s must be positive", c.KeepAlive)
	}
	if c.IdleTimeout <= 0 {
		add("SWL_IDLE_TIMEOUT=%s must be positive", c.IdleTimeout)
	} else if c.KeepAlive >= c.IdleTimeout {
		add("SWL_KEEPALIVE=%s must be shorter than SWL_IDLE_TIMEOUT=%s", c.KeepAlive, c.IdleTimeout)
	}
	if c.SCEPURL != "" {
		if u, err := url.Parse(c.SCEPURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("SWL_SCEP_URL=%q is not an http(s) URL", c.SCEPURL)
		}
		if c.VerifyCacheTTL <= 0 {
			add("SWL_VERIFY_CACHE_TTL=%s must be positive", c.VerifyCacheTTL)
		}
		if c.VerifyTimeout <= 0 {
			add("SWL_VERIFY_TIMEOUT=%s must be positive", c.VerifyTimeout)
		}
	}
	if c.CRLPath != "" && c.CRLURL != "" {
		add("SWL_CRL_PATH and SWL_CRL_URL are both set: choose one")
	}
	if c.CRLURL != "" {
		if u, err := url.Parse(c.CRLURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("SWL_CRL_URL=%q is not an http(s) URL", c.CRLURL)
		}
	}
	if (c.CRLPath != "" || c.CRLURL != "") && c.CRLRefresh <= 0 {
		add("SWL_CRL_REFRESH=%s must be positive", c.CRLRefresh)
	}
	if c.StreamOpenTimeout <= 0 {
		add("SWL_STREAM_OPEN_TIMEOUT=%s must be positive", c.StreamOpenTimeout)
	}
	if c.ProbeTimeout < 0 {
		add("SWL_PROBE_TIMEOUT=%s must not be negative", c.ProbeTimeout)
	}
	if c.DrainTimeout < 0 {
		add("SWL_DRAIN_TIMEOUT=%s must not be negative", c.DrainTimeout)
	}
	for _, f := range []struct {
		name string
		n    int
	}{{"SWL_MAX_CONNS_PER_PORT", c.MaxConnsPerPort}, {"SWL_MAX_CONNS_PER_UID", c.MaxConnsPerUID}, {"SWL_MAX_PORTS", c.MaxPorts}} {
		if f.n < 0 {
			add("%s=%d must not be negative (0 means unlimited)", f.name, f.n)
		}
	}
	if c.MetricsAddr != "" {
		if err := checkHostPort(c.MetricsAddr); err != nil {
			add("SWL_METRICS_ADDR=%q %v", c.MetricsAddr, err)
		}
	}
	if c.StatePath == "" {
		add("SWL_STATE_PATH is not set")
	}
	if err := debugserver.CheckAddr(c.PprofAddr); err != nil {
		add("SWL_PPROF_ADDR: %v", err)
	}
	if _, err := c.apiAllowedHosts(); err != nil {
		add("%v", err)
	}
	if c.APIToken != "" && c.APITokenFile != "" {
		add("SWL_API_TOKEN and SWL_API_TOKEN_FILE are both set: choose one")
	}
	if err := checkToken(string(c.APIToken)); err != nil {
		add("SWL_API_TOKEN %v", err)
	}
	if c.APIToken == "" && c.APITokenFile == "" && !c.APIInsecure {
		if open := nonLoopback(c.APIAddrs); len(open) > 0 {
			add("APIS_ADDRS=%s is not loopback-only and the API has no token: set SWL_API_TOKEN (or SWL_API_TOKEN_FILE), "+
				"or SWL_API_INSECURE=true to let anyone who reaches it open ports", strings.Join(open, ","))
		}
	}
	return errors.Join(errs...)
}

// Secret is a configuration value that never shows when printed.
type Secret string

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString keeps %#v from printing it too.
func (s Secret) GoString() string { return `"` + s.String() + `"` }

// checkToken refuses what no Authorization header can carry intact. The
// error never repeats the token.
func checkToken(token string) error {
	for _, r := range token {
		if r <= ' ' || r == 0x7f {
			return errors.New("contains whitespace or control characters")
		}
	}
	return nil
}

// nonLoopback lists the addresses of list that are not loopback; 0.0.0.0
// and :: (every address) are not. Unparsable lists are SplitAddrs' to report.
func nonLoopback(list string) []string {
	addrs, err := SplitAddrs(list)
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range addrs {
		if !net.ParseIP(a).IsLoopback() {
			out = append(out, a)
		}
	}
	return out
}

// apiToken is the API's bearer token: SWL_API_TOKEN, or the content of
// SWL_API_TOKEN_FILE without its trailing newline; "" means none. Errors
// name the file, never the token.
func (c Config) apiToken() (string, error) {
	if c.APITokenFile == "" {
		return string(c.APIToken), nil
	}
	b, err := os.ReadFile(c.APITokenFile)
	if err != nil {
		return "", fmt.Errorf("SWL_API_TOKEN_FILE: %w", err)
	}
	token := strings.TrimRight(string(b), "\r\n")
	if token == "" {
		return "", fmt.Errorf("SWL_API_TOKEN_FILE: %s is empty", c.APITokenFile)
	}
	if err := checkToken(token); err != nil {
		return "", fmt.Errorf("SWL_API_TOKEN_FILE: the token in %s %v", c.APITokenFile, err)
	}
	return token, nil
}

// apiAllowedHosts parses SWL_API_ALLOWED_HOSTS: host names (or addresses,
// which need no listing), without ports.
func (c Config) apiAllowedHosts() ([]string, error) {
	var out []string
	for _, h := range strings.Split(c.APIAllowedHosts, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if err := api.CheckHost(h); errors.Is(err, api.ErrHostWithPort) {
			return nil, fmt.Errorf("SWL_API_ALLOWED_HOSTS: %q: give the name without a port (any port is accepted)", h)
		} else if err != nil {
			return nil, fmt.Errorf("SWL_API_ALLOWED_HOSTS: %q is not a host name: %v", h, err)
		}
		out = append(out, h)
	}
	return out, nil
}

// SplitAddrs parses a comma-separated list of IP addresses.
func SplitAddrs(list string) ([]string, error) {
	var out []string
	for _, a := range strings.Split(list, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if net.ParseIP(strings.Trim(a, "[]")) == nil {
			return nil, fmt.Errorf("%q is not an IP address", a)
		}
		out = append(out, strings.Trim(a, "[]"))
	}
	if len(out) == 0 {
		return nil, errors.New("no address given")
	}
	return out, nil
}

// checkHostPort accepts host:port with a port in 0-65535 (0: any free one).
func checkHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("is not host:port, e.g. 127.0.0.1:9090")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("has port %q outside 0-65535", port)
	}
	return nil
}

func hostPort(addr string, port int) string { return net.JoinHostPort(addr, strconv.Itoa(port)) }
