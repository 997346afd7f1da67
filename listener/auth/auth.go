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

// ErrUnavailable wraps, besides ErrRefused, a refusal for want of a verdict:
// the verification server was unreachable, too slow, failed (5xx) or gave an
// answer that could not be read, the SCEP verifier was closed, or no current
// CA signs the CRL in use (see CRL.Check). A refusal without it is
// definitive (the server, or the CRL, said no). A new connector is refused either way; a connected one
// whose Recheck fails only with ErrUnavailable may be kept.
var ErrUnavailable = errors.New("verification unavailable")

// ErrRevoked wraps, besides ErrRefused, a refusal because the CRL lists the
// certificate or one of its CAs.
var ErrRevoked = errors.New("revoked")

// Verifier names the peer of a completed handshake.
type Verifier interface {
	Verify(ctx context.Context, state tls.ConnectionState) (uid string, err error)
}

// Rechecker is a Verifier that can verify a connected peer again, bypassing
// any cache, for the periodic re-verification of live connections.
type Rechecker interface {
	Verifier
	Recheck(ctx context.Context, state tls.ConnectionState) (uid string, err error)
}

// Recheck verifies a connected peer again: with v's Recheck if it has one,
// else with its Verify.
func Recheck(ctx context.Context, v Verifier, state tls.ConnectionState) (string, error) {
	if r, ok := v.(Rechecker); ok {
		return r.Recheck(ctx, state)
	}
	return v.Verify(ctx, state)
}

// refusal is a Verifier's error. Its text is what the connector reads, so it
// carries no "refused:" prefix of its own (the close code says as much).
type refusal struct {
	msg         string
	unavailable bool
	cause       error
}

func (e *refusal) Error() string { return e.msg }

func (e *refusal) Unwrap() []error {
	errs := []error{ErrRefused}
	if e.unavailable {
		errs = append(errs, ErrUnavailable)
	}
	if e.cause != nil {
		errs = append(errs, e.cause)
	}
	return errs
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
		return "", fmt.Errorf("%w: %w: certificate CN: %v", ErrRefused, ErrBadUID, err)
	}
	return uid, nil
}

// ErrBadUID wraps, besides ErrRefused, a refusal because the certificate's
// CN is no UID ValidUID accepts.
var ErrBadUID = errors.New("unusable uid")

// ValidUID accepts printable UIDs of a sane length that are not blank;
// anything else would be awkward in logs and API bodies. It is the one rule
// for a UID: a connector is bound to none that the API would refuse.
func ValidUID(uid string) error {
	if uid == "" {
		return errors.New("uid is empty")
	}
	if strings.TrimSpace(uid) == "" {
		return fmt.Errorf("uid %q is blank", uid)
	}
	if len(uid) > MaxUIDLen {
		return fmt.Errorf("uid is longer than %d bytes", MaxUIDLen)
	}
	if strings.IndexFunc(uid, func(r rune) bool { return !unicode.IsPrint(r) || r == unicode.ReplacementChar }) >= 0 {
		return fmt.Errorf("uid %q has a non-printable character", uid)
	}
	return nil
}
