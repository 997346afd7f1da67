package devca

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/url"

	"go.uber.org/zap"
)

// ClientCertHeader carries the URL-encoded PEM of the client's leaf
// certificate to /api/cert/verify, as an mTLS-terminating proxy sets it.
const ClientCertHeader = "X-Mtls-Clientcert"

// Messages of /api/cert/verify; the 401 ones are the reference's, word for word.
const (
	MsgNoCertificate      = "No Certificate"
	MsgDecodeFailed       = "Decode header failed"
	MsgParseFailed        = "Parse Certificate failed"
	MsgVerifyFailed       = "Failed to verify certificate"
	MsgExpired            = "Certificate is expired"
	MsgRevoked            = "Certificate is revoked"
	MsgUserNotFound       = "User Not Found"
	msgMultipleCerts      = "More than one " + ClientCertHeader + " header"
	msgServiceUnavailable = "CA is closed"
)

type messageResponse struct {
	Message string `json:"message"`
}

type expiredResponse struct {
	Message   string `json:"message"`
	NotBefore string `json:"notBefore"`
	NotAfter  string `json:"notAfter"`
	Date      string `json:"Date"`
}

type verifyFailedResponse struct {
	Message     string `json:"message"`
	Certificate string `json:"certificate"`
	CACert      string `json:"cacert"`
}

type userNotFoundResponse struct {
	Message string `json:"message"`
	User    string `json:"user"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (ca *CA) serveVerify(w http.ResponseWriter, r *http.Request) {
	values := r.Header.Values(ClientCertHeader)
	switch len(values) {
	case 0:
		writeJSON(w, http.StatusBadRequest, messageResponse{MsgNoCertificate})
		return
	case 1:
	default:
		writeJSON(w, http.StatusBadRequest, messageResponse{msgMultipleCerts})
		return
	}
	block, status, msg := decodeCertHeader(values[0])
	if block == nil {
		writeJSON(w, status, messageResponse{msg})
		return
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		writeJSON(w, http.StatusUnauthorized, verifyFailedResponse{MsgVerifyFailed,
			string(pem.EncodeToMemory(block)), string(ca.CACertPEM())})
		return
	}
	info, status, resp, reason := ca.verifyCert(cert)
	if status != http.StatusOK {
		ca.log.Debug("certificate refused", zap.String("cn", cert.Subject.CommonName),
			zap.String("serial", serialHex(cert.SerialNumber)), zap.Int("status", status),
			zap.String("reason", reason))
		writeJSON(w, status, resp)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

// decodeCertHeader undoes the URL encoding of the header and finds the PEM
// certificate. Path unescaping comes first because it keeps '+' (base64);
// query unescaping is the fallback for encoders that turned spaces into '+'.
func decodeCertHeader(v string) (*pem.Block, int, string) {
	decoded, pathErr := url.PathUnescape(v)
	if pathErr == nil {
		if b := findCertBlock(decoded); b != nil {
			return b, 0, ""
		}
	}
	decoded, queryErr := url.QueryUnescape(v)
	if queryErr == nil {
		if b := findCertBlock(decoded); b != nil {
			return b, 0, ""
		}
	}
	if pathErr != nil && queryErr != nil {
		return nil, http.StatusBadRequest, MsgDecodeFailed
	}
	return nil, http.StatusBadRequest, MsgParseFailed
}

func findCertBlock(s string) *pem.Block {
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil
		}
		if b.Type == "CERTIFICATE" {
			return b
		}
	}
}

// verifyCert runs the reference's checks in its order: validity period,
// chain to the CA for clientAuth, revocation, client lookup by CN.
// It returns the client, or the status, body and message of the refusal.
func (ca *CA) verifyCert(cert *x509.Certificate) (ClientInfo, int, any, string) {
	now := ca.now()
	if now.After(cert.NotAfter) || now.Before(cert.NotBefore) {
		return ClientInfo{}, http.StatusUnauthorized, expiredResponse{
			Message:   MsgExpired,
			NotBefore: cert.NotBefore.String(),
			NotAfter:  cert.NotAfter.String(),
			Date:      now.Round(0).String(),
		}, MsgExpired
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.caCert)
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return ClientInfo{}, http.StatusUnauthorized, verifyFailedResponse{MsgVerifyFailed,
			string(certPEM(cert.Raw)), string(ca.CACertPEM())}, MsgVerifyFailed + ": " + err.Error()
	}

	ca.mu.Lock()
	defer ca.mu.Unlock()
	if ca.closed {
		return ClientInfo{}, http.StatusServiceUnavailable, messageResponse{msgServiceUnavailable}, msgServiceUnavailable
	}
	if rec := ca.st.certBySerial(serialHex(cert.SerialNumber)); rec != nil && rec.revoked(now) {
		return ClientInfo{}, http.StatusUnauthorized, messageResponse{MsgRevoked}, MsgRevoked
	}
	uid := cert.Subject.CommonName
	info, err := ca.clientInfoLocked(uid, now)
	if errors.Is(err, ErrClientNotFound) {
		return ClientInfo{}, http.StatusUnauthorized, userNotFoundResponse{MsgUserNotFound, uid}, MsgUserNotFound
	}
	if err != nil {
		return ClientInfo{}, http.StatusInternalServerError, messageResponse{err.Error()}, err.Error()
	}
	return info, http.StatusOK, nil, ""
}
