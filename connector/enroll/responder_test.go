package enroll

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
	"github.com/smallstep/scep"
)

// A minimal SCEP responder built from smallstep/scep's server-side
// primitives. It exists to exercise the client, not to be a CA: it checks the
// challenge (and, if told, the signer), issues CN/SANs from the CSR, and has
// knobs for the answers a real server might give.

// SCEP attribute OIDs (RFC 8894 §3.2.1), for CertReps scep cannot build:
// PENDING, SHA-1 signed, or tampered.
var (
	oidMessageType    = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 2}
	oidPKIStatus      = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 3}
	oidFailInfo       = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 4}
	oidSenderNonce    = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 5}
	oidRecipientNonce = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 6}
	oidTransactionID  = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 7}
)

// testCA is an RSA certificate and key; valid from 1990, so that it also
// works at synctest's fake time (2000-01-01).
type testCA struct {
	cert *x509.Certificate
	key  *rsa.PrivateKey
}

type fixtureSet struct {
	ca       *testCA // like the reference: no keyEncipherment
	ra       *testCA // signed by ca
	stranger *testCA // self-signed, unrelated
}

// fixtures are made once: RSA key generation is the slow part of these tests.
var fixtures = sync.OnceValue(func() fixtureSet {
	ca := makeCA("socket-warp test SCEP CA", nil)
	return fixtureSet{ca: ca, ra: makeCA("socket-warp test SCEP RA", ca), stranger: makeCA("stranger", nil)}
})

func makeCA(cn string, parent *testCA) *testCA {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	issuer, issuerKey := tmpl, crypto.Signer(key)
	if parent != nil {
		issuer, issuerKey = parent.cert, parent.key
		tmpl.IsCA = false
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), issuerKey)
	if err != nil {
		panic(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return &testCA{cert: cert, key: key}
}

// repSpec is a CertRep for certRep to build.
type repSpec struct {
	status         scep.PKIStatus
	failInfo       scep.FailInfo
	envelope       []byte                // encrypted degenerate PKCS#7, SUCCESS only
	digest         asn1.ObjectIdentifier // nil: the process default
	txID           scep.TransactionID
	recipientNonce []byte
	signer         *x509.Certificate // the request's signer, for a tamper that re-encrypts
}

func (ca *testCA) certRep(s repSpec) ([]byte, error) {
	sd, err := pkcs7.NewSignedData(s.envelope)
	if err != nil {
		return nil, err
	}
	if s.digest != nil {
		sd.SetDigestAlgorithm(s.digest)
	}
	sn := make([]byte, 16)
	rand.Read(sn)
	attrs := []pkcs7.Attribute{
		{Type: oidTransactionID, Value: s.txID},
		{Type: oidPKIStatus, Value: s.status},
		{Type: oidMessageType, Value: scep.CertRep},
		{Type: oidSenderNonce, Value: sn},
		{Type: oidRecipientNonce, Value: s.recipientNonce},
	}
	if s.failInfo != "" {
		attrs = append(attrs, pkcs7.Attribute{Type: oidFailInfo, Value: s.failInfo})
	}
	if err := sd.AddSigner(ca.cert, ca.key, pkcs7.SignerInfoConfig{ExtraSignedAttributes: attrs}); err != nil {
		return nil, err
	}
	return sd.Finish()
}

type responder struct {
	ca      *testCA
	caCerts []*x509.Certificate // GetCACert: one is sent as DER, more as PKCS#7
	caps    string

	// Knobs, set before the first request.
	sha1     bool           // sign CertReps with SHA-1, as the reference does
	tamper   func(*repSpec) // change the CertRep before it is signed
	issue    func(tmpl *x509.Certificate, pub *crypto.PublicKey)
	override func(op string, w http.ResponseWriter, r *http.Request) bool // true: answered

	mu         sync.Mutex        // guards the following fields
	challenge  string            // the challenge a request must carry
	wantSigner *x509.Certificate // refuse requests not signed by this certificate
	pending    int               // answer PENDING this many times first; < 0: forever
	ops        []string          // operations, PKIOperation as "PKIOperation GET|POST"
	csrs       []*x509.CertificateRequest
	signers    []*x509.Certificate
	msgTypes   []scep.MessageType
}

func newResponder(challenge string) *responder {
	f := fixtures()
	return &responder{
		ca: f.ca, caCerts: []*x509.Certificate{f.ca.cert}, challenge: challenge,
		caps: "Renewal\nSHA-1\nSHA-256\nAES\nDES3\nSCEPStandard\nPOSTPKIOperation",
	}
}

// start serves the responder on a real loopback socket.
func (rs *responder) start(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(rs)
	t.Cleanup(srv.Close)
	return srv
}

// inMemory is a client that calls the responder directly, with no sockets
// and no goroutines: what synctest needs.
func (rs *responder) inMemory() *http.Client {
	return &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.Body != nil {
			defer r.Body.Close()
		}
		rec := httptest.NewRecorder()
		rs.ServeHTTP(rec, r)
		return rec.Result(), nil
	})}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (rs *responder) record(op string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.ops = append(rs.ops, op)
}

