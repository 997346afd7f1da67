// Package enroll obtains sw-connector's client certificate from a SCEP server
// in the style of procube-open/scep (a micromdm/scep fork): Enroll with a
// one-time secret, Renew with an update secret, WriteFiles to put the key, the
// certificate and the CA chain on disk.
//
// One exchange, as the reference server expects it:
//
//  1. GetCACaps: text/plain capabilities, one per line. POSTPKIOperation (or
//     SCEPStandard, which implies it) selects POST for PKIOperation; otherwise
//     the message goes in the `message` query parameter, standard base64
//     (the reference rejects URL-safe base64 with a 500).
//  2. GetCACert: one DER certificate (application/x-x509-ca-cert) or a
//     degenerate PKCS#7 with several (application/x-x509-ca-ra-cert). With
//     Options.CAFingerprint the pinned certificate must be among them, and only
//     it and the certificates it signed (an RA) are used.
//  3. PKIOperation: a PKCSReq (RenewalReq) whose encrypted PKCS#10 carries the
//     challenge password uid + `\` + secret inside the CSR, signed by a
//     throw-away self-signed certificate for the new key (for a renewal: by the
//     current certificate and key), encrypted to every CA/RA certificate. The
//     reference CA has no keyEncipherment key usage, so recipients are not
//     filtered by key usage.
//  4. CertRep: signed by the CA (the reference uses sha1WithRSA and single
//     DES for the reply whatever the request used; both are accepted). The
//     status is read before anything is decrypted: a FAILURE has no envelope.
//     SUCCESS is decrypted with the request's signer, which is the certificate
//     the server encrypted the reply to. PENDING is polled by sending the
//     request again (same transaction ID, fresh nonce), as the reference client
//     does; smallstep/scep cannot build a CertPoll.
//
// The reference server answers badRequest for every refusal and drops the
// connection for an unknown uid; the errors here say so in plain words.
//
// Importing this package sets two process-wide pkcs7 settings, once, in init:
// AES-256-CBC content encryption (the default is single DES, and pkcs7 cannot
// produce DES3) and SHA-256 digests (the default is SHA-1). Nothing else in
// sw-connector uses pkcs7.
package enroll

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/smallstep/pkcs7"
	"github.com/smallstep/scep"
	"github.com/smallstep/scep/x509util"
	"go.uber.org/zap"
)

func init() {
	pkcs7.ContentEncryptionAlgorithm = pkcs7.EncryptionAlgorithmAES256CBC
	if err := pkcs7.SetDefaultDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256); err != nil {
		panic("enroll: " + err.Error()) // a constant the library accepts; cannot happen
	}
}

// Defaults for the zero values of Options.
const (
	DefaultKeyBits      = 2048
	DefaultHTTPTimeout  = 30 * time.Second
	DefaultPollInterval = 5 * time.Second
	DefaultPollTimeout  = 5 * time.Minute
)

// maxResponse bounds every response body read from the server.
const maxResponse = 1 << 20

// Errors, for errors.Is. The messages of the returned errors name the step
// ("GetCACert: …", "PKIOperation: …") and say more than these.
var (
	// ErrInvalidOptions: the options were rejected before anything was sent.
	ErrInvalidOptions = errors.New("invalid enrollment options")
	// ErrBadResponse: the server answered something unusable: an HTTP error,
	// an HTML page, the wrong content type, a truncated or empty body, a
	// message that does not parse or verify, or a certificate that is not ours.
	ErrBadResponse = errors.New("unusable answer from the SCEP server")
	// ErrNoResponse: the connection was dropped instead of answering a
	// PKIOperation, which is what the reference server does for an unknown uid.
	ErrNoResponse = errors.New("no response from the SCEP server — is the uid registered?")
	// ErrRefused: a CertRep with pkiStatus FAILURE.
	ErrRefused = errors.New("the SCEP server refused the request")
	// ErrPendingTimeout: the server still answered PENDING when
	// Options.PollTimeout ran out.
	ErrPendingTimeout = errors.New("the SCEP server kept the request pending")
	// ErrFingerprintMismatch: no certificate from GetCACert matches
	// Options.CAFingerprint.
	ErrFingerprintMismatch = errors.New("CA certificate fingerprint mismatch")
)

