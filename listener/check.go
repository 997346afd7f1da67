package listener

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"strings"

	"github.com/socket-warp/socket-warp/listener/auth"
	"github.com/socket-warp/socket-warp/shared/tlsutil"
)

// CheckConfig checks the files New would load (certificate, key, CA, API
// token file, stateless reset key) for sw-listener check-config, without
// binding a socket or opening the state file, which a running listener
// holds locked. cfg is
// what LoadConfig returned, even with an error: every file it names is
// checked all the same.
func CheckConfig(cfg Config) tlsutil.Findings {
	var f tlsutil.Findings
	if cfg.CertPath != "" && cfg.KeyPath != "" && cfg.CAPath != "" {
		f.Merge(tlsutil.CheckFiles(tlsutil.CheckOptions{
			CertPath: cfg.CertPath, KeyPath: cfg.KeyPath, CAPath: cfg.CAPath,
			CertSetting: "SWL_CERT_PATH", KeySetting: "SWL_KEY_PATH", CASetting: "SWL_CA_PATH",
			Usage: x509.ExtKeyUsageServerAuth,
		}))
		f.Merge(tlsutil.CheckServerNames("SWL_CERT_PATH", cfg.CertPath))
	}
	if _, err := cfg.apiToken(); err != nil {
		f.Problems = append(f.Problems, err.Error())
	}
	// A missing key is made at start; one New would refuse is a problem.
	if cfg.StatePath != "" {
		path := resetKeyPath(cfg.StatePath)
		_, perm, err := readResetKey(path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			f.Problems = append(f.Problems, err.Error())
		}
		if exposed(perm) {
			f.Warnings = append(f.Warnings, fmt.Sprintf("SWL_STATE_PATH: stateless reset key %s is open to group or others (mode %s): "+
				"whoever reads it can end the connections whose packets it sees; chmod 600 it", path, perm))
		}
	}
	checkSCEPURL(&f, cfg.SCEPURL)
	return f
}

// checkSCEPURL warns of the likeliest mistake with SWL_SCEP_URL: the SCEP
// endpoint connectors enroll at (…/scep) given instead of the server's base
// URL. The verify endpoint is then looked for under it, where the server
// answers 404, and every connector is refused.
func checkSCEPURL(f *tlsutil.Findings, raw string) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if raw == "" || err != nil || !strings.HasSuffix(strings.TrimRight(u.Path, "/"), "/scep") {
		return // unset, or Validate's to report
	}
	endpoint, err := auth.SCEPEndpoint(raw)
	if err != nil {
		return
	}
	ep, _ := url.Parse(endpoint) // made by SCEPEndpoint
	base := *u
	base.Path, base.RawPath = strings.TrimSuffix(strings.TrimRight(u.Path, "/"), "/scep"), ""
	f.Warnings = append(f.Warnings, fmt.Sprintf("SWL_SCEP_URL=%s ends in /scep, the endpoint connectors enroll at: "+
		"the listener asks %s, which a SCEP server answers with 404, refusing every connector; give the server's base URL, e.g. %s",
		u.Redacted(), ep.Redacted(), base.Redacted()))
}
