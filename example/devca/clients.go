package devca

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"go.uber.org/zap"
)

// maxUIDLen is the upper bound of an X.509 common name (RFC 5280 ub-common-name).
const maxUIDLen = 64

// ClientInfo is a client as /api/cert/verify reports it.
type ClientInfo struct {
	UID        string         `json:"uid"`
	Status     string         `json:"status"`
	Attributes map[string]any `json:"attributes"`
}

// SecretOptions configures CreateSecretWith.
type SecretOptions struct {
	// Secret is the secret to use; empty means generate one (recommended).
	// It may not contain a backslash.
	Secret string
	// AvailablePeriod is how long the secret can be used (default 24h).
	AvailablePeriod time.Duration
	// PendingPeriod only matters for an update secret: how long the old
	// certificate keeps working after the renewal.
	PendingPeriod time.Duration
	// Replace lets the new secret take the place of one still waiting
	// (ISSUABLE or UPDATABLE), which stops working; without it such a
	// client is refused, so that nobody spends a secret by mistake.
	Replace bool
}

// SecretInfo describes a created secret. Secret is the only copy of the
// plain secret: the CA keeps a hash.
type SecretInfo struct {
	UID           string
	Secret        string
	Type          string // SecretActivate or SecretUpdate
	ExpiresAt     time.Time
	PendingPeriod time.Duration
}