// Options describe one enrollment or renewal.
type Options struct {
	// URL is the SCEP endpoint, e.g. http://ca.example:3000/scep.
	URL string
	// UID and Secret make the challenge password UID + `\` + Secret; neither
	// may contain a backslash. For Renew, Secret is the update (renewal)
	// secret, and an empty UID means the current certificate's CN.
	UID, Secret string
	// DNSNames are optional subject alternative names for the CSR.
	DNSNames []string
	// KeyBits is the size of a new RSA key; 0 means DefaultKeyBits, and
	// fewer than 2048 is refused.
	KeyBits int
	// CAFingerprint optionally pins the CA: SHA-256 of its DER certificate in
	// hex; colons and spaces are ignored, case does not matter. Pin the CA
	// that issues the certificates, not an RA: certificates it did not sign
	// are not used.
	CAFingerprint string
	// HTTPClient nil means a client of its own with DefaultHTTPTimeout.
	HTTPClient *http.Client
	// PollInterval and PollTimeout bound the wait for a PENDING request;
	// 0 means DefaultPollInterval and DefaultPollTimeout.
	PollInterval, PollTimeout time.Duration
	// Log nil means no logs.
	Log *zap.Logger
}

// Result is what an enrollment produces. Key never left the machine.
type Result struct {
	Key  crypto.Signer
	Cert *x509.Certificate
	CA   []*x509.Certificate // the GetCACert certificates used, in the server's order (with a pin: the pinned one first)
}

// Enroll obtains a first certificate: a new RSA key, CN=UID, authorised by
// the one-time secret.
func Enroll(ctx context.Context, o Options) (*Result, error) {
	o, s, caCerts, _, err := begin(ctx, o)
	if err != nil {
		return nil, err
	}
	defer s.close()
	key, err := rsa.GenerateKey(rand.Reader, o.KeyBits)
	if err != nil {
		return nil, fmt.Errorf("generate RSA key: %w", err)
	}
	signer, err := selfSigned(o.UID, key)
	if err != nil {
		return nil, err
	}
	cert, err := s.transact(ctx, request{
		msgType: scep.PKCSReq, key: key,
		signerCert: signer, signerKey: key,
	}, caCerts)
	if err != nil {
		return nil, err
	}
	return &Result{Key: key, Cert: cert, CA: caCerts}, nil
}

