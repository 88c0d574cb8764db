package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/secrets"
)

// errNoSecretsKey: a certificate with a private key arrived at a node that
// cannot seal it. Not the client's fault, and no retry helps: 412.
var errNoSecretsKey = errors.New("this node has no secrets key, so it cannot store a private key: start every node with the same --secrets-key-file (write one with `rafter keygen FILE`)")

// CodeNoSecretsKey is the error code of errNoSecretsKey.
const CodeNoSecretsKey = "no_secrets_key"

// sealKeys replaces the plaintext key of every certificate among objs by
// its sealed form, after checking the pair and its validity period, and
// the EAB HMAC key of every acme_issuer likewise (see sealEABKey). prefix
// gives the field path of objs[i]'s spec. A certificate whose chain and
// key equal the stored ones keeps the stored sealed key, so re-applying a
// manifest changes nothing.
func (s *server) sealKeys(objs []fsm.Object, prefix func(i int) string) error {
	cur := s.store.Config()
	for i, o := range objs {
		if o.Kind == fsm.KindACMEIssuer {
			if err := s.sealEABKey(cur, &objs[i], prefix(i)); err != nil {
				return err
			}
			continue
		}
		if o.Kind != fsm.KindCertificate {
			continue
		}
		p := prefix(i)
		v, err := fsm.DecodeSpec(o.Kind, o.Spec)
		if err != nil {
			return reprefix(err, p)
		}
		cs := v.(*fsm.CertificateSpec)
		if cs.EncryptedKey != "" {
			// Only a node seals: a sealed value from a client could not
			// be checked against the chain (restore a backup instead).
			return &fsm.FieldError{Field: p + ".encrypted_key", Message: "set by the node that stores the key: send key (PEM) instead", Err: fsm.ErrInvalid}
		}
		if cs.Key == "" {
			continue
		}
		if _, err := fsm.CheckCertificatePair(p, cs.Cert, cs.Key); err != nil {
			return err
		}
		if err := fsm.CheckCertificateTime(p+".cert", cs.Cert, s.now()); err != nil {
			return err
		}
		if s.cfg.Secrets == nil {
			return &fsm.FieldError{Field: p + ".key", Message: errNoSecretsKey.Error(), Err: errNoSecretsKey}
		}
		aad := secrets.CertificateKeyAAD(o.Name)
		sealed := ""
		if cur != nil {
			// Reused only when sealed with the current sealing key, so that
			// re-applying after a secrets key rotation re-seals.
			if old, ok := cur.Certificates[o.Name]; ok && old.Spec.Cert == cs.Cert && sealedWith(old.Spec.EncryptedKey) == s.cfg.Secrets.ID() {
				if pt, err := s.cfg.Secrets.Open(old.Spec.EncryptedKey, aad); err == nil && bytes.Equal(pt, []byte(cs.Key)) {
					sealed = old.Spec.EncryptedKey
				}
			}
		}
		if sealed == "" {
			if sealed, err = s.cfg.Secrets.Seal([]byte(cs.Key), aad); err != nil {
				return fmt.Errorf("%s.key: %w", p, err)
			}
		}
		cs.Key, cs.EncryptedKey = "", sealed
		b, err := json.Marshal(cs)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		objs[i].Spec = b
	}
	return nil
}

