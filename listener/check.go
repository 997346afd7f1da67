package listener

import (
	"crypto/x509"
	"errors"
	"io/fs"

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
		if _, err := readResetKey(resetKeyPath(cfg.StatePath)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			f.Problems = append(f.Problems, err.Error())
		}
	}
	return f
}