// Renew obtains a new certificate before currentCert expires. The RenewalReq
// is signed with currentCert and currentKey, and the server encrypts its
// reply to currentCert, so currentKey must be an RSA key that can decrypt
// (*rsa.PrivateKey does). With newKey the new certificate gets a new RSA key;
// otherwise it certifies currentKey again. o.Secret is the update secret.
func Renew(ctx context.Context, o Options, currentCert *x509.Certificate, currentKey crypto.Signer, newKey bool) (*Result, error) {
	if currentCert == nil || currentKey == nil {
		return nil, fmt.Errorf("%w: renewal needs the current certificate and key", ErrInvalidOptions)
	}
	_, canDecrypt := currentKey.(crypto.Decrypter)
	if _, isRSA := currentKey.Public().(*rsa.PublicKey); !canDecrypt || !isRSA {
		return nil, fmt.Errorf("%w: the current key is %T: the renewal reply is encrypted to the current certificate, which needs an RSA key that can decrypt", ErrInvalidOptions, currentKey)
	}
	if !publicKeysEqual(currentKey.Public(), currentCert.PublicKey) {
		return nil, fmt.Errorf("%w: the current key does not belong to the current certificate", ErrInvalidOptions)
	}
	cn := currentCert.Subject.CommonName
	switch {
	case o.UID == "":
		o.UID = cn
	case o.UID != cn:
		return nil, fmt.Errorf("%w: uid %q differs from the current certificate's CN %q", ErrInvalidOptions, o.UID, cn)
	}
	o, s, caCerts, pin, err := begin(ctx, o)
	if err != nil {
		return nil, err
	}
	defer s.close()
	if pin == nil {
		// Without a pin, trust only the CA that issued the current
		// certificate: the request carries the update secret, and the
		// reference server does not check who signed a RenewalReq.
		var issuer *x509.Certificate
		for _, c := range caCerts {
			if currentCert.CheckSignatureFrom(c) == nil {
				issuer = c
				break
			}
		}
		if issuer == nil {
			return nil, &stepErr{step: "GetCACert", kind: ErrFingerprintMismatch, err: errors.New(
				"none of the server's CA certificates issued the current certificate; the renewal secret is not sent to a stranger")}
		}
		sum := sha256.Sum256(issuer.Raw)
		if caCerts, err = pinned(caCerts, sum[:]); err != nil {
			return nil, err
		}
	}
	var key crypto.Signer = currentKey
	if newKey {
		if key, err = rsa.GenerateKey(rand.Reader, o.KeyBits); err != nil {
			return nil, fmt.Errorf("generate RSA key: %w", err)
		}
	}
	cert, err := s.transact(ctx, request{
		msgType: scep.RenewalReq, key: key,
		signerCert: currentCert, signerKey: currentKey,
	}, caCerts)
	if err != nil {
		return nil, err
	}
	return &Result{Key: key, Cert: cert, CA: caCerts}, nil
}

// begin is what every operation starts with: options checked before
// anything is sent, a session, GetCACaps and GetCACert with the pin applied.
// On success the caller closes the session.
func begin(ctx context.Context, o Options) (Options, *session, []*x509.Certificate, []byte, error) {
	o, pin, err := o.check()
	if err != nil {
		return o, nil, nil, nil, err
	}
	s := newSession(o)
	caCerts, err := s.discover(ctx, pin)
	if err != nil {
		s.close()
		return o, nil, nil, nil, err
	}
	return o, s, caCerts, pin, nil
}

