package connector

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/socket-warp/socket-warp/connector/policy"
	"github.com/socket-warp/socket-warp/shared/cli"
	"github.com/socket-warp/socket-warp/shared/debugserver"
)

// Duration reads "20s"-style strings from settings.json and the environment.
type Duration time.Duration

var durationType = reflect.TypeFor[Duration]()

// UnmarshalJSON accepts a Go duration string ("20s", "1m30s"). It fails with
// a json.UnmarshalTypeError, which the decoder completes with the key's name.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return &json.UnmarshalTypeError{Value: string(b), Type: durationType}
	}
	if err := d.Decode(s); err != nil {
		return &json.UnmarshalTypeError{Value: strconv.Quote(s), Type: durationType}
	}
	return nil
}

// String is the Go duration string, as --help shows defaults.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// Decode implements envconfig.Decoder.
func (d *Duration) Decode(s string) error {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		// Completes `SWC_…: "value" …` (cli.LoadEnv).
		return errors.New(`is not a duration such as "20s"`)
	}
	*d = Duration(v)
	return nil
}

// AllowList is the target policy setting (allow, SWC_ALLOW): unset, or the
// comma-separated entries of a policy.Policy. In settings.json it is either
// that string or an array of strings, one entry each.
type AllowList struct {
	Set   bool   // false: every target is allowed
	Value string // comma-separated entries; "none" refuses every target
}

var allowType = reflect.TypeFor[AllowList]()

// UnmarshalJSON accepts "a:1,b:2", ["a:1", "b:2"] or null (unset).
func (a *AllowList) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*a = AllowList{Set: true, Value: s}
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return &json.UnmarshalTypeError{Value: string(b), Type: allowType}
	}
	for i, e := range list {
		// Entries are numbered as in the array; a comma would shift them.
		if strings.Contains(e, ",") {
			return fmt.Errorf(`key "allow": element %d %q holds a comma: give one target per array element`, i+1, e)
		}
	}
	*a = AllowList{Set: true, Value: strings.Join(list, ",")}
	return nil
}

// MarshalJSON writes the list as a string, or null when unset.
func (a AllowList) MarshalJSON() ([]byte, error) {
	if !a.Set {
		return []byte("null"), nil
	}
	return json.Marshal(a.Value)
}

// Decode implements envconfig.Decoder. A variable set to the empty string
// counts as set, so that Validate refuses it.
func (a *AllowList) Decode(s string) error {
	*a = AllowList{Set: true, Value: s}
	return nil
}

// Policy parses the list; nil, nil when it is not set.
func (a AllowList) Policy() (*policy.Policy, error) {
	if !a.Set {
		return nil, nil
	}
	return policy.Parse(a.Value)
}

