package tlsutil

import (
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// ExpiryWarning is how close to its end a certificate draws a warning from
// CheckFiles.
const ExpiryWarning = 14 * 24 * time.Hour

// CheckOptions name the files CheckFiles checks and the settings they come
// from, so that every finding says which setting to fix.
type CheckOptions struct {
	CertPath, KeyPath, CAPath          string
	CertSetting, KeySetting, CASetting string // e.g. "SWL_CERT_PATH"
	// Usage is the extended key usage the certificate needs: ServerAuth
	// for the listener, ClientAuth for the connector. ClientAuth must be
	// named, as the listener requires (neither no extended key usage nor
	// anyExtendedKeyUsage will do).
	Usage x509.ExtKeyUsage
	Now   time.Time // zero: time.Now()
}

// Findings are the results of a check, one readable line each.
type Findings struct {
	Problems []string // the daemon would not start, or peers would refuse it
	Warnings []string // works now, needs attention soon
	Notes    []string // facts the operator compares with the peer's settings
}

// OK reports whether nothing is a problem.
func (f *Findings) OK() bool { return len(f.Problems) == 0 }

func (f *Findings) problem(format string, args ...any) {
	f.Problems = append(f.Problems, fmt.Sprintf(format, args...))
}

func (f *Findings) warn(format string, args ...any) {
	f.Warnings = append(f.Warnings, fmt.Sprintf(format, args...))
}

func (f *Findings) note(format string, args ...any) {
	f.Notes = append(f.Notes, fmt.Sprintf(format, args...))
}

// Merge appends o's findings to f.
func (f *Findings) Merge(o Findings) {
	f.Problems = append(f.Problems, o.Problems...)
	f.Warnings = append(f.Warnings, o.Warnings...)
	f.Notes = append(f.Notes, o.Notes...)
}

// CheckFiles checks a certificate, its key and a CA file the way a peer will
// judge them, and more strictly than loading does: files readable and
// parsable, the key matching the certificate, the validity period, the
// extended key usage, and a chain from the certificate (plus the
// intermediates in its file) to the CA file or a system root. Each problem
// is one line naming the setting and the file. It reads the files and
// nothing else.
func CheckFiles(o CheckOptions) Findings {
	var f Findings
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}

	var roots *x509.CertPool
	if data, err := readCAFile(o.CAPath); err != nil {
		f.problem("%s: %v", o.CASetting, err)
	} else if cas, err := parseCACerts(o.CAPath, data); err != nil {
		f.problem("%s: %v", o.CASetting, err)
	} else {
		roots = x509.NewCertPool()
		for _, ca := range cas {
			roots.AddCert(ca)
			checkValidity(&f, fmt.Sprintf("%s: CA certificate %s (%s)", o.CASetting, o.CAPath, ca.Subject), ca, now)
		}
	}

	cert, err := LoadKeyPair(o.CertPath, o.KeyPath)
	if err != nil {
		setting := o.CertSetting
		if strings.HasPrefix(err.Error(), "private key ") {
			setting = o.KeySetting
		} else if strings.Contains(err.Error(), " with key ") {
			setting = o.CertSetting + ", " + o.KeySetting
		}
		f.problem("%s: %v", setting, err)
		return f
	}
	leaf := cert.Leaf
	what := fmt.Sprintf("%s: certificate %s (%s)", o.CertSetting, o.CertPath, leaf.Subject)
	checkValidity(&f, what, leaf, now)

	switch {
	case o.Usage == x509.ExtKeyUsageClientAuth:
		// The listener's rule, stricter than x509's.
		if err := checkClientAuth(leaf); err != nil {
			f.problem("%s: %v", what, err)
		}
	case len(leaf.ExtKeyUsage) > 0 && !slices.Contains(leaf.ExtKeyUsage, o.Usage) &&
		!slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny):
		f.problem("%s: extended key usage %s is missing (has %s)", what, usageName(o.Usage), usageNames(leaf.ExtKeyUsage))
	}

	if roots != nil {
		inter := x509.NewCertPool()
		for _, der := range cert.Certificate[1:] {
			if c, err := x509.ParseCertificate(der); err == nil {
				inter.AddCert(c)
			}
		}
		// The validity period has its own finding; the chain is judged
		// at a moment the certificate is valid, so it is not reported twice.
		at := now
		if at.Before(leaf.NotBefore) {
			at = leaf.NotBefore
		} else if at.After(leaf.NotAfter) {
			at = leaf.NotAfter
		}
		opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: at,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
		if _, err := leaf.Verify(opts); err != nil {
			opts.Roots = nil // the system roots: a public CA is fine too
			if _, sysErr := leaf.Verify(opts); sysErr != nil {
				f.problem("%s: does not chain to the CA in %s (%s) nor to a system root: %v",
					what, o.CASetting, o.CAPath, chainReason(err))
			}
		}
	}
	return f
}

// CheckServerNames lists the names a server certificate is valid for, and
// is a problem when it has none: TLS clients ignore the CN.
func CheckServerNames(setting, certPath string) Findings {
	var f Findings
	c, err := loadLeaf(certPath)
	if err != nil {
		return f // CheckFiles reports it
	}
	var names []string
	names = append(names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		f.problem("%s: certificate %s has no DNS or IP subject alternative name: connectors cannot verify it "+
			"(the CN %q is not checked)", setting, certPath, c.Subject.CommonName)
		return f
	}
	f.note("%s: certificate %s is valid for %s: a connector's server_name must be one of them",
		setting, certPath, strings.Join(names, ", "))
	return f
}

func loadLeaf(certPath string) (*x509.Certificate, error) {
	data, err := readCAFile(certPath)
	if err != nil {
		return nil, err
	}
	certs, err := parseCACerts(certPath, data)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

func checkValidity(f *Findings, what string, c *x509.Certificate, now time.Time) {
	const day = "2006-01-02 15:04 MST"
	switch {
	case now.Before(c.NotBefore):
		f.problem("%s: not valid before %s", what, c.NotBefore.UTC().Format(day))
	case now.After(c.NotAfter):
		f.problem("%s: expired on %s", what, c.NotAfter.UTC().Format(day))
	case c.NotAfter.Sub(now) < ExpiryWarning:
		f.warn("%s: expires on %s, in %d days", what, c.NotAfter.UTC().Format(day), int(math.Ceil(c.NotAfter.Sub(now).Hours()/24)))
	}
}

// chainReason words a verification error without the parts that repeat
// what the finding already says.
func chainReason(err error) string {
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) {
		if unknown.Cert != nil {
			return fmt.Sprintf("issued by %s, which is not in it", unknown.Cert.Issuer)
		}
		return "issued by an unknown authority"
	}
	return err.Error()
}

func usageName(u x509.ExtKeyUsage) string {
	switch u {
	case x509.ExtKeyUsageServerAuth:
		return "serverAuth"
	case x509.ExtKeyUsageClientAuth:
		return "clientAuth"
	case x509.ExtKeyUsageCodeSigning:
		return "codeSigning"
	case x509.ExtKeyUsageEmailProtection:
		return "emailProtection"
	case x509.ExtKeyUsageAny:
		return "anyExtendedKeyUsage"
	default:
		return fmt.Sprintf("usage %d", u)
	}
}

func usageNames(us []x509.ExtKeyUsage) string {
	names := make([]string, len(us))
	for i, u := range us {
		names[i] = usageName(u)
	}
	return strings.Join(names, ", ")
}