// sealEABKey replaces the plaintext EAB HMAC key of issuer o by its sealed
// form, p being the field path of o's spec. An unchanged key id and key
// keep the stored sealed key, so re-applying a manifest changes nothing.
func (s *server) sealEABKey(cur *fsm.Config, o *fsm.Object, p string) error {
	v, err := fsm.DecodeSpec(o.Kind, o.Spec)
	if err != nil {
		return reprefix(err, p)
	}
	is := v.(*fsm.ACMEIssuerSpec)
	if is.EAB == nil {
		return nil
	}
	if is.EAB.EncryptedHMACKey != "" {
		// Only a node seals, as for certificate keys.
		return &fsm.FieldError{Field: p + ".eab.encrypted_hmac_key", Message: "set by the node that stores the key: send hmac_key instead", Err: fsm.ErrInvalid}
	}
	if is.EAB.HMACKey == "" {
		return nil
	}
	if err := fsm.CheckEABHMACKey(p+".eab.hmac_key", is.EAB.HMACKey); err != nil {
		return err
	}
	if s.cfg.Secrets == nil {
		return &fsm.FieldError{Field: p + ".eab.hmac_key", Message: errNoSecretsKey.Error(), Err: errNoSecretsKey}
	}
	aad := secrets.ACMEEABKeyAAD(o.Name)
	sealed := ""
	if cur != nil {
		// Reused only when sealed with the current sealing key, so that
		// re-applying after a secrets key rotation re-seals.
		if old, ok := cur.ACMEIssuers[o.Name]; ok && old.Spec.EAB != nil && old.Spec.EAB.KeyID == is.EAB.KeyID &&
			sealedWith(old.Spec.EAB.EncryptedHMACKey) == s.cfg.Secrets.ID() {
			if pt, err := s.cfg.Secrets.Open(old.Spec.EAB.EncryptedHMACKey, aad); err == nil && bytes.Equal(pt, []byte(is.EAB.HMACKey)) {
				sealed = old.Spec.EAB.EncryptedHMACKey
			}
		}
	}
	if sealed == "" {
		if sealed, err = s.cfg.Secrets.Seal([]byte(is.EAB.HMACKey), aad); err != nil {
			return fmt.Errorf("%s.eab.hmac_key: %w", p, err)
		}
	}
	e := *is.EAB
	e.HMACKey, e.EncryptedHMACKey = "", sealed
	is.EAB = &e
	b, err := json.Marshal(is)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	o.Spec = b
	return nil
}

// sealedWith is the id of the key that sealed s ("" when unreadable).
func sealedWith(s string) string {
	id, err := secrets.SealedKeyID(s)
	if err != nil {
		return ""
	}
	return id
}

// reprefix moves a field error from DecodeSpec's "spec..." path to p.
func reprefix(err error, p string) error {
	var fe *fsm.FieldError
	if errors.As(err, &fe) && p != "spec" {
		rest, _ := cutPrefix(fe.Field, "spec")
		return &fsm.FieldError{Field: p + rest, Message: fe.Message, Err: fe.Err}
	}
	return err
}

func cutPrefix(s, p string) (string, bool) {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):], true
	}
	return s, false
}

// certificateView describes certificate name of cfg for reads.
func certificateView(cfg *fsm.Config, name string) *api.CertificateView {
	c, ok := cfg.Certificates[name]
	if !ok || c == nil {
		return nil
	}
	v := &api.CertificateView{Source: c.Spec.Source()}
	chain := c.Spec.Cert
	if c.Spec.ACME != nil {
		v.Domains = slices.Clone(c.Spec.ACME.Domains)
		if st := cfg.CertificateStatus[name]; st != nil {
			chain = st.Cert
			v.Issued = st.Cert != ""
			v.IssuedAt = st.IssuedAt
			v.Stale = v.Issued && st.SpecIndex < c.ModifyIndex
			v.Error, v.ErrorAt = st.Error, st.ErrorAt
		}
		v.ACME = acmeOrderView(cfg.ACMEStatus[name])
	}
	if chain != "" {
		if info, err := fsm.ParseCertInfo(chain); err == nil {
			v.Domains = info.Domains
			v.NotBefore, v.NotAfter = info.NotBefore, info.NotAfter
			v.Subject, v.Issuer = info.Subject, info.Issuer
		}
	}
	for _, ln := range sortedNames(cfg.Listeners) {
		if t := cfg.Listeners[ln].Spec.TLS; t != nil && slices.Contains(t.Certificates, name) {
			v.Listeners = append(v.Listeners, ln)
		}
	}
	return v
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// noSecretsKeyStatus maps errNoSecretsKey (see errorStatus).
func noSecretsKeyStatus(err error) (int, api.ErrorDetail) {
	return http.StatusPreconditionFailed, api.ErrorDetail{Code: CodeNoSecretsKey, Message: err.Error()}
}

func (s *server) now() time.Time {
	if s.cfg.Now != nil {
		return s.cfg.Now()
	}
	return time.Now()
}
