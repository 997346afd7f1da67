package e2e

import (
	"crypto/x509"
	"strconv"
	"testing"

	"github.com/socket-warp/socket-warp/shared/tlsutil"
)

func itoa(i int) string { return strconv.Itoa(i) }

func mustPool(t *testing.T, path string) *x509.CertPool {
	t.Helper()
	p, err := tlsutil.LoadCertPool(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
