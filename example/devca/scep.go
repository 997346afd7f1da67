package devca

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/smallstep/pkcs7"
	"github.com/smallstep/scep"
	"go.uber.org/zap"
)

// maxMessageSize bounds a PKIOperation body; real requests are a few KiB.
const maxMessageSize = 1 << 20

// caCaps is the GetCACaps answer, the same list as the reference.
const caCaps = "Renewal\nSHA-1\nSHA-256\nAES\nDES3\nSCEPStandard\nPOSTPKIOperation"

// Content types of the SCEP answers.
const (
	contentTypeCACert     = "application/x-x509-ca-cert"
	contentTypePKIMessage = "application/x-pki-message"
	contentTypeCRL        = "application/pkix-crl"
)

// errBadMessage marks a PKIOperation body that cannot be answered with a
// CertRep at all (not a signed SCEP request).
var errBadMessage = errors.New("devca: malformed PKI message")

// Handler returns the public handler: /scep (GetCACaps, GetCACert,
// PKIOperation by GET and POST, GetCRL) and /api/cert/verify.
func (ca *CA) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/scep", ca.serveSCEP)
	mux.HandleFunc("GET /api/cert/verify", ca.serveVerify)
	return mux
}

func (ca *CA) isClosed() bool {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return ca.closed
}

