package e2e

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strconv"
)

func itoa(i int) string { return strconv.Itoa(i) }

func parseFirstPEM(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	return x509.ParseCertificate(block.Bytes)
}
