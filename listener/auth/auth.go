// Package auth turns a verified peer certificate into the connector's UID.
//
// The TLS stack has already checked the chain against the CA and the clientAuth
// usage before a Verifier runs; a Verifier decides who the peer is and may
// refuse it for reasons TLS cannot see (the SCEP registry, revocation).
package auth

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// ErrRefused wraps every refusal; its message is sent to the connector.
var ErrRefused = errors.New("refused")

// Verifier names the peer of a completed handshake.
type Verifier interface {
	Verify(ctx context.Context, state tls.ConnectionState) (uid string, err error)
}

// CommonName takes the UID from the leaf certificate's subject CN.
type CommonName struct{}

// MaxUIDLen bounds a UID; it travels in logs, metrics and API bodies.
const MaxUIDLen = 128

// Verify implements Verifier.
func (CommonName) Verify(_ context.Context, state tls.ConnectionState) (string, error) {
	if len(state.PeerCertificates) == 0 {
		return "", fmt.Errorf("%w: no client certificate", ErrRefused)
	}
	uid := state.PeerCertificates[0].Subject.CommonName
	if err := ValidUID(uid); err != nil {
		return "", fmt.Errorf("%w: certificate CN: %v", ErrRefused, err)
	}
	return uid, nil
}

// ValidUID accepts printable UIDs of a sane length; anything else would be
// awkward in logs and API bodies.
func ValidUID(uid string) error {
	if uid == "" {
		return errors.New("uid is empty")
	}
	if len(uid) > MaxUIDLen {
		return fmt.Errorf("uid is longer than %d bytes", MaxUIDLen)
	}
	if strings.IndexFunc(uid, func(r rune) bool { return !unicode.IsPrint(r) || r == unicode.ReplacementChar }) >= 0 {
		return fmt.Errorf("uid %q has a non-printable character", uid)
	}
	return nil
}