func (ca *CA) serveSCEP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if ca.isClosed() {
		http.Error(w, "CA is closed", http.StatusServiceUnavailable)
		return
	}
	q := r.URL.Query()
	switch op := q.Get("operation"); op {
	case "GetCACaps":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, caCaps)
	case "GetCACert":
		w.Header().Set("Content-Type", contentTypeCACert)
		_, _ = w.Write(ca.caCert.Raw)
	case "GetCRL":
		der, err := ca.CRL()
		if err != nil {
			ca.log.Error("crl failed", zap.Error(err))
			http.Error(w, "cannot make the CRL", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", contentTypeCRL)
		_, _ = w.Write(der)
	case "PKIOperation":
		var raw []byte
		var err error
		if r.Method == http.MethodPost {
			raw, err = io.ReadAll(http.MaxBytesReader(w, r.Body, maxMessageSize))
		} else {
			raw, err = decodeBase64Message(q.Get("message"))
		}
		if err != nil || len(raw) == 0 {
			http.Error(w, "PKIOperation needs a PKI message (POST body, or standard base64 in message)", http.StatusBadRequest)
			return
		}
		reply, err := ca.pkiOperation(raw)
		switch {
		case errors.Is(err, errBadMessage):
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		case errors.Is(err, ErrClosed):
			http.Error(w, "CA is closed", http.StatusServiceUnavailable)
			return
		case err != nil:
			ca.log.Error("pki operation failed", zap.Error(err))
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", contentTypePKIMessage)
		_, _ = w.Write(reply)
	case "":
		http.Error(w, "missing operation", http.StatusBadRequest)
	default:
		http.Error(w, fmt.Sprintf("unsupported operation %q", op), http.StatusBadRequest)
	}
}

// decodeBase64Message decodes a GET PKIOperation message: standard base64 as
// SCEP says, but also URL-safe or unpadded base64, and a '+' that arrived
// unescaped (and so was turned into a space by query decoding).
func decodeBase64Message(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		switch r {
		case ' ':
			return '+'
		case '\r', '\n':
			return -1
		}
		return r
	}, s)
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// pkiOperation answers a PKIMessage with a CertRep. Only a message that is
// not a signed SCEP request gets an error (errBadMessage); every refusal of a
// well-formed request is a FAILURE CertRep.
func (ca *CA) pkiOperation(raw []byte) ([]byte, error) {
	var msg *scep.PKIMessage
	err := guard(func() (err error) {
		msg, err = scep.ParsePKIMessage(raw)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadMessage, err)
	}
	log := ca.log.With(zap.String("transaction_id", string(msg.TransactionID)),
		zap.String("message_type", string(msg.MessageType)))

	switch msg.MessageType {
	case scep.PKCSReq, scep.RenewalReq, scep.UpdateReq:
	default:
		return nil, fmt.Errorf("%w: message type %s is not a request", errBadMessage, msg.MessageType)
	}

	fail := func(uid, reason string) ([]byte, error) {
		log.Warn("enrolment refused", zap.String("uid", uid), zap.String("reason", reason))
		ca.refused(uid, reason)
		rep, err := msg.Fail(ca.caCert, ca.caKey, scep.BadRequest)
		if err != nil {
			return nil, fmt.Errorf("devca: build failure reply: %w", err)
		}
		return rep.Raw, nil
	}

	if msg.MessageType == scep.UpdateReq {
		return fail("", "UpdateReq is not supported; use RenewalReq")
	}
	if err := guard(func() error { return msg.DecryptPKIEnvelope(ca.caCert, ca.caKey) }); err != nil {
		return fail("", "cannot decrypt the envelope: "+err.Error())
	}
	csr := msg.CSRReqMessage.CSR
	uid, secret, ok := strings.Cut(msg.CSRReqMessage.ChallengePassword, `\`)
	if !ok || secret == "" {
		// Without the separator the "uid" may hold the secret: not logged.
		return fail("", `challenge password is not "<uid>\<secret>"`)
	}
	if err := ValidateUID(uid); err != nil {
		return fail("", "challenge password: "+err.Error())
	}
	if err := csr.CheckSignature(); err != nil {
		return fail(uid, "CSR signature: "+err.Error())
	}
	if csr.Subject.CommonName != uid {
		return fail(uid, fmt.Sprintf("CSR common name %q is not the uid", csr.Subject.CommonName))
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return fail(uid, "CSR key: "+err.Error())
	}
	var signer *x509.Certificate
	if msg.MessageType == scep.RenewalReq {
		var p7 *pkcs7.PKCS7
		err := guard(func() (err error) {
			p7, err = pkcs7.Parse(raw)
			return err
		})
		if err != nil {
			return fail(uid, "cannot read the signer: "+err.Error())
		}
		if signer = p7.GetOnlySigner(); signer == nil {
			return fail(uid, "RenewalReq needs exactly one signer certificate")
		}
	}

	ca.mu.Lock()
	defer ca.mu.Unlock()
	var (
		reply  []byte
		issued *x509.Certificate
		reason string
	)
	err = ca.mutateLocked(func(st *state) error {
		now := ca.now()
		if _, ok := st.Clients[uid]; !ok {
			reason = "unknown uid"
			return errRefused
		}
		sec := st.liveSecret(uid, now)
		if sec == nil {
			reason = "no valid secret for this uid"
			return errRefused
		}
		if !sec.matches(secret) {
			reason = "wrong secret"
			return errRefused
		}
		var old []*certRecord
		switch msg.MessageType {
		case scep.PKCSReq:
			if sec.Type != SecretActivate {
				reason = "the secret is an update secret: renew with RenewalReq"
				return errRefused
			}
		case scep.RenewalReq:
			if sec.Type != SecretUpdate {
				reason = "RenewalReq needs an update secret"
				return errRefused
			}
			if reason = ca.checkRenewalSigner(st, uid, signer, now); reason != "" {
				return errRefused
			}
			for _, c := range st.Certs {
				if c.UID == uid && !c.revoked(now) && now.Before(c.NotAfter) {
					old = append(old, c)
				}
			}
		}
		cert, err := ca.issueClientCert(st, uid, csr.PublicKey, now)
		if err != nil {
			return err
		}
		rep, err := msg.Success(ca.caCert, ca.caKey, cert)
		if err != nil {
			// Typically a signer key pkcs7 cannot encrypt to (not RSA).
			reason = "cannot encrypt the reply to the signer: " + err.Error()
			return errRefused
		}
		delete(st.Secrets, uid)
		st.Certs = append(st.Certs, &certRecord{
			Serial:    serialHex(cert.SerialNumber),
			UID:       uid,
			NotBefore: cert.NotBefore.UTC(),
			NotAfter:  cert.NotAfter.UTC(),
			DER:       cert.Raw,
		})
		at := now.Add(time.Duration(sec.PendingPeriod)).UTC()
		for _, c := range old {
			if c.RevokedAt == nil || c.RevokedAt.After(at) {
				c.RevokedAt = &at
				c.Reason = reasonSuperseded
			}
		}
		reply, issued = rep.Raw, cert
		return nil
	})
	switch {
	case errors.Is(err, errRefused):
		return fail(uid, reason)
	case err != nil:
		return nil, err
	}
	log.Info("certificate issued", zap.String("uid", uid),
		zap.String("serial", serialHex(issued.SerialNumber)),
		zap.Time("not_after", issued.NotAfter))
	return reply, nil
}

// guard runs fn and turns a panic into an error: pkcs7's BER parser panics
// on some malformed input (a truncated request, for one), and an answer beats
// a dropped connection.
func guard(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed input (parser panic: %v)", r)
		}
	}()
	return fn()
}

// errRefused makes mutateLocked drop its copy of the state: the request is
// refused and nothing changes (a wrong secret is not used up).
var errRefused = errors.New("devca: request refused")

// checkRenewalSigner checks that a RenewalReq is signed by uid's current
// certificate from this CA. It returns the reason for a refusal, or "".
func (ca *CA) checkRenewalSigner(st *state, uid string, signer *x509.Certificate, now time.Time) string {
	if err := signer.CheckSignatureFrom(ca.caCert); err != nil {
		return "RenewalReq is not signed by a certificate of this CA"
	}
	rec := st.certBySerial(serialHex(signer.SerialNumber))
	switch {
	case rec == nil || !bytes.Equal(rec.DER, signer.Raw):
		return "RenewalReq signer is not a certificate this CA issued"
	case rec.UID != uid || signer.Subject.CommonName != uid:
		return "RenewalReq signer belongs to another uid"
	case rec.revoked(now):
		return "RenewalReq signer is revoked"
	case now.Before(signer.NotBefore) || !now.Before(signer.NotAfter):
		return "RenewalReq signer is expired"
	}
	return ""
}

// CRL reason code for a certificate replaced by a renewal.
const reasonSuperseded = 4
