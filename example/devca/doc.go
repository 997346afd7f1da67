// Package devca is the development SCEP certificate authority of socket-warp.
//
// It stands in for a procube-open/scep server (a micromdm/scep fork) so that
// sw-connector can enrol and renew its client certificate and sw-listener can
// check client certificates, without MySQL or Docker. It speaks the same wire
// formats as that server; where the reference is weak, devca is stricter or
// answers where the reference drops the connection. Every difference is listed
// under "Deviations from the reference" below.
//
// # State
//
// Everything lives in one JSON file (mode 0600: it holds the CA key), written
// atomically (temporary file, fsync, rename, fsync of the directory) after
// every change: the CA certificate and key, the listener's server certificate
// and key made by [Init], the clients (uid, attributes), the secrets (only a
// salted SHA-256 of each, compared in constant time), every issued certificate
// (serial, uid, validity, revocation time) and the serial and CRL counters.
// One process owns the file: the sw-devca command talks to a running server
// through the admin API instead of editing the file beside it.
//
// A client's status is derived from its secret and certificates at the moment
// it is asked for, so nothing has to run in the background:
//
//	INACTIVE   no usable certificate and no secret (new, revoked or expired)
//	ISSUABLE   no usable certificate, an activation secret is waiting
//	ISSUED     one usable certificate
//	UPDATABLE  a usable certificate and an update secret is waiting
//	PENDING    renewed: the old certificate still works until its revocation
//	           time (now + the secret's pending period), then ISSUED again
//
// # Public endpoints ([CA.Handler])
//
//	GET  /scep?operation=GetCACaps
//	     200 text/plain, one capability per line:
//	     Renewal SHA-1 SHA-256 AES DES3 SCEPStandard POSTPKIOperation
//	GET  /scep?operation=GetCACert
//	     200 application/x-x509-ca-cert, the CA certificate in DER
//	POST /scep?operation=PKIOperation           body: the DER PKIMessage
//	GET  /scep?operation=PKIOperation&message=  standard base64 (URL-safe and
//	     unpadded base64 are accepted too)
//	     200 application/x-pki-message, a CertRep (SUCCESS or FAILURE)
//	     400 text/plain when the body is not a signed SCEP request at all
//	GET  /scep?operation=GetCRL
//	     200 application/pkix-crl, a DER CRL signed by the CA
//	GET  /api/cert/verify   header X-Mtls-Clientcert: URL-encoded PEM leaf
//	     200 {"uid":"swc-1","status":"ISSUED","attributes":{}}
//	     401 {"message":"Failed to verify certificate", "certificate":..., "cacert":...}
//	     401 {"message":"Certificate is expired", "notBefore":..., "notAfter":..., "Date":...}
//	     401 {"message":"Certificate is revoked"}
//	     401 {"message":"User Not Found", "user":"<CN>"}
//	     400 {"message":"No Certificate"} (header missing; a repeated header is a 400 too)
//	     400 {"message":"Decode header failed"} / {"message":"Parse Certificate failed"}
//
// The checks run in the reference's order: parse, validity period, chain to
// the CA with extended key usage clientAuth, revocation, client lookup by CN.
//
// # Enrolment (PKIOperation)
//
// The CSR carries the challenge password "<uid>\<secret>" (one backslash).
// PKCSReq needs a registered uid, an unexpired activation secret and a CSR
// whose common name is the uid. RenewalReq needs an update secret and must be
// signed by the uid's current certificate from this CA (unexpired, not
// revoked); the reply is encrypted to that certificate. The issued certificate
// has subject CN=<uid> only, extended key usage clientAuth, key usage
// digitalSignature and the configured validity (365 days by default). Every
// refusal is an HTTP 200 CertRep with pkiStatus FAILURE and failInfo
// badRequest; the reason is logged (never the secret). A refused request does
// not use up the secret; a successful one does.
//
// # Admin endpoints ([CA.AdminHandler])
//
// Served on their own listener (loopback by default). JSON in, JSON out;
// errors are {"message":"..."}. [WithAdminToken] adds an optional bearer
// token, compared in constant time.
//
//	GET  /admin/api/ping            200 text/plain "pong"
//	POST /admin/api/client/add      {"uid":"swc-1","attributes":{}}  → 200, empty body
//	POST /admin/api/secret/create   {"target":"swc-1","secret":"","available_period":"24h","pending_period":"1h"}
//	     → 201 {"target":"swc-1","secret":"...","type":"ACTIVATE"|"UPDATE",
//	            "delete_at":"RFC 3339","pending_period":"1h0m0s"}
//	POST /admin/api/client/revoke   {"uid":"swc-1"} → 200, empty body (PUT accepted too)
//
// # Process-wide pkcs7 settings
//
// github.com/smallstep/pkcs7 keeps its algorithms in package variables. This
// package's init sets them, once, to the values sw-connector's SCEP client sets
// too, so the two agree when they share a process:
//
//	pkcs7.ContentEncryptionAlgorithm = pkcs7.EncryptionAlgorithmAES256CBC
//	pkcs7.SetDefaultDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
//
// Requests encrypted with DES, 3DES, AES-128 or AES-256 are all accepted.
//
// # Deviations from the reference
//
//   - The CSR's common name must equal the uid of the challenge; the reference
//     signs any subject. Subject alternative names in the CSR are not copied.
//   - The message type must fit the secret (PKCSReq with an activation secret,
//     RenewalReq with an update secret) and a RenewalReq must be signed by the
//     uid's current certificate; the reference only looks at the challenge.
//   - An unknown uid gets a FAILURE CertRep; the reference drops the connection.
//   - Replies are signed with SHA-256 and encrypted with AES-256-CBC; the
//     reference signs with SHA-1 and encrypts with single DES.
//   - The CA key usage includes keyEncipherment (besides digitalSignature,
//     keyCertSign and cRLSign), so clients that select recipients by
//     keyEncipherment work.
//   - /api/cert/verify answers a missing X-Mtls-Clientcert header with 400
//     (the reference: 500 "No Certificate") and a header that is not
//     URL-encoded PEM with 400 (the reference drops the connection). A PEM
//     block whose certificate does not parse is a 401 "Failed to verify
//     certificate".
//   - Admin errors are 4xx with a JSON message where the reference answers 500
//     (bad JSON, unknown client, wrong state); 409 for a duplicate uid.
//   - /admin/api/secret/create generates the secret when "secret" is empty and
//     returns it in a 201 JSON body (the reference answers 201 with no body).
//     "available_period" defaults to 24h and "pending_period" to 0.
//   - Secrets are stored hashed; the reference stores them in plain text.
//   - GetCRL is served as application/pkix-crl and regenerated whenever the
//     set of revoked certificates changes.
package devca
