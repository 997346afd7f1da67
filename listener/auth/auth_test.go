package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"strings"
	"testing"
)

func TestCommonName(t *testing.T) {
	state := func(cn string) tls.ConnectionState {
		return tls.ConnectionState{PeerCertificates: []*x509.Certificate{{Subject: pkix.Name{CommonName: cn}}}}
	}
	uid, err := CommonName{}.Verify(context.Background(), state("swc-1"))
	if err != nil || uid != "swc-1" {
		t.Fatalf("Verify = %q, %v", uid, err)
	}
	for _, cn := range []string{"", "   ", "\t", "bad\x00uid", strings.Repeat("x", MaxUIDLen+1)} {
		if _, err := (CommonName{}).Verify(context.Background(), state(cn)); !errors.Is(err, ErrRefused) || !errors.Is(err, ErrBadUID) {
			t.Errorf("CN %q: err = %v, want ErrRefused and ErrBadUID", cn, err)
		}
	}
	if _, err := (CommonName{}).Verify(context.Background(), tls.ConnectionState{}); !errors.Is(err, ErrRefused) {
		t.Errorf("no certificate: err = %v, want ErrRefused", err)
	}
}