// check validates o before anything is sent, reports every problem at once,
// and fills in the defaults.
func (o Options) check() (Options, []byte, error) {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if u, err := url.Parse(o.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		add("scep url %q is not an http(s) URL", o.URL)
	}
	switch {
	case o.UID == "":
		add("uid is empty")
	case strings.Contains(o.UID, `\`):
		add("uid %q contains a backslash, which separates uid and secret in the challenge", o.UID)
	}
	switch {
	case o.Secret == "":
		add("secret is empty")
	case strings.Contains(o.Secret, `\`):
		add("secret contains a backslash, which separates uid and secret in the challenge")
	}
	if o.KeyBits == 0 {
		o.KeyBits = DefaultKeyBits
	}
	if o.KeyBits < 2048 || o.KeyBits > 8192 {
		add("key bits %d: want 2048 to 8192", o.KeyBits)
	}
	var pin []byte
	if o.CAFingerprint != "" {
		h, err := hex.DecodeString(strings.NewReplacer(":", "", " ", "").Replace(o.CAFingerprint))
		if err != nil || len(h) != sha256.Size {
			add("ca fingerprint %q is not a SHA-256 in hex", o.CAFingerprint)
		}
		pin = h
	}
	if o.PollInterval < 0 || o.PollTimeout < 0 {
		add("poll interval and timeout must not be negative")
	}
	if o.PollInterval == 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.PollTimeout == 0 {
		o.PollTimeout = DefaultPollTimeout
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if len(errs) > 0 {
		return o, nil, fmt.Errorf("%w: %w", ErrInvalidOptions, errors.Join(errs...))
	}
	return o, pin, nil
}

// discover runs GetCACaps and GetCACert and applies the pin.
func (s *session) discover(ctx context.Context, pin []byte) ([]*x509.Certificate, error) {
	caps, err := s.getCACaps(ctx)
	if err != nil {
		return nil, err
	}
	s.post = caps.has("POSTPKIOperation") || caps.has("SCEPStandard")
	for _, c := range []string{"AES", "SHA-256"} {
		if !caps.has(c) {
			s.log.Warn("scep server does not advertise a capability the request uses anyway", zap.String("capability", c))
		}
	}
	certs, err := s.getCACert(ctx)
	if err != nil {
		return nil, err
	}
	for i, c := range certs {
		s.log.Info("scep ca certificate", zap.Int("index", i), zap.String("subject", c.Subject.String()),
			zap.String("sha256", fingerprint(c)), zap.Time("not_after", c.NotAfter))
	}
	if pin != nil {
		if certs, err = pinned(certs, pin); err != nil {
			return nil, err
		}
	}
	for _, c := range certs {
		if _, ok := c.PublicKey.(*rsa.PublicKey); ok {
			return certs, nil
		}
	}
	return nil, stepError("GetCACert", ErrBadResponse, "no CA/RA certificate has an RSA key, which SCEP needs to encrypt the request")
}

// pinned keeps the certificate whose SHA-256 is pin and the certificates it
// signed (an RA): the request, which carries the secret, is encrypted to every
// certificate kept, so a stranger slipped in beside the real CA must not be.
func pinned(certs []*x509.Certificate, pin []byte) ([]*x509.Certificate, error) {
	var ca *x509.Certificate
	for _, c := range certs {
		if sum := sha256.Sum256(c.Raw); bytes.Equal(sum[:], pin) {
			ca = c
			break
		}
	}
	if ca == nil {
		got := make([]string, len(certs))
		for i, c := range certs {
			got[i] = fmt.Sprintf("%s (%s)", fingerprint(c), c.Subject)
		}
		return nil, &stepErr{step: "GetCACert", kind: ErrFingerprintMismatch, err: fmt.Errorf(
			"no CA certificate has the pinned SHA-256 fingerprint %s; the server sent %s", hex.EncodeToString(pin), strings.Join(got, ", "))}
	}
	kept := []*x509.Certificate{ca}
	for _, c := range certs {
		if c != ca && c.CheckSignatureFrom(ca) == nil {
			kept = append(kept, c)
		}
	}
	return kept, nil
}

// request is one PKCSReq or RenewalReq in the making.
type request struct {
	msgType    scep.MessageType
	key        crypto.Signer     // the key to certify
	signerCert *x509.Certificate // signs the message and receives the reply
	signerKey  crypto.Signer     // must also be a crypto.Decrypter
}

// transact sends the request until the server answers SUCCESS or FAILURE, or
// PollTimeout passes while it answers PENDING.
func (s *session) transact(ctx context.Context, req request, caCerts []*x509.Certificate) (*x509.Certificate, error) {
	csr, err := s.newCSR(req.key)
	if err != nil {
		return nil, err
	}
	var deadline time.Time
	for attempt := 1; ; attempt++ {
		msg, err := scep.NewCSRRequest(csr, &scep.PKIMessage{
			MessageType: req.msgType,
			Recipients:  caCerts,
			SignerKey:   req.signerKey,
			SignerCert:  req.signerCert,
		})
		if err != nil {
			return nil, fmt.Errorf("build %s: %w", msgTypeName(req.msgType), err)
		}
		log := s.log.With(zap.String("message_type", msgTypeName(req.msgType)),
			zap.String("transaction_id", string(msg.TransactionID)), zap.Int("attempt", attempt))
		log.Debug("scep request", zap.Bool("post", s.post))
		body, err := s.pkiOperation(ctx, msg.Raw)
		if err != nil {
			return nil, err
		}
		rep, err := parseCertRep(body, msg, caCerts)
		if err != nil {
			return nil, err
		}
		switch rep.PKIStatus {
		case scep.SUCCESS:
			cert, err := s.issued(rep, req, caCerts)
			if err != nil {
				return nil, err
			}
			log.Info("scep certificate issued", zap.String("serial", cert.SerialNumber.Text(16)),
				zap.String("subject", cert.Subject.String()), zap.Time("not_after", cert.NotAfter))
			return cert, nil
		case scep.FAILURE:
			return nil, refused(rep.FailInfo)
		}
		// PENDING: parseCertRep let no other status through.
		now := time.Now()
		if deadline.IsZero() {
			deadline = now.Add(s.o.PollTimeout)
		}
		if now.Add(s.o.PollInterval).After(deadline) {
			return nil, &stepErr{step: "PKIOperation", kind: ErrPendingTimeout, err: fmt.Errorf(
				"the SCEP server still answers PENDING after %s and %d attempts: the request waits for an administrator's approval",
				s.o.PollTimeout, attempt)}
		}
		log.Info("scep request pending", zap.Duration("retry_in", s.o.PollInterval))
		t := time.NewTimer(s.o.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("PKIOperation: waiting while PENDING: %w", context.Cause(ctx))
		case <-t.C:
		}
	}
}

// newCSR makes the PKCS#10 request: CN=UID, the SANs, and the challenge
// password inside the CSR, where the server reads it (scep.NewCSRRequest
// ignores a challenge given in its template).
func (s *session) newCSR(key crypto.Signer) (*x509.CertificateRequest, error) {
	der, err := x509util.CreateCertificateRequest(rand.Reader, &x509util.CertificateRequest{
		CertificateRequest: x509.CertificateRequest{
			Subject:  pkix.Name{CommonName: s.o.UID},
			DNSNames: s.o.DNSNames,
		},
		ChallengePassword: s.o.UID + `\` + s.o.Secret,
	}, key)
	if err != nil {
		return nil, fmt.Errorf("create CSR: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("parse our CSR: %w", err)
	}
	return csr, nil
}

// selfSigned is the throw-away certificate that signs a PKCSReq: the server
// encrypts its reply to it, and nothing else uses it.
func selfSigned(cn string, key crypto.Signer) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("signer certificate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create signer certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// parseCertRep parses and verifies the server's answer to msg. It checks the
// answer is a CertRep for this transaction and this nonce, and that its status
// is one of the three known; it decrypts nothing.
func parseCertRep(body []byte, msg *scep.PKIMessage, caCerts []*x509.Certificate) (*scep.PKIMessage, error) {
	var rep *scep.PKIMessage
	err := guard(func() (err error) {
		rep, err = scep.ParsePKIMessage(body, scep.WithCACerts(caCerts))
		return err
	})
	if err != nil {
		return nil, stepError("PKIOperation", ErrBadResponse, "the answer is not a valid PKI message signed by the CA: %v", err)
	}
	switch {
	case rep.MessageType != scep.CertRep || rep.CertRepMessage == nil:
		return nil, stepError("PKIOperation", ErrBadResponse, "the answer is message type %q, not a CertRep", string(rep.MessageType))
	case rep.TransactionID != msg.TransactionID:
		return nil, stepError("PKIOperation", ErrBadResponse, "the answer is for transaction %q, not ours (%q)", rep.TransactionID, msg.TransactionID)
	case !bytes.Equal(rep.RecipientNonce, msg.SenderNonce):
		return nil, stepError("PKIOperation", ErrBadResponse, "the answer's recipient nonce is not our sender nonce: a replayed or misdirected answer")
	}
	switch rep.PKIStatus {
	case scep.SUCCESS, scep.FAILURE, scep.PENDING:
		return rep, nil
	}
	return nil, stepError("PKIOperation", ErrBadResponse, "unknown pkiStatus %q", string(rep.PKIStatus))
}

// issued decrypts a SUCCESS and checks the certificate is the one we asked for.
func (s *session) issued(rep *scep.PKIMessage, req request, caCerts []*x509.Certificate) (*x509.Certificate, error) {
	err := guard(func() error { return rep.DecryptPKIEnvelope(req.signerCert, req.signerKey) })
	if err != nil {
		return nil, stepError("PKIOperation", ErrBadResponse, "decrypt the issued certificate: %v", err)
	}
	cert := rep.CertRepMessage.Certificate
	switch {
	case cert == nil:
		return nil, stepError("PKIOperation", ErrBadResponse, "the SUCCESS answer holds no certificate")
	case !publicKeysEqual(cert.PublicKey, req.key.Public()):
		return nil, stepError("PKIOperation", ErrBadResponse, "the issued certificate (%s) is not for our key", cert.Subject)
	case cert.Subject.CommonName != s.o.UID:
		return nil, stepError("PKIOperation", ErrBadResponse, "the issued certificate's CN is %q, not the uid %q", cert.Subject.CommonName, s.o.UID)
	}
	signed := false
	for _, ca := range caCerts {
		if cert.CheckSignatureFrom(ca) == nil {
			signed = true
			break
		}
	}
	if !signed {
		return nil, stepError("PKIOperation", ErrBadResponse, "the issued certificate (issuer %s) is not signed by a GetCACert certificate", cert.Issuer)
	}
	if !clientAuth(cert) {
		s.log.Warn("the issued certificate is not valid for TLS client authentication", zap.String("subject", cert.Subject.String()))
	}
	return cert, nil
}

// refused explains a FAILURE. The reference server answers badRequest for
// every cause and says which on no wire, so the likely causes are listed.
func refused(info scep.FailInfo) error {
	var name, why string
	switch info {
	case scep.BadRequest:
		name, why = "badRequest", "wrong or already used secret, uid not registered or already enrolled, or a renewal without an update secret"
	case scep.BadAlg:
		name, why = "badAlg", "the server does not support an algorithm of the request"
	case scep.BadMessageCheck:
		name, why = "badMessageCheck", "the server could not verify the request's signature"
	case scep.BadTime:
		name, why = "badTime", "the request's signing time is outside the server's window; check the clock"
	case scep.BadCertID:
		name, why = "badCertID", "the server found no certificate matching the request"
	default:
		// FailInfo.String panics on a value it does not know.
		name, why = fmt.Sprintf("failInfo %q", string(info)), "a reason this client does not know"
	}
	return stepError("PKIOperation", ErrRefused, "%s (%s): %s", ErrRefused, name, why)
}

// msgTypeName names a message type without MessageType.String, which panics
// on a value it does not know.
func msgTypeName(t scep.MessageType) string {
	switch t {
	case scep.PKCSReq:
		return "PKCSReq"
	case scep.RenewalReq:
		return "RenewalReq"
	}
	return string(t)
}

// guard turns a panic in a parser fed by the server into an error: pkcs7 and
// scep parse untrusted input, and DecryptPKIEnvelope indexes the first
// certificate of the envelope without checking there is one.
func guard(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed message (parser panic: %v)", r)
		}
	}()
	return f()
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

func clientAuth(c *x509.Certificate) bool {
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return true
	}
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageClientAuth || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// stepErr is an error of one protocol step: its message is "step: detail",
// and errors.Is finds both kind and the detail's own chain.
type stepErr struct {
	step string
	kind error // a sentinel, or nil
	err  error
}

func (e *stepErr) Error() string { return e.step + ": " + e.err.Error() }

func (e *stepErr) Unwrap() []error {
	if e.kind == nil {
		return []error{e.err}
	}
	return []error{e.kind, e.err}
}

func stepError(step string, kind error, format string, args ...any) error {
	return &stepErr{step: step, kind: kind, err: fmt.Errorf(format, args...)}
}