// Config is sw-connector's configuration: settings.json (the original keys)
// with every key overridable by an SWC_ environment variable.
type Config struct {
	ClientCertPath string `json:"client_cert_path" envconfig:"SWC_CLIENT_CERT_PATH" desc:"the connector's certificate (PEM, CN = its UID); required"`
	ClientKeyPath  string `json:"client_key_path" envconfig:"SWC_CLIENT_KEY_PATH" desc:"its private key (PEM); required"`
	CACertPath     string `json:"ca_cert_path" envconfig:"SWC_CA_CERT_PATH" desc:"CA that issued the listener's certificate (PEM); required"`
	ServerName     string `json:"server_name" envconfig:"SWC_SERVER_NAME" desc:"the listener's name, checked against its certificate; required"`
	ServicePort    int    `json:"service_port" envconfig:"SWC_SERVICE_PORT" desc:"the listener's QUIC (UDP) port"`
	// ServerAddress is dialled instead of ServerName when set; the
	// certificate is still checked against ServerName.
	ServerAddress string `json:"server_address" envconfig:"SWC_SERVER_ADDRESS" desc:"host or IP to dial instead of server_name"`

	KeepAlive     Duration `json:"keep_alive" envconfig:"SWC_KEEPALIVE" desc:"heartbeat period: bounds the recovery after a NAT forgets its mapping or the listener restarts after a crash; shorter than UDP NAT timeouts"`
	IdleTimeout   Duration `json:"idle_timeout" envconfig:"SWC_IDLE_TIMEOUT" desc:"the listener is gone after this much silence"`
	DialTimeout   Duration `json:"dial_timeout" envconfig:"SWC_DIAL_TIMEOUT" desc:"timeout for dialling a target"`
	HeaderTimeout Duration `json:"header_timeout" envconfig:"SWC_HEADER_TIMEOUT" desc:"a stream whose header does not arrive in time is refused"`
	RetryMin      Duration `json:"retry_min" envconfig:"SWC_RETRY_MIN" desc:"first reconnect delay"`
	RetryMax      Duration `json:"retry_max" envconfig:"SWC_RETRY_MAX" desc:"longest reconnect delay"`
	// DrainTimeout is how long shutdown lets tunnels finish; 0 ends them
	// at once.
	DrainTimeout Duration `json:"drain_timeout" envconfig:"SWC_DRAIN_TIMEOUT" desc:"on shutdown, how long running tunnels may finish (0s: at once)"`
	// HandoverTimeout bounds the old connection after a hand-over (a new
	// certificate moved the connector to a new connection): its tunnels
	// may run on for this long, then it is closed. Long, because the
	// tunnels that outlive a short bound are the long-lived ones (a shell,
	// a database session) that a renewal should not cut.
	HandoverTimeout Duration `json:"handover_timeout" envconfig:"SWC_HANDOVER_TIMEOUT" desc:"after a new certificate moved the connector to a new connection, how long tunnels on the old one may finish (0s: at once)"`

	// Allow is the target policy (package policy); unset allows every target.
	Allow AllowList `json:"allow" envconfig:"SWC_ALLOW" desc:"targets this connector may dial, e.g. 10.0.0.0/24:22,db.internal:5432; none: nothing; unset: any"`

	// SCEP: with a UID and a one-time secret the connector enrolls itself
	// when it has no certificate yet; with a renewal secret it renews its
	// certificate before it expires, without a restart.
	SCEPURL       string  `json:"scep_url" envconfig:"SWC_SCEP_URL" desc:"SCEP endpoint for enrollment and renewal"`
	UID           string  `json:"uid" envconfig:"SWC_UID" desc:"the UID to enroll as (the certificate's CN)"`
	EnrollSecret  string  `json:"enroll_secret" envconfig:"SWC_ENROLL_SECRET" desc:"one-time secret: enroll on start when the certificate files do not exist"`
	RenewSecret   string  `json:"renew_secret" envconfig:"SWC_RENEW_SECRET" desc:"update secret: renew before expiry"`
	RenewAt       float64 `json:"renew_at" envconfig:"SWC_RENEW_AT" desc:"renew at this fraction of the certificate's lifetime"`
	CAFingerprint string  `json:"ca_fingerprint" envconfig:"SWC_CA_FINGERPRINT" desc:"SHA-256 (hex) the SCEP CA certificate must have"`

	// RenewSecretFile holds the update secret instead of RenewSecret. It
	// is read again when it changes and on SIGHUP, so that the next secret
	// is handed over without a restart (an update secret is one-time).
	RenewSecretFile string `json:"renew_secret_file" envconfig:"SWC_RENEW_SECRET_FILE" desc:"file holding the update secret (instead of renew_secret); read again when it changes and on SIGHUP"`

	// MetricsAddr, host:port, serves /metrics, /healthz and /readyz
	// (ready = connected) without authentication; empty: none.
	MetricsAddr string `json:"metrics_addr" envconfig:"SWC_METRICS_ADDR" desc:"host:port serving /metrics, /healthz and /readyz (no auth); empty: off"`
	// PprofAddr serves net/http/pprof (shared/debugserver); empty: off.
	PprofAddr string `json:"pprof_addr" envconfig:"SWC_PPROF_ADDR" desc:"loopback host:port serving net/http/pprof for profiling; empty: off"`

	LogLevel  string `json:"log_level" envconfig:"SWC_LOG_LEVEL" desc:"debug, info, warn or error"`
	LogFormat string `json:"log_format" envconfig:"SWC_LOG_FORMAT" desc:"console or json"`
}

