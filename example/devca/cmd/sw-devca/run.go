package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	stdlog "log"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sync/errgroup"

	"github.com/socket-warp/socket-warp/example/devca"
	"github.com/socket-warp/socket-warp/shared/logging"
	"github.com/socket-warp/socket-warp/shared/pki"
)

// Environment variables read by the command.
const (
	envState      = "SW_DEVCA_STATE"
	envAdminURL   = "SW_DEVCA_ADMIN_URL"
	envAdminToken = "SW_DEVCA_ADMIN_TOKEN"
)

const (
	defaultAddr      = "127.0.0.1:8443"
	defaultAdminAddr = "127.0.0.1:8444"
	defaultAdminURL  = "http://" + defaultAdminAddr
	shutdownTimeout  = 5 * time.Second
)

const usage = `sw-devca: socket-warp's development SCEP certificate authority

usage:
  sw-devca init   --state FILE [--dns-name NAME]... [--ip IP]... [--out DIR]
                  [--cn NAME] [--client-cert-validity 8760h] [--ca-key-bits 3072]
  sw-devca bootstrap --state FILE [--out DIR] [init's flags]
                  [--client UID --enroll-file FILE --scep-url URL] [--available-period 24h]
  sw-devca serve  --state FILE [--addr 127.0.0.1:8443] [--admin-addr 127.0.0.1:8444]
                  [--tls] [--admin-token TOKEN] [--log-level info] [--log-format console]
  sw-devca client add UID [--attr KEY=VALUE]... [--attributes JSON]
  sw-devca secret create UID [--pending-period 1h] [--available-period 24h]
  sw-devca revoke UID

init creates the CA and writes ca.crt, server.crt and server.key (0600) for
sw-listener into --out (default: the state file's directory).

bootstrap does, non-interactively and safely again and again, what a fresh
deployment needs before serve starts: init when the state file does not exist,
the listener's files in --out (rewritten if they belong to another CA), and
with --client a registered client that, while it has no certificate, gets a
new one-time secret written with the CA fingerprint and --scep-url to
--enroll-file (0600) as sw-connector settings keys. The secret is never logged.
It opens the state file itself: run it before serve, not beside it.

serve owns the state file. The public handler (SCEP at /scep, /api/cert/verify)
listens on --addr, plain HTTP unless --tls (then with the server certificate);
the admin API listens on --admin-addr (loopback by default; "" disables it).

client add, secret create and revoke talk to a running serve's admin API:
  --admin-url URL      default $SW_DEVCA_ADMIN_URL or http://127.0.0.1:8444
  --admin-token TOKEN  default $SW_DEVCA_ADMIN_TOKEN (prefer the variable: flags
                       show up in the process list)
secret create prints only the secret on stdout.

environment: SW_DEVCA_STATE (--state), SW_DEVCA_ADMIN_URL, SW_DEVCA_ADMIN_TOKEN
`

// errUsage makes run exit with status 2; its message has been printed.
var errUsage = errors.New("usage")

// cliEnv is what the command needs from the process; tests replace it.
type cliEnv struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	// logger, if set, replaces the logger built from the flags.
	logger *zap.Logger
	// onListen, if set, is told the addresses serve listens on (admin is
	// nil when disabled).
	onListen func(public, admin net.Addr)
}

func run(ctx context.Context, args []string, env *cliEnv) int {
	err := dispatch(ctx, args, env)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(env.stderr, "sw-devca: %v\n", err)
		return 1
	}
}

func dispatch(ctx context.Context, args []string, env *cliEnv) error {
	if len(args) == 0 {
		fmt.Fprint(env.stderr, usage)
		return errUsage
	}
	cmd, rest := args[0], args[1:]
	sub := func(want string) ([]string, error) {
		if len(rest) > 0 && isHelp(rest[0]) {
			fmt.Fprint(env.stdout, usage)
			return nil, flag.ErrHelp
		}
		if len(rest) == 0 || rest[0] != want {
			fmt.Fprintf(env.stderr, "sw-devca: %s needs the subcommand %q\n\n%s", cmd, want, usage)
			return nil, errUsage
		}
		return rest[1:], nil
	}
	switch cmd {
	case "init":
		return cmdInit(rest, env)
	case "bootstrap":
		return cmdBootstrap(rest, env)
	case "serve":
		return cmdServe(ctx, rest, env)
	case "client":
		a, err := sub("add")
		if err != nil {
			return err
		}
		return cmdClientAdd(ctx, a, env)
	case "secret":
		a, err := sub("create")
		if err != nil {
			return err
		}
		return cmdSecretCreate(ctx, a, env)
	case "revoke":
		return cmdRevoke(ctx, rest, env)
	default:
		if isHelp(cmd) {
			fmt.Fprint(env.stdout, usage)
			return nil
		}
		fmt.Fprintf(env.stderr, "sw-devca: unknown command %q\n\n%s", cmd, usage)
		return errUsage
	}
}

