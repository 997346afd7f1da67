package connector

import (
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/socket-warp/socket-warp/shared/tlsutil"
)

// CheckConfig checks the files New would load for sw-connector
// check-config, and dials nothing. When the connector is to enroll itself
// (no certificate yet, and enroll_secret, scep_url and uid set) the missing
// files are expected: it says so and checks what enrollment needs instead.
// cfg is what LoadConfig returned, even with an error.
func CheckConfig(cfg Config) tlsutil.Findings {
	var f tlsutil.Findings
	if cfg.ClientCertPath == "" || cfg.ClientKeyPath == "" || cfg.CACertPath == "" {
		return f // LoadConfig has said which one is not set
	}
	if cfg.RenewSecretFile != "" {
		// Never the secret itself: the errors name the file only.
		if _, err := readSecretFile(cfg.RenewSecretFile); errors.Is(err, errNoSecret) {
			f.Warnings = append(f.Warnings, err.Error()+": renewal waits until the file holds an update secret")
		} else if err != nil {
			f.Problems = append(f.Problems, err.Error())
		}
	}
	pending, err := enrollmentPending(cfg)
	if err != nil {
		f.Problems = append(f.Problems, err.Error())
		return f
	}
	if pending {
		if err := checkEnrollTrust(cfg); err != nil {
			f.Problems = append(f.Problems, err.Error())
		}
		if ok, _ := exists(cfg.CACertPath); ok {
			if _, err := tlsutil.LoadCertPool(cfg.CACertPath); err != nil {
				f.Problems = append(f.Problems, "ca_cert_path (SWC_CA_CERT_PATH): "+err.Error())
			}
		}
		f.Notes = append(f.Notes, fmt.Sprintf("client_cert_path %s does not exist yet: on start the connector enrolls as uid %q at %s "+
			"and writes it, with client_key_path %s", cfg.ClientCertPath, cfg.UID, cfg.SCEPURL, cfg.ClientKeyPath))
		return f
	}
	f.Merge(tlsutil.CheckFiles(tlsutil.CheckOptions{
		CertPath: cfg.ClientCertPath, KeyPath: cfg.ClientKeyPath, CAPath: cfg.CACertPath,
		CertSetting: "client_cert_path (SWC_CLIENT_CERT_PATH)", KeySetting: "client_key_path (SWC_CLIENT_KEY_PATH)",
		CASetting: "ca_cert_path (SWC_CA_CERT_PATH)",
		Usage:     x509.ExtKeyUsageClientAuth,
	}))
	if certs, err := tlsutil.LoadKeyPair(cfg.ClientCertPath, cfg.ClientKeyPath); err == nil {
		cn := certs.Leaf.Subject.CommonName
		if cfg.UID != "" && cn != cfg.UID {
			f.Warnings = append(f.Warnings, fmt.Sprintf("client_cert_path %s is for UID %q (its CN), but uid (SWC_UID) is %q: the listener knows it as %q",
				cfg.ClientCertPath, cn, cfg.UID, cn))
		}
		f.Notes = append(f.Notes, fmt.Sprintf("connects as UID %q (the certificate's CN)", cn))
	}
	if cfg.ServerName != "" {
		// The listener's certificate is not here to compare with.
		f.Notes = append(f.Notes, fmt.Sprintf("server_name (SWC_SERVER_NAME) %q must be one of the names of the listener's certificate: "+
			"sw-listener check-config lists them", cfg.ServerName))
	}
	return f
}