// Defaults are the values of every setting nobody sets.
func Defaults() Config {
	return Config{
		ServicePort:   11443,
		KeepAlive:     Duration(3 * time.Second),
		IdleTimeout:   Duration(60 * time.Second),
		DialTimeout:   Duration(10 * time.Second),
		HeaderTimeout: Duration(10 * time.Second),
		RetryMin:      Duration(time.Second),
		RetryMax:      Duration(30 * time.Second),
		DrainTimeout:  Duration(10 * time.Second),
		RenewAt:       2.0 / 3,
		LogLevel:      "info",
		LogFormat:     "console",

		HandoverTimeout: Duration(24 * time.Hour),
	}
}

// DefaultSettingsPath is read when SWC_SETTINGS is not set.
const DefaultSettingsPath = "./settings.json"

// LoadConfig reads the settings file named by SWC_SETTINGS (default
// ./settings.json), then the environment. The default file may be absent
// when the environment supplies everything; a file named explicitly must exist.
func LoadConfig() (Config, error) {
	c := Defaults()
	path, explicit := os.LookupEnv("SWC_SETTINGS")
	if !explicit || path == "" {
		path, explicit = DefaultSettingsPath, false
	}
	found, err := c.loadFile(path, explicit)
	if err != nil {
		return c, err
	}
	if err := cli.LoadEnv(&c); err != nil {
		return c, err
	}
	err = c.Validate()
	if err != nil && !found {
		// First: the settings it lacks are likely all in that file.
		abs, _ := filepath.Abs(path)
		err = errors.Join(fmt.Errorf("settings file %s not found (looked for %s): set SWC_SETTINGS to its path, or give every setting in the environment",
			path, abs), err)
	}
	return c, err
}

