package listener

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// Config is sw-listener's configuration, read from the environment. The
// names of the original socket-warp are kept; new settings use SWL_.
type Config struct {
	CertPath string `envconfig:"SWL_CERT_PATH" desc:"server certificate (PEM)"`
	KeyPath  string `envconfig:"SWL_KEY_PATH" desc:"server private key (PEM)"`
	CAPath   string `envconfig:"SWL_CA_PATH" desc:"CA that issues connector certificates (PEM)"`

	Addrs string `envconfig:"SWL_ADDRS" default:"0.0.0.0" desc:"QUIC bind addresses, comma separated"`
	Port  int    `envconfig:"SWL_PORT" default:"11443" desc:"QUIC (UDP) port"`

	KeepAlive   time.Duration `envconfig:"SWL_KEEPALIVE" default:"50s" desc:"QUIC keep-alive period"`
	IdleTimeout time.Duration `envconfig:"SWL_IDLE_TIMEOUT" default:"60s" desc:"a connector silent this long is gone"`
	// StreamOpenTimeout bounds the wait for stream credit from a connector
	// that has too many tunnelled connections open.
	StreamOpenTimeout time.Duration `envconfig:"SWL_STREAM_OPEN_TIMEOUT" default:"5s" desc:"wait for a QUIC stream to a connector"`

	// SCEPURL, when set, makes the SCEP server's verify endpoint the judge
	// of every connector (UID, revocation); empty means CA check, UID = CN.
	SCEPURL        string        `envconfig:"SWL_SCEP_URL" desc:"SCEP server base URL for /api/cert/verify"`
	VerifyCacheTTL time.Duration `envconfig:"SWL_VERIFY_CACHE_TTL" default:"60s" desc:"cache of positive verify answers; connected connectors are re-verified this often, and dropped after 5 re-checks in a row without an answer"`
	VerifyTimeout  time.Duration `envconfig:"SWL_VERIFY_TIMEOUT" default:"5s" desc:"timeout of one verify request"`

	CRLPath    string        `envconfig:"SWL_CRL_PATH" desc:"CRL file (DER or PEM), re-read when it changes"`
	CRLURL     string        `envconfig:"SWL_CRL_URL" desc:"CRL URL, e.g. the SCEP server's ?operation=GetCRL"`
	CRLRefresh time.Duration `envconfig:"SWL_CRL_REFRESH" default:"60s" desc:"how often the CRL is re-read or re-fetched"`

	OpenAddrs string `envconfig:"SWL_OPEN_ADDRS" default:"0.0.0.0" desc:"bind addresses of opened ports, comma separated"`

	APIAddrs string `envconfig:"APIS_ADDRS" default:"127.0.0.1" desc:"HTTP API bind addresses, comma separated"`
	APIPort  int    `envconfig:"APIS_PORT" default:"8080" desc:"HTTP API port"`

	LogLevel  string `envconfig:"SWL_LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	LogFormat string `envconfig:"SWL_LOG_FORMAT" default:"console" desc:"console or json"`
}

// LoadConfig reads the environment and validates the result.
func LoadConfig() (Config, error) {
	var c Config
	if err := envconfig.Process("", &c); err != nil {
		return c, fmt.Errorf("environment: %w", err)
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
	return errors.Join(errs...)
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

func hostPort(addr string, port int) string { return net.JoinHostPort(addr, strconv.Itoa(port)) }
