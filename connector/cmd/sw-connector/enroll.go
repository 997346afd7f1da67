package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/socket-warp/socket-warp/connector/enroll"
	"github.com/socket-warp/socket-warp/shared/logging"
)

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// enrollCommand is `sw-connector enroll`: one enrollment, files written,
// exit. The daemon can also enroll by itself (SWC_UID, SWC_ENROLL_SECRET,
// SWC_SCEP_URL); this is for operators who prefer to do it by hand.
func enrollCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sw-connector enroll", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		o        enroll.Options
		dnsNames listFlag
		out      = fs.String("out", ".", "directory for key.pem (0600), cert.pem and ca.crt")
		level    = fs.String("log-level", "info", "debug, info, warn or error")
	)
	fs.StringVar(&o.URL, "scep-url", "", "SCEP endpoint, e.g. http://ca.example:3000/scep (required)")
	fs.StringVar(&o.UID, "uid", "", "the connector's UID: the certificate's CN (required)")
	fs.StringVar(&o.Secret, "secret", "", "one-time enrollment secret (required; or SWC_ENROLL_SECRET, which keeps it out of ps)")
	fs.Var(&dnsNames, "dns-name", "DNS name to put in the certificate (repeatable)")
	fs.StringVar(&o.CAFingerprint, "ca-fingerprint", "", "SHA-256 fingerprint (hex) the SCEP CA certificate must have")
	fs.IntVar(&o.KeyBits, "key-bits", enroll.DefaultKeyBits, "RSA key size")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sw-connector enroll --scep-url URL --uid UID --secret SECRET [--out DIR] [--dns-name NAME]... [--ca-fingerprint SHA256]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0 // asked for: the usage is printed
		}
		return 2
	}
	if o.Secret == "" {
		o.Secret = os.Getenv("SWC_ENROLL_SECRET")
	}
	var missing []string
	for _, f := range []struct{ name, v string }{{"--scep-url", o.URL}, {"--uid", o.UID}, {"--secret", o.Secret}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		fmt.Fprintf(stderr, "sw-connector enroll: missing %s\n", strings.Join(missing, ", "))
		fs.Usage()
		return 2
	}
	o.DNSNames = dnsNames
	log, err := logging.New(*level, "console")
	if err != nil {
		fmt.Fprintf(stderr, "sw-connector enroll: %v\n", err)
		return 2
	}
	defer log.Sync()
	o.Log = log

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := enroll.Enroll(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "sw-connector enroll: %v\n", err)
		return 1
	}
	keyPath, certPath, caPath, err := res.WriteFiles(*out)
	if err != nil {
		fmt.Fprintf(stderr, "sw-connector enroll: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "enrolled %s: certificate %s (serial %s, valid until %s)\n", o.UID, certPath,
		res.Cert.SerialNumber.Text(16), res.Cert.NotAfter.Format("2006-01-02"))
	fmt.Fprintf(stdout, "key %s, CA %s\n", keyPath, caPath)
	if o.CAFingerprint == "" && len(res.CA) > 0 {
		sum := sha256.Sum256(res.CA[0].Raw)
		fmt.Fprintf(stderr, "warning: the SCEP CA was not pinned (--ca-fingerprint); its SHA-256 is %s: "+
			"check it against your CA before trusting %s\n", hex.EncodeToString(sum[:]), caPath)
	}
	fmt.Fprintf(stdout, "settings.json: \"client_cert_path\": %q, \"client_key_path\": %q, \"ca_cert_path\": %q\n", certPath, keyPath, caPath)
	return 0
}