// loadFile reads the settings file into c; found is false when a file that
// need not exist does not.
func (c *Config) loadFile(path string, mustExist bool) (found bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !mustExist {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("settings file %s: %w", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	// An unknown key is almost always a typo that would otherwise be
	// silently ignored.
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return false, fmt.Errorf("settings file %s: %w", path, describeJSONError(data, err))
	}
	return true, nil
}

func describeJSONError(data []byte, err error) error {
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) {
		line := 1 + bytes.Count(data[:min(int(syntax.Offset), len(data))], []byte("\n"))
		return fmt.Errorf("line %d: %w", line, err)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		want := cli.Want(typ.Type, false)
		switch typ.Type {
		case durationType:
			want = `a duration string such as "20s"`
		case allowType:
			want = `a string such as "10.0.0.0/24:22,db.internal:5432" or an array of such targets`
		}
		return fmt.Errorf("key %q must be %s, not %s", typ.Field, want, typ.Value)
	}
	return err
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, f := range []struct{ key, env, value string }{
		{"client_cert_path", "SWC_CLIENT_CERT_PATH", c.ClientCertPath},
		{"client_key_path", "SWC_CLIENT_KEY_PATH", c.ClientKeyPath},
		{"ca_cert_path", "SWC_CA_CERT_PATH", c.CACertPath},
		{"server_name", "SWC_SERVER_NAME", c.ServerName},
	} {
		if strings.TrimSpace(f.value) == "" {
			add("%s (%s) is not set", f.key, f.env)
		}
	}
	if c.ServicePort < 1 || c.ServicePort > 65535 {
		add("service_port (SWC_SERVICE_PORT) %d is outside 1-65535", c.ServicePort)
	}
	for _, f := range []struct {
		key string
		d   Duration
	}{
		{"keep_alive (SWC_KEEPALIVE)", c.KeepAlive}, {"idle_timeout (SWC_IDLE_TIMEOUT)", c.IdleTimeout},
		{"dial_timeout (SWC_DIAL_TIMEOUT)", c.DialTimeout}, {"header_timeout (SWC_HEADER_TIMEOUT)", c.HeaderTimeout},
		{"retry_min (SWC_RETRY_MIN)", c.RetryMin}, {"retry_max (SWC_RETRY_MAX)", c.RetryMax},
	} {
		if f.d <= 0 {
			add("%s must be positive", f.key)
		}
	}
	if c.KeepAlive >= c.IdleTimeout && c.IdleTimeout > 0 {
		add("keep_alive %s must be shorter than idle_timeout %s", time.Duration(c.KeepAlive), time.Duration(c.IdleTimeout))
	}
	if c.SCEPURL != "" {
		if u, err := url.Parse(c.SCEPURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("scep_url (SWC_SCEP_URL) %q is not an http(s) URL", c.SCEPURL)
		}
	}
	if c.EnrollSecret != "" && (c.SCEPURL == "" || c.UID == "") {
		add("enroll_secret (SWC_ENROLL_SECRET) needs scep_url (SWC_SCEP_URL) and uid (SWC_UID)")
	}
	if c.RenewSecret != "" && c.SCEPURL == "" {
		add("renew_secret (SWC_RENEW_SECRET) needs scep_url (SWC_SCEP_URL)")
	}
	if c.RenewSecretFile != "" && c.SCEPURL == "" {
		add("renew_secret_file (SWC_RENEW_SECRET_FILE) needs scep_url (SWC_SCEP_URL)")
	}
	if c.RenewSecret != "" && c.RenewSecretFile != "" {
		add("renew_secret (SWC_RENEW_SECRET) and renew_secret_file (SWC_RENEW_SECRET_FILE) are both set: choose one")
	}
	for _, f := range []struct{ key, v string }{{"enroll_secret (SWC_ENROLL_SECRET)", c.EnrollSecret}, {"renew_secret (SWC_RENEW_SECRET)", c.RenewSecret}} {
		if strings.Contains(f.v, `\`) {
			add("%s must not contain a backslash", f.key)
		}
	}
	if c.RenewAt <= 0 || c.RenewAt >= 1 {
		add("renew_at (SWC_RENEW_AT) %g must be a fraction of the certificate's lifetime between 0 and 1", c.RenewAt)
	}
	if c.DrainTimeout < 0 {
		add("drain_timeout (SWC_DRAIN_TIMEOUT) must not be negative")
	}
	if c.HandoverTimeout < 0 {
		add("handover_timeout (SWC_HANDOVER_TIMEOUT) must not be negative")
	}
	if _, err := c.Allow.Policy(); err != nil {
		var entries interface{ Unwrap() []error }
		switch {
		case errors.Is(err, policy.ErrEmpty):
			add(`allow (SWC_ALLOW) is set but empty: list the allowed targets, write "none" to refuse every target, or unset it to allow every target`)
		case errors.As(err, &entries):
			for _, e := range entries.Unwrap() {
				add("allow (SWC_ALLOW) %v", e)
			}
		default:
			add("allow (SWC_ALLOW) %v", err)
		}
	}
	if c.MetricsAddr != "" {
		if _, port, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			add("metrics_addr (SWC_METRICS_ADDR) %q is not host:port, e.g. 127.0.0.1:9091", c.MetricsAddr)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			add("metrics_addr (SWC_METRICS_ADDR) %q has port %q outside 0-65535", c.MetricsAddr, port)
		}
	}
	if err := debugserver.CheckAddr(c.PprofAddr); err != nil {
		add("pprof_addr (SWC_PPROF_ADDR) %v", err)
	}
	if c.RetryMin > c.RetryMax {
		add("retry_min %s is larger than retry_max %s", time.Duration(c.RetryMin), time.Duration(c.RetryMax))
	}
	return errors.Join(errs...)
}
