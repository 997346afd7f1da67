package devca

import (
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

// crlValidity is the span between a CRL's thisUpdate and nextUpdate. A CRL is
// made again when the revoked set changes or half of this span has passed.
const crlValidity = time.Hour

type crlCache struct {
	der        []byte
	key        string // the revoked serials the CRL lists
	thisUpdate time.Time
}

// CRL returns a DER CRL signed by the CA that lists every certificate revoked
// by now and not yet expired.
func (ca *CA) CRL() ([]byte, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if ca.closed {
		return nil, ErrClosed
	}
	now := ca.now()
	var entries []x509.RevocationListEntry
	var serials []string
	for _, c := range ca.st.Certs {
		if !c.revoked(now) || !now.Before(c.NotAfter) {
			continue
		}
		sn, ok := new(big.Int).SetString(c.Serial, 16)
		if !ok {
			return nil, fmt.Errorf("devca: state file %s: bad serial %q", ca.path, c.Serial)
		}
		entries = append(entries, x509.RevocationListEntry{
			SerialNumber:   sn,
			RevocationTime: *c.RevokedAt,
			ReasonCode:     c.Reason,
		})
		serials = append(serials, c.Serial)
	}
	slices.Sort(serials)
	key := strings.Join(serials, ",")
	if ca.crl.der != nil && ca.crl.key == key && now.Sub(ca.crl.thisUpdate) < crlValidity/2 {
		return ca.crl.der, nil
	}

	var number uint64
	if err := ca.mutateLocked(func(st *state) error {
		st.CRLNumber++
		number = st.CRLNumber
		return nil
	}); err != nil {
		return nil, err
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    new(big.Int).SetUint64(number),
		ThisUpdate:                now.Add(-time.Minute),
		NextUpdate:                now.Add(crlValidity),
		RevokedCertificateEntries: entries,
	}, ca.caCert, ca.caKey)
	if err != nil {
		return nil, fmt.Errorf("devca: sign CRL: %w", err)
	}
	ca.crl = crlCache{der: der, key: key, thisUpdate: now}
	ca.log.Info("crl made", zap.Uint64("crl_number", number), zap.Strings("serials", serials))
	return der, nil
}