func (rs *responder) seen() []string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]string(nil), rs.ops...)
}

func (rs *responder) count(op string) int {
	n := 0
	for _, o := range rs.seen() {
		if o == op {
			n++
		}
	}
	return n
}

func (rs *responder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op := r.URL.Query().Get("operation")
	if op == "PKIOperation" {
		rs.record(op + " " + r.Method)
	} else {
		rs.record(op)
	}
	if rs.override != nil && rs.override(op, w, r) {
		return
	}
	rs.answer(op, w, r)
}

// answer is the responder without its override.
func (rs *responder) answer(op string, w http.ResponseWriter, r *http.Request) {
	switch op {
	case "GetCACaps":
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, rs.caps)
	case "GetCACert":
		if len(rs.caCerts) == 1 {
			w.Header().Set("Content-Type", typeCACert)
			w.Write(rs.caCerts[0].Raw)
			return
		}
		deg, err := scep.DegenerateCertificates(rs.caCerts)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", typeCARACert)
		w.Write(deg)
	case "PKIOperation":
		rep, err := rs.pkiOperation(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", typePKIMsg)
		w.Write(rep)
	default:
		http.Error(w, "unknown operation", http.StatusBadRequest)
	}
}

func (rs *responder) pkiOperation(r *http.Request) ([]byte, error) {
	var data []byte
	var err error
	if r.Method == http.MethodPost {
		data, err = io.ReadAll(r.Body)
	} else {
		data, err = base64.StdEncoding.DecodeString(r.URL.Query().Get("message"))
	}
	if err != nil {
		return nil, err
	}
	msg, err := scep.ParsePKIMessage(data)
	if err != nil {
		return nil, err
	}
	p7, err := pkcs7.Parse(data)
	if err != nil {
		return nil, err
	}
	signer := p7.GetOnlySigner()
	if err := msg.DecryptPKIEnvelope(rs.ca.cert, rs.ca.key); err != nil {
		return nil, err
	}
	rs.mu.Lock()
	rs.csrs = append(rs.csrs, msg.CSR)
	rs.signers = append(rs.signers, signer)
	rs.msgTypes = append(rs.msgTypes, msg.MessageType)
	pending := rs.pending != 0
	if rs.pending > 0 {
		rs.pending--
	}
	refuse := msg.ChallengePassword != rs.challenge || (rs.wantSigner != nil && !signer.Equal(rs.wantSigner))
	rs.mu.Unlock()

	spec := repSpec{txID: msg.TransactionID, recipientNonce: msg.SenderNonce, signer: signer}
	if rs.sha1 {
		spec.digest = pkcs7.OIDDigestAlgorithmSHA1
	}
	custom := rs.sha1 || rs.tamper != nil
	if refuse {
		if !custom {
			rep, err := msg.Fail(rs.ca.cert, rs.ca.key, scep.BadRequest)
			if err != nil {
				return nil, err
			}
			return rep.Raw, nil
		}
		spec.status, spec.failInfo = scep.FAILURE, scep.BadRequest
		return rs.finish(spec)
	}
	if pending {
		spec.status = scep.PENDING
		return rs.finish(spec)
	}

	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      msg.CSR.Subject,
		DNSNames:     msg.CSR.DNSNames,
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	var pub crypto.PublicKey = msg.CSR.PublicKey
	if rs.issue != nil {
		rs.issue(tmpl, &pub)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, rs.ca.cert, pub, rs.ca.key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if !custom {
		rep, err := msg.Success(rs.ca.cert, rs.ca.key, cert)
		if err != nil {
			return nil, err
		}
		return rep.Raw, nil
	}
	deg, err := scep.DegenerateCertificates([]*x509.Certificate{cert})
	if err != nil {
		return nil, err
	}
	// Encrypted to the request's signer, as the reference server does.
	if spec.envelope, err = pkcs7.Encrypt(deg, []*x509.Certificate{signer}); err != nil {
		return nil, err
	}
	spec.status = scep.SUCCESS
	return rs.finish(spec)
}

func (rs *responder) finish(spec repSpec) ([]byte, error) {
	if rs.tamper != nil {
		rs.tamper(&spec)
	}
	return rs.ca.certRep(spec)
}