func isHelp(arg string) bool {
	switch arg {
	case "help", "-h", "-help", "--help":
		return true
	}
	return false
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// parseFlags parses flags placed before, between or after the positional
// arguments and returns the positional ones.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage // the flag package printed the problem
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func newFlagSet(name string, env *cliEnv) *flag.FlagSet {
	fs := flag.NewFlagSet("sw-devca "+name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	return fs
}

func usageError(env *cliEnv, format string, a ...any) error {
	fmt.Fprintf(env.stderr, "sw-devca: "+format+"\n", a...)
	return errUsage
}

// needState checks what init, bootstrap and serve all require: no
// positional arguments, and --state.
func needState(env *cliEnv, cmd string, pos []string, state string) error {
	if len(pos) != 0 {
		return usageError(env, "%s takes no arguments, got %q", cmd, pos)
	}
	if state == "" {
		return usageError(env, "%s needs --state FILE", cmd)
	}
	return nil
}

// outDir is where init and bootstrap write the listener's files: --out, or
// else beside the state file.
func outDir(out, state string) string {
	if out == "" {
		return filepath.Dir(state)
	}
	return out
}

func newLogger(env *cliEnv, level, format string) (*zap.Logger, error) {
	if env.logger != nil {
		return env.logger, nil
	}
	return logging.NewTo(env.stderr, level, format)
}

// ---- init ----

// initFlags are the flags of init and bootstrap that shape a new CA.
type initFlags struct {
	cn             *string
	clientValidity *time.Duration
	keyBits        *int
	dnsNames, ips  stringList
}

func addInitFlags(fs *flag.FlagSet) *initFlags {
	f := &initFlags{
		cn:             fs.String("cn", devca.DefaultCommonName, "common `name` of the CA"),
		clientValidity: fs.Duration("client-cert-validity", devca.DefaultClientCertValidity, "validity of client certificates"),
		keyBits:        fs.Int("ca-key-bits", devca.DefaultCAKeyBits, "RSA key size of the CA: 2048 or 3072"),
	}
	fs.Var(&f.dnsNames, "dns-name", "DNS `name` of the listener certificate (repeatable; default hostname.example.com and localhost)")
	fs.Var(&f.ips, "ip", "IP `address` of the listener certificate (repeatable; default 127.0.0.1)")
	return f
}

func (f *initFlags) options(env *cliEnv) (devca.InitOptions, error) {
	opts := devca.InitOptions{DNSNames: f.dnsNames, CommonName: *f.cn, CertValidity: *f.clientValidity, CAKeyBits: *f.keyBits}
	for _, s := range f.ips {
		ip := net.ParseIP(s)
		if ip == nil {
			return opts, usageError(env, "--ip %q is not an IP address", s)
		}
		opts.IPs = append(opts.IPs, ip)
	}
	return opts, nil
}

// listenerFile is one of the files init and bootstrap write for sw-listener.
type listenerFile struct {
	name string
	data []byte
	mode os.FileMode
}

func listenerFiles(ca *devca.CA) []listenerFile {
	certPEM, keyPEM := ca.ServerCertPEM()
	return []listenerFile{
		{"ca.crt", ca.CACertPEM(), 0o644},
		{"server.crt", certPEM, 0o644},
		{"server.key", keyPEM, 0o600},
	}
}

func cmdInit(args []string, env *cliEnv) error {
	fs := newFlagSet("init", env)
	state := fs.String("state", env.getenv(envState), "state `file` to create (env "+envState+")")
	out := fs.String("out", "", "`directory` for ca.crt, server.crt and server.key (default: the state file's directory)")
	initF := addInitFlags(fs)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := needState(env, "init", pos, *state); err != nil {
		return err
	}
	opts, err := initF.options(env)
	if err != nil {
		return err
	}
	dir := outDir(*out, *state)
	for _, name := range []string{"ca.crt", "server.crt", "server.key"} {
		p := filepath.Join(dir, name)
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s already exists; move it away or choose another --out", p)
		}
	}

	log, err := newLogger(env, "info", "console")
	if err != nil {
		return err
	}
	ca, err := devca.Init(*state, opts, devca.WithLogger(log))
	if err != nil {
		return err
	}
	defer ca.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range listenerFiles(ca) {
		if err := writeNewFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	log.Info("listener files written", zap.String("ca_cert", filepath.Join(dir, "ca.crt")),
		zap.String("server_cert", filepath.Join(dir, "server.crt")), zap.String("server_key", filepath.Join(dir, "server.key")))
	return nil
}

func writeNewFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// ---- bootstrap ----

// enrollment is what bootstrap writes to --enroll-file: the keys of
// sw-connector's settings.json that let it enroll itself on first start.
type enrollment struct {
	SCEPURL       string `json:"scep_url"`
	UID           string `json:"uid"`
	EnrollSecret  string `json:"enroll_secret"`
	CAFingerprint string `json:"ca_fingerprint"`
}

// cmdBootstrap prepares everything a deployment needs before serve starts,
// without anybody typing a secret: the CA (created if the state file does
// not exist), the listener's files, and optionally a registered client with
// a fresh one-time secret in a file for its connector. It works on the state
// file directly, so serve must not be running; it is safe to repeat, which
// is what a container started again needs.
func cmdBootstrap(args []string, env *cliEnv) error {
	flags := newFlagSet("bootstrap", env)
	state := flags.String("state", env.getenv(envState), "state `file`, created when it does not exist (env "+envState+")")
	out := flags.String("out", "", "`directory` for ca.crt, server.crt and server.key (default: the state file's directory)")
	initF := addInitFlags(flags)
	client := flags.String("client", "", "register this `UID` and give it a one-time secret while it has no certificate")
	enrollFile := flags.String("enroll-file", "", "with --client: write its scep_url, uid, enroll_secret and ca_fingerprint to this `file` (0600)")
	scepURL := flags.String("scep-url", "", "with --client: the SCEP `URL` the connector enrolls at, e.g. http://ca:8443/scep")
	available := flags.Duration("available-period", devca.DefaultSecretLifetime, "how long the one-time secret can be used")
	pos, err := parseFlags(flags, args)
	if err != nil {
		return err
	}
	if err := needState(env, "bootstrap", pos, *state); err != nil {
		return err
	}
	if (*client == "") != (*enrollFile == "") || (*client == "") != (*scepURL == "") {
		return usageError(env, "bootstrap needs --client, --enroll-file and --scep-url together")
	}
	if *client != "" {
		if err := devca.ValidateUID(*client); err != nil {
			return usageError(env, "--client: %v", err)
		}
		if u, err := url.Parse(*scepURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return usageError(env, "--scep-url %q is not an http(s) URL", *scepURL)
		}
	}
	if *available <= 0 {
		return usageError(env, "--available-period must be positive")
	}
	opts, err := initF.options(env)
	if err != nil {
		return err
	}
	dir := outDir(*out, *state)

	log, err := newLogger(env, "info", "console")
	if err != nil {
		return err
	}
	ca, err := devca.Open(*state, devca.WithLogger(log))
	if errors.Is(err, fs.ErrNotExist) {
		ca, err = devca.Init(*state, opts, devca.WithLogger(log))
	}
	if err != nil {
		return err
	}
	defer ca.Close()

	// The listener's files follow the state: written when missing, replaced
	// when they belong to another CA (a volume kept from an earlier one).
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range listenerFiles(ca) {
		p := filepath.Join(dir, f.name)
		old, err := os.ReadFile(p)
		if err == nil && bytes.Equal(old, f.data) {
			continue
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("listener file %s: %w", p, err)
		}
		if err := pki.WriteFileAtomic(p, f.data, f.mode); err != nil {
			return fmt.Errorf("listener file %s: %w", p, err)
		}
		log.Info("listener file written", zap.String("file", p))
	}
	if *client == "" {
		return nil
	}
	return bootstrapClient(ca, log, *client, *enrollFile, *scepURL, *available)
}

// bootstrapClient registers uid if needed and, while it has no certificate,
// replaces whatever secret it had with a fresh one written to enrollFile.
// A client that has a certificate is left alone, and so is its file.
func bootstrapClient(ca *devca.CA, log *zap.Logger, uid, enrollFile, scepURL string, available time.Duration) error {
	if err := ca.AddClient(uid, nil); err != nil && !errors.Is(err, devca.ErrClientExists) {
		return err
	}
	info, err := ca.Client(uid)
	if err != nil {
		return err
	}
	if info.Status != devca.StatusInactive && info.Status != devca.StatusIssuable {
		log.Info("client has a certificate; enrollment file left as it is",
			zap.String("uid", uid), zap.String("status", info.Status), zap.String("file", enrollFile))
		return nil
	}
	sec, err := ca.CreateSecretWith(uid, devca.SecretOptions{AvailablePeriod: available, Replace: true})
	if err != nil {
		return err
	}
	data, err := json.MarshalIndent(enrollment{
		SCEPURL: scepURL, UID: uid, EnrollSecret: sec.Secret,
		CAFingerprint: fmt.Sprintf("%x", sha256.Sum256(ca.CACert().Raw)),
	}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(enrollFile), 0o700); err != nil {
		return fmt.Errorf("enrollment file %s: %w", enrollFile, err)
	}
	if err := pki.WriteFileAtomic(enrollFile, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("enrollment file %s: %w", enrollFile, err)
	}
	log.Info("enrollment file written", zap.String("uid", uid), zap.String("file", enrollFile),
		zap.Time("secret_expires_at", sec.ExpiresAt))
	return nil
}

// ---- serve ----

func cmdServe(ctx context.Context, args []string, env *cliEnv) error {
	fs := newFlagSet("serve", env)
	state := fs.String("state", env.getenv(envState), "state `file` (env "+envState+")")
	addr := fs.String("addr", defaultAddr, "`address` of the public SCEP and verify endpoints")
	adminAddr := fs.String("admin-addr", defaultAdminAddr, "`address` of the admin API (\"\" disables it)")
	useTLS := fs.Bool("tls", false, "serve the public endpoints over TLS with the server certificate")
	token := fs.String("admin-token", "", "bearer `token` the admin API requires (env "+envAdminToken+")")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "console", "console or json")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := needState(env, "serve", pos, *state); err != nil {
		return err
	}
	if *token == "" {
		*token = env.getenv(envAdminToken)
	}
	log, err := newLogger(env, *logLevel, *logFormat)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()

	ca, err := devca.Open(*state, devca.WithLogger(log))
	if err != nil {
		return err
	}
	defer ca.Close()

	pubLn, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	scheme := "http"
	if *useTLS {
		certPEM, keyPEM := ca.ServerCertPEM()
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			_ = pubLn.Close()
			return fmt.Errorf("server certificate: %w", err)
		}
		pubLn = tls.NewListener(pubLn, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
		scheme = "https"
	}
	servers := []*http.Server{newServer(ca.Handler(), log.Named("public"))}
	listeners := []net.Listener{pubLn}
	var adminNetAddr net.Addr
	if *adminAddr != "" {
		adminLn, err := net.Listen("tcp", *adminAddr)
		if err != nil {
			_ = pubLn.Close()
			return err
		}
		adminNetAddr = adminLn.Addr()
		if !isLoopback(adminLn.Addr()) && *token == "" {
			log.Warn("the admin API is reachable beyond loopback without a token; set --admin-token or "+envAdminToken,
				zap.Stringer("admin_addr", adminLn.Addr()))
		}
		servers = append(servers, newServer(devca.WithAdminToken(*token, ca.AdminHandler()), log.Named("admin")))
		listeners = append(listeners, adminLn)
	}

	fields := []zap.Field{zap.String("public_url", scheme+"://"+pubLn.Addr().String()+"/scep"),
		zap.Bool("admin_token", *token != "")}
	if adminNetAddr != nil {
		fields = append(fields, zap.String("admin_url", "http://"+adminNetAddr.String()))
	}
	log.Info("serving", fields...)
	if env.onListen != nil {
		env.onListen(pubLn.Addr(), adminNetAddr)
	}

	g, gctx := errgroup.WithContext(ctx)
	for i, srv := range servers {
		ln := listeners[i]
		g.Go(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		log.Info("closing")
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		var errs []error
		for _, srv := range servers {
			if err := srv.Shutdown(sctx); err != nil {
				errs = append(errs, err)
				_ = srv.Close()
			}
		}
		return errors.Join(errs...)
	})
	err = g.Wait()
	log.Info("closed")
	return err
}

// newStdLog routes net/http's own errors (TLS handshakes, bad requests) to
// log at warn level.
func newStdLog(log *zap.Logger) *stdlog.Logger {
	l, err := zap.NewStdLogAt(log, zapcore.WarnLevel)
	if err != nil { // only for an invalid level
		return zap.NewStdLog(log)
	}
	return l
}

func newServer(h http.Handler, log *zap.Logger) *http.Server {
	return &http.Server{
		Handler:           accessLog(h, log),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          newStdLog(log),
	}
}

// accessLog logs each request: the path and the SCEP operation, never the
// query (GET PKIOperation carries the request there) nor any header.
func accessLog(next http.Handler, log *zap.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		fields := []zap.Field{
			zap.String("method", r.Method),
			zap.String("path", r.URL.Path),
			zap.Int("status", rec.status),
			zap.Duration("duration", time.Since(start)),
			zap.String("remote", r.RemoteAddr),
		}
		if op := r.URL.Query().Get("operation"); op != "" {
			fields = append(fields, zap.String("operation", op))
		}
		log.Info("http request", fields...)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func isLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// ---- admin API clients ----

// adminFlags adds --admin-url and --admin-token to fs.
func adminFlags(fs *flag.FlagSet, env *cliEnv) (url, token *string) {
	def := env.getenv(envAdminURL)
	if def == "" {
		def = defaultAdminURL
	}
	url = fs.String("admin-url", def, "`URL` of a running serve's admin API (env "+envAdminURL+")")
	token = fs.String("admin-token", "", "bearer `token` for the admin API (env "+envAdminToken+")")
	return url, token
}

func oneUID(env *cliEnv, cmd string, pos []string) (string, error) {
	if len(pos) != 1 {
		return "", usageError(env, "%s needs exactly one UID, got %q", cmd, pos)
	}
	if err := devca.ValidateUID(pos[0]); err != nil {
		return "", usageError(env, "%v", err)
	}
	return pos[0], nil
}

func cmdClientAdd(ctx context.Context, args []string, env *cliEnv) error {
	fs := newFlagSet("client add", env)
	adminURL, token := adminFlags(fs, env)
	var attrList stringList
	fs.Var(&attrList, "attr", "attribute `KEY=VALUE` (string value; repeatable)")
	attrJSON := fs.String("attributes", "", "attributes as a JSON `object`")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	uid, err := oneUID(env, "client add", pos)
	if err != nil {
		return err
	}
	attrs := map[string]any{}
	if *attrJSON != "" {
		if err := json.Unmarshal([]byte(*attrJSON), &attrs); err != nil {
			return usageError(env, "--attributes is not a JSON object: %v", err)
		}
	}
	for _, kv := range attrList {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return usageError(env, "--attr %q is not KEY=VALUE", kv)
		}
		attrs[k] = v
	}
	return adminCall(ctx, env, *adminURL, *token, http.MethodPost, "/admin/api/client/add",
		devca.AddClientRequest{UID: uid, Attributes: attrs}, http.StatusOK, nil)
}

func cmdSecretCreate(ctx context.Context, args []string, env *cliEnv) error {
	fs := newFlagSet("secret create", env)
	adminURL, token := adminFlags(fs, env)
	pending := fs.Duration("pending-period", time.Hour,
		"for an update secret: how long the old certificate keeps working after the renewal")
	available := fs.Duration("available-period", devca.DefaultSecretLifetime, "how long the secret can be used")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	uid, err := oneUID(env, "secret create", pos)
	if err != nil {
		return err
	}
	if *pending < 0 || *available <= 0 {
		return usageError(env, "--pending-period may not be negative and --available-period must be positive")
	}
	var resp devca.CreateSecretResponse
	if err := adminCall(ctx, env, *adminURL, *token, http.MethodPost, "/admin/api/secret/create",
		devca.CreateSecretRequest{Target: uid, AvailablePeriod: available.String(), PendingPeriod: pending.String()},
		http.StatusCreated, &resp); err != nil {
		return err
	}
	if resp.Secret == "" {
		return errors.New("the admin API returned no secret")
	}
	_, err = fmt.Fprintln(env.stdout, resp.Secret)
	return err
}

func cmdRevoke(ctx context.Context, args []string, env *cliEnv) error {
	fs := newFlagSet("revoke", env)
	adminURL, token := adminFlags(fs, env)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	uid, err := oneUID(env, "revoke", pos)
	if err != nil {
		return err
	}
	return adminCall(ctx, env, *adminURL, *token, http.MethodPost, "/admin/api/client/revoke",
		devca.RevokeClientRequest{UID: uid}, http.StatusOK, nil)
}

// adminCall sends one JSON request to the admin API and decodes the answer
// into out (if not nil).
func adminCall(ctx context.Context, env *cliEnv, baseURL, token, method, path string, body any, want int, out any) error {
	if token == "" {
		token = env.getenv(envAdminToken)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(baseURL, "/")+path, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("admin URL: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("admin API (is sw-devca serve running?): %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	if resp.StatusCode != want {
		var er devca.ErrorResponse
		if json.Unmarshal(data, &er) == nil && er.Message != "" {
			return fmt.Errorf("admin API %s: %s", resp.Status, er.Message)
		}
		return fmt.Errorf("admin API %s: %s", resp.Status, strings.TrimSpace(string(data)))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("admin API answer: %w", err)
		}
	}
	return nil
}