// ValidateUID reports whether uid can name a client: 1 to 64 characters,
// printable, no backslash (it separates uid and secret in the challenge).
func ValidateUID(uid string) error {
	switch {
	case uid == "":
		return fmt.Errorf("%w: UID is required", ErrInvalidUID)
	case !utf8.ValidString(uid) || utf8.RuneCountInString(uid) > maxUIDLen:
		return fmt.Errorf("%w: UID must be 1 to %d UTF-8 characters", ErrInvalidUID, maxUIDLen)
	case strings.Contains(uid, `\`):
		return fmt.Errorf("%w: UID contains backslash", ErrInvalidUID)
	case strings.TrimSpace(uid) != uid:
		return fmt.Errorf("%w: UID has leading or trailing space", ErrInvalidUID)
	}
	for _, r := range uid {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: UID contains a control character", ErrInvalidUID)
		}
	}
	return nil
}

// AddClient registers uid with its attributes (nil means {}). The client
// starts INACTIVE: it needs a secret before it can enrol.
func (ca *CA) AddClient(uid string, attrs map[string]any) error {
	if err := ValidateUID(uid); err != nil {
		return err
	}
	// Round-trip the attributes through JSON now, so that what is stored is
	// exactly what a reload gives back, and unencodable values fail here.
	stored := map[string]any{}
	if attrs != nil {
		b, err := json.Marshal(attrs)
		if err != nil {
			return fmt.Errorf("devca: attributes: %w", err)
		}
		if err := json.Unmarshal(b, &stored); err != nil {
			return fmt.Errorf("devca: attributes: %w", err)
		}
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	err := ca.mutateLocked(func(st *state) error {
		if _, ok := st.Clients[uid]; ok {
			return fmt.Errorf("%w: %q", ErrClientExists, uid)
		}
		st.Clients[uid] = &clientRecord{UID: uid, Attributes: stored, CreatedAt: ca.now().UTC()}
		return nil
	})
	if err != nil {
		return err
	}
	ca.log.Info("client added", zap.String("uid", uid), zap.Int("attributes", len(stored)))
	return nil
}

// CreateSecret makes a one-time secret for uid, valid for
// DefaultSecretLifetime. For a client without a usable certificate it is an
// activation secret (PKCSReq); for an ISSUED client it is an update secret
// (RenewalReq), and after the renewal the old certificate keeps working for
// pendingPeriod. The secret is returned and never stored or logged.
func (ca *CA) CreateSecret(uid string, pendingPeriod time.Duration) (string, error) {
	info, err := ca.CreateSecretWith(uid, SecretOptions{PendingPeriod: pendingPeriod})
	if err != nil {
		return "", err
	}
	return info.Secret, nil
}

// CreateSecretWith is CreateSecret with every option of the admin API.
func (ca *CA) CreateSecretWith(uid string, opts SecretOptions) (SecretInfo, error) {
	if err := ValidateUID(uid); err != nil {
		return SecretInfo{}, err
	}
	if strings.Contains(opts.Secret, `\`) {
		return SecretInfo{}, fmt.Errorf("%w: secret contains backslash", ErrInvalidSecret)
	}
	if opts.AvailablePeriod < 0 || opts.PendingPeriod < 0 {
		return SecretInfo{}, fmt.Errorf("%w: periods may not be negative", ErrInvalidPeriod)
	}
	if opts.AvailablePeriod == 0 {
		opts.AvailablePeriod = DefaultSecretLifetime
	}
	secret := opts.Secret
	if secret == "" {
		var err error
		if secret, err = newSecret(); err != nil {
			return SecretInfo{}, err
		}
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return SecretInfo{}, fmt.Errorf("devca: salt: %w", err)
	}

	ca.mu.Lock()
	defer ca.mu.Unlock()
	var info SecretInfo
	err := ca.mutateLocked(func(st *state) error {
		now := ca.now()
		st.pruneSecrets(now)
		if _, ok := st.Clients[uid]; !ok {
			return fmt.Errorf("%w: %q", ErrClientNotFound, uid)
		}
		var typ string
		switch status := st.status(uid, now); status {
		case StatusInactive:
			typ = SecretActivate
		case StatusIssued:
			typ = SecretUpdate
		case StatusIssuable, StatusUpdatable:
			if !opts.Replace {
				return fmt.Errorf("%w: %q is %s", ErrClientState, uid, status)
			}
			typ = st.Secrets[uid].Type
		default:
			return fmt.Errorf("%w: %q is %s", ErrClientState, uid, status)
		}
		rec := &secretRecord{
			Type:      typ,
			Salt:      salt,
			Hash:      hashSecret(salt, secret),
			CreatedAt: now.UTC(),
			ExpiresAt: now.Add(opts.AvailablePeriod).UTC(),
		}
		if typ == SecretUpdate {
			rec.PendingPeriod = duration(opts.PendingPeriod)
		}
		st.Secrets[uid] = rec
		info = SecretInfo{UID: uid, Secret: secret, Type: typ, ExpiresAt: rec.ExpiresAt,
			PendingPeriod: time.Duration(rec.PendingPeriod)}
		return nil
	})
	if err != nil {
		return SecretInfo{}, err
	}
	ca.log.Info("secret created", zap.String("uid", uid), zap.String("type", info.Type),
		zap.Time("expires_at", info.ExpiresAt), zap.Duration("pending_period", info.PendingPeriod))
	return info, nil
}

// Revoke revokes every certificate of uid that is not revoked yet (including
// one waiting for the end of a pending period), deletes its secret and so
// makes it INACTIVE. Revoked certificates fail /api/cert/verify with
// "Certificate is revoked" and appear in the CRL.
func (ca *CA) Revoke(uid string) error {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	var serials []string
	err := ca.mutateLocked(func(st *state) error {
		now := ca.now()
		st.pruneSecrets(now)
		if _, ok := st.Clients[uid]; !ok {
			return fmt.Errorf("%w: %q", ErrClientNotFound, uid)
		}
		if st.status(uid, now) == StatusInactive {
			return fmt.Errorf("%w: %q", ErrAlreadyInactive, uid)
		}
		delete(st.Secrets, uid)
		at := now.UTC()
		for _, c := range st.Certs {
			if c.UID != uid || c.revoked(now) || !now.Before(c.NotAfter) {
				continue
			}
			c.RevokedAt = &at
			c.Reason = 0 // unspecified
			serials = append(serials, c.Serial)
		}
		return nil
	})
	if err != nil {
		return err
	}
	ca.log.Info("client revoked", zap.String("uid", uid), zap.Strings("serials", serials))
	return nil
}

// Client returns uid's status and attributes.
func (ca *CA) Client(uid string) (ClientInfo, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if ca.closed {
		return ClientInfo{}, ErrClosed
	}
	return ca.clientInfoLocked(uid, ca.now())
}

func (ca *CA) clientInfoLocked(uid string, now time.Time) (ClientInfo, error) {
	c, ok := ca.st.Clients[uid]
	if !ok {
		return ClientInfo{}, fmt.Errorf("%w: %q", ErrClientNotFound, uid)
	}
	attrs := make(map[string]any, len(c.Attributes))
	for k, v := range c.Attributes {
		attrs[k] = v
	}
	return ClientInfo{UID: uid, Status: ca.st.status(uid, now), Attributes: attrs}, nil
}

// status derives uid's status from its secret and certificates at now.
func (st *state) status(uid string, now time.Time) string {
	usable, pending := 0, false
	for _, c := range st.Certs {
		if c.UID != uid || c.revoked(now) || !now.Before(c.NotAfter) {
			continue
		}
		usable++
		if c.RevokedAt != nil { // revocation scheduled for later
			pending = true
		}
	}
	sec := st.liveSecret(uid, now)
	switch {
	case usable == 0 && sec != nil && sec.Type == SecretActivate:
		return StatusIssuable
	case usable == 0:
		return StatusInactive
	case pending:
		return StatusPending
	case sec != nil && sec.Type == SecretUpdate:
		return StatusUpdatable
	default:
		return StatusIssued
	}
}

// liveSecret returns uid's secret if it has not expired.
func (st *state) liveSecret(uid string, now time.Time) *secretRecord {
	s, ok := st.Secrets[uid]
	if !ok || !now.Before(s.ExpiresAt) {
		return nil
	}
	return s
}

func (st *state) pruneSecrets(now time.Time) {
	for uid, s := range st.Secrets {
		if !now.Before(s.ExpiresAt) {
			delete(st.Secrets, uid)
		}
	}
}

// revoked reports whether the certificate is revoked at now.
func (c *certRecord) revoked(now time.Time) bool {
	return c.RevokedAt != nil && !now.Before(*c.RevokedAt)
}

func (st *state) certBySerial(serial string) *certRecord {
	for _, c := range st.Certs {
		if c.Serial == serial {
			return c
		}
	}
	return nil
}

// matches compares secret with the stored hash in constant time.
func (s *secretRecord) matches(secret string) bool {
	return subtle.ConstantTimeCompare(hashSecret(s.Salt, secret), s.Hash) == 1
}

func hashSecret(salt []byte, secret string) []byte {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(secret))
	return h.Sum(nil)
}

// newSecret returns 160 random bits as 32 lowercase base32 characters: safe
// in a CSR's PrintableString, in a shell and in a URL.
func newSecret() (string, error) {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("devca: generate secret: %w", err)
	}
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)), nil
}
