package fsm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"time"
)

// KindCertificate is a TLS certificate https listeners name. Its private
// key is sealed with the cluster's secrets key before it is proposed, so
// the log and snapshots hold only ciphertext, and no API answer carries
// the key or its ciphertext.
const KindCertificate Kind = "certificate"

// Certificate is a certificate and (sealed) key, or the request for one an
// ACME issuer fills in (see CertificateStatus).
type Certificate struct {
	Name        string          `json:"name"`
	ModifyIndex uint64          `json:"modify_index"`
	Spec        CertificateSpec `json:"spec"`
}

// CertificateSpec sets either Cert with Key (or EncryptedKey), or ACME.
//
// An operator sends Cert and Key (PEM). The admin API node checks the pair
// (parse, key matches the leaf, not expired), seals Key with the secrets
// key into EncryptedKey and proposes the spec without Key: a command that
// carries Key is refused. A spec with Cert and neither Key nor
// EncryptedKey keeps the stored sealed key when the stored certificate
// has the same Cert (re-applying an export, which never holds keys).
type CertificateSpec struct {
	// Cert is the PEM chain, leaf first.
	Cert string `json:"cert,omitempty"`
	// Key is the PEM private key; only ever in what an operator sends.
	Key string `json:"key,omitempty"`
	// EncryptedKey is Key sealed with the cluster's secrets key (see
	// package secrets, CertificateKeyAAD). Never in an API answer, and
	// the admin API takes it from no client: only a node seals.
	EncryptedKey string           `json:"encrypted_key,omitempty"`
	ACME         *CertificateACME `json:"acme,omitempty"`
}

// CertificateACME asks the cluster's ACME issuer for a certificate.
type CertificateACME struct {
	// Domains are the names the certificate covers (a leading "*." for a
	// wildcard), 1..maxACMEDomains.
	Domains []string `json:"domains"`
	// Issuer names the ACME issuer configuration to use.
	Issuer string `json:"issuer"`
}

// Certificate sources, as `rafter get certificates` shows them.
const (
	CertSourceInline = "inline"
	CertSourceACME   = "acme"
)

// Source is CertSourceACME for an ACME certificate, else CertSourceInline.
func (s *CertificateSpec) Source() string {
	if s.ACME != nil {
		return CertSourceACME
	}
	return CertSourceInline
}

// CertificateStatus is the issued material of an ACME certificate, written
// only by CertificateIssue commands (the leader's ACME engine). It is
// Config.CertificateStatus[name].
type CertificateStatus struct {
	// Cert is the issued PEM chain, leaf first; EncryptedKey its key sealed
	// like CertificateSpec.EncryptedKey (same AAD: the certificate's name).
	Cert         string    `json:"cert,omitempty"`
	EncryptedKey string    `json:"encrypted_key,omitempty"`
	NotBefore    time.Time `json:"not_before,omitzero"`
	NotAfter     time.Time `json:"not_after,omitzero"`
	// IssuedAt is the leader's clock when the material was committed.
	IssuedAt time.Time `json:"issued_at,omitzero"`
	// SpecIndex is the certificate's modify_index the material (or the
	// error) was for; below the certificate's current modify_index the
	// spec changed since and the material is due to be issued again.
	SpecIndex uint64 `json:"spec_index,omitempty"`
	// Error is the last failed attempt's message, cleared by the next
	// issued material; ErrorAt its time on the leader's clock.
	Error   string    `json:"error,omitempty"`
	ErrorAt time.Time `json:"error_at,omitzero"`
	// ModifyIndex is the entry that last changed the status.
	ModifyIndex uint64 `json:"modify_index"`
}

// CertificateIssue records the outcome of an ACME attempt for certificate
// Name: new material (Cert and EncryptedKey, sealed before proposing) or
// an Error (the material already issued stays). SpecIndex must be the
// certificate's current modify_index, so an attempt made for a spec that
// changed meanwhile is refused with ErrConflict. Time is the leader's clock.
type CertificateIssue struct {
	Name         string    `json:"name"`
	SpecIndex    uint64    `json:"spec_index"`
	Cert         string    `json:"cert,omitempty"`
	EncryptedKey string    `json:"encrypted_key,omitempty"`
	Error        string    `json:"error,omitempty"`
	Time         time.Time `json:"time,omitzero"`
}

// CmdCertificateIssue is the CertificateIssue command.
const CmdCertificateIssue CommandType = "certificate_issue"

func (*CertificateIssue) commandType() CommandType { return CmdCertificateIssue }

// Bounds on certificates.
const (
	// maxCertPEM bounds a PEM chain (spec.cert, issued material): a chain
	// of a few certificates is under 10 KiB.
	maxCertPEM = 64 << 10
	// maxKeyPEM bounds spec.key: an RSA 8192 PKCS#8 key is about 6.5 KiB.
	maxKeyPEM = 16 << 10
	// maxSealedKey bounds the sealed form of a key (base64 and framing).
	maxSealedKey = 32 << 10
	// maxCertChain bounds the certificates in one chain.
	maxCertChain = 8
	// maxCertNames bounds the DNS names of a leaf certificate: every one
	// becomes an SNI table entry on every node.
	maxCertNames = 1000
	// maxACMEDomains bounds acme.domains (the ACME CAs' own limit is 100).
	maxACMEDomains = 100
	// maxListenerCertificates bounds tls.certificates of one listener.
	maxListenerCertificates = 64
	// maxIssueError bounds CertificateIssue.Error.
	maxIssueError = 4 << 10
	// minRSABits and maxRSABits bound RSA keys: below 2048 is broken,
	// above 8192 one handshake costs a core for a noticeable time.
	minRSABits = 2048
	maxRSABits = 8192
)

// CertInfo is what a PEM chain says about itself, for listings.
type CertInfo struct {
	Domains   []string  `json:"domains,omitempty"` // the leaf's DNS names (SANs)
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	Subject   string    `json:"subject,omitempty"`
	Issuer    string    `json:"issuer,omitempty"`
}

// ParseCertInfo parses a PEM chain (bounded as spec.cert is) and describes
// its leaf.
func ParseCertInfo(certPEM string) (CertInfo, error) {
	chain, err := parseCertChain("cert", certPEM)
	if err != nil {
		return CertInfo{}, err
	}
	return certInfo(chain[0]), nil
}

func certInfo(leaf *x509.Certificate) CertInfo {
	return CertInfo{
		Domains:   slices.Clone(leaf.DNSNames),
		NotBefore: leaf.NotBefore.UTC(),
		NotAfter:  leaf.NotAfter.UTC(),
		Subject:   leaf.Subject.CommonName,
		Issuer:    leaf.Issuer.CommonName,
	}
}

// parseCertChain decodes and parses a bounded PEM chain: only CERTIFICATE
// blocks, nothing but white space around them, 1..maxCertChain of them.
func parseCertChain(field, s string) ([]*x509.Certificate, error) {
	if strings.TrimSpace(s) == "" {
		return nil, invalidf(field, "required (a PEM certificate chain, leaf first)")
	}
	if err := maxLen(field, s, maxCertPEM); err != nil {
		return nil, err
	}
	rest := []byte(s)
	var chain []*x509.Certificate
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		n := len(chain)
		if b.Type != "CERTIFICATE" {
			return nil, invalidf(field, "PEM block %d is %q, want CERTIFICATE (is the key in the cert field?)", n, b.Type)
		}
		if n == maxCertChain {
			return nil, invalidf(field, "at most %d certificates in a chain", maxCertChain)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, invalidf(field, "certificate %d: %v", n, err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return nil, invalidf(field, "no PEM certificate found")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, invalidf(field, "data after the last PEM certificate is not PEM")
	}
	leaf := chain[0]
	if len(leaf.DNSNames) > maxCertNames {
		return nil, invalidf(field, "the certificate names %d DNS names, at most %d are allowed", len(leaf.DNSNames), maxCertNames)
	}
	if err := keySizeProblem(leaf.PublicKey); err != "" {
		return nil, invalidf(field, "leaf certificate: %s", err)
	}
	return chain, nil
}

// parsePrivateKey parses one PEM private key (PKCS#8, PKCS#1 or SEC 1).
func parsePrivateKey(field, s string) (crypto.Signer, error) {
	if strings.TrimSpace(s) == "" {
		return nil, invalidf(field, "required (a PEM private key)")
	}
	if err := maxLen(field, s, maxKeyPEM); err != nil {
		return nil, err
	}
	b, rest := pem.Decode([]byte(s))
	if b == nil {
		return nil, invalidf(field, "no PEM private key found")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, invalidf(field, "want exactly one PEM private key")
	}
	var k any
	var err error
	switch b.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	default:
		return nil, invalidf(field, "PEM block is %q, want PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY", b.Type)
	}
	if err != nil {
		return nil, invalidf(field, "malformed private key: %v", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, invalidf(field, "unsupported private key type %T", k)
	}
	if msg := keySizeProblem(signer.Public()); msg != "" {
		return nil, invalidf(field, "%s", msg)
	}
	return signer, nil
}

// keySizeProblem refuses key types and sizes a listener should not serve.
func keySizeProblem(pub any) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < minRSABits || n > maxRSABits {
			return fmt.Sprintf("RSA key of %d bits, want %d..%d", n, minRSABits, maxRSABits)
		}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return "ECDSA key on an unsupported curve (want P-256, P-384 or P-521)"
		}
	case ed25519.PublicKey:
	default:
		return fmt.Sprintf("unsupported public key type %T", pub)
	}
	return ""
}

// CheckCertificatePair parses a PEM chain and key and checks that the key
// belongs to the chain's leaf; errors name prefix+".cert" or prefix+".key".
// It is deterministic (validation of a spec that carries Key runs it).
func CheckCertificatePair(prefix, certPEM, keyPEM string) (CertInfo, error) {
	chain, err := parseCertChain(prefix+".cert", certPEM)
	if err != nil {
		return CertInfo{}, err
	}
	key, err := parsePrivateKey(prefix+".key", keyPEM)
	if err != nil {
		return CertInfo{}, err
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	pub, ok := key.Public().(equaler)
	if !ok || !pub.Equal(chain[0].PublicKey) {
		return CertInfo{}, invalidf(prefix+".key", "does not match the leaf certificate of %s.cert (subject %q)", prefix, chain[0].Subject.CommonName)
	}
	return certInfo(chain[0]), nil
}

// CheckCertificateTime refuses a leaf that has expired or is not valid yet
// at now. It needs a clock, so the admin API node calls it before
// proposing; Apply never does.
func CheckCertificateTime(field, certPEM string, now time.Time) error {
	chain, err := parseCertChain(field, certPEM)
	if err != nil {
		return err
	}
	leaf := chain[0]
	if now.After(leaf.NotAfter) {
		return invalidf(field, "the certificate expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return invalidf(field, "the certificate is not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// sealedProblem checks the shape of a sealed value: the fsm cannot open
// it, but it keeps it bounded and printable.
func sealedProblem(field, s string) error {
	if err := maxLen(field, s, maxSealedKey); err != nil {
		return err
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return invalidf(field, "not a sealed value (byte %d)", i)
		}
	}
	return nil
}

func validateCertificate(p string, s *CertificateSpec) error {
	if s.ACME != nil {
		if s.Cert != "" || s.Key != "" || s.EncryptedKey != "" {
			return invalidf(p+".acme", "set either acme or cert and key, not both")
		}
		a, ap := s.ACME, p+".acme"
		if len(a.Domains) == 0 {
			return invalidf(ap+".domains", "required (at least one domain)")
		}
		if err := maxItems(ap+".domains", len(a.Domains), maxACMEDomains); err != nil {
			return err
		}
		seen := make(map[string]int, len(a.Domains))
		for i, d := range a.Domains {
			f := fmt.Sprintf("%s.domains[%d]", ap, i)
			if msg := hostnameProblem(d, true); msg != "" {
				return invalidf(f, "%s", msg)
			}
			if j, dup := seen[strings.ToLower(d)]; dup {
				return invalidf(f, "%q is already listed as domains[%d]", d, j)
			}
			seen[strings.ToLower(d)] = i
		}
		if a.Issuer == "" {
			return invalidf(ap+".issuer", "required")
		}
		return validateName(ap+".issuer", a.Issuer)
	}
	if s.Cert == "" {
		return invalidf(p+".cert", "required (or set acme)")
	}
	if s.Key != "" && s.EncryptedKey != "" {
		return invalidf(p+".key", "set key or encrypted_key, not both")
	}
	if s.Key != "" {
		_, err := CheckCertificatePair(p, s.Cert, s.Key)
		return err
	}
	if _, err := parseCertChain(p+".cert", s.Cert); err != nil {
		return err
	}
	if s.EncryptedKey != "" {
		return sealedProblem(p+".encrypted_key", s.EncryptedKey)
	}
	return nil
}

// sealCertificate finishes a certificate spec a command puts: a plaintext
// key is refused (it must never reach the log), and an inline certificate
// without a key keeps the stored sealed key when its chain is unchanged.
func sealCertificate(c *Config, p, name string, spec any, canon []byte) (any, []byte, error) {
	cs, ok := spec.(*CertificateSpec)
	if !ok || cs.ACME != nil {
		return spec, canon, nil
	}
	if cs.Key != "" {
		return nil, nil, invalidf(p+".key", "a private key must be sealed with the secrets key (--secrets-key-file) before it is proposed; send it through the admin API")
	}
	if cs.EncryptedKey != "" {
		return spec, canon, nil
	}
	cur, ok := c.Certificates[name]
	if !ok || cur.Spec.ACME != nil || cur.Spec.Cert != cs.Cert || cur.Spec.EncryptedKey == "" {
		return nil, nil, invalidf(p+".key", "required: certificate %q has no stored key for this cert", name)
	}
	ns := *cs
	ns.EncryptedKey = cur.Spec.EncryptedKey
	return &ns, canonicalJSON(&ns), nil
}

// Redacted is the spec as the API shows it: without Key or EncryptedKey.
func (s CertificateSpec) Redacted() CertificateSpec {
	s.Key, s.EncryptedKey = "", ""
	return s
}

// Redacted is the status as the API shows it: without EncryptedKey.
func (s CertificateStatus) Redacted() CertificateStatus {
	s.EncryptedKey = ""
	return s
}

// publicJSON is the canonical JSON of a spec as reads show it: a
// certificate's key or an EAB HMAC key, even sealed, never leaves the
// replicated state.
func publicJSON(spec any) []byte {
	if cs, ok := spec.(*CertificateSpec); ok {
		r := cs.Redacted()
		return canonicalJSON(&r)
	}
	if is, ok := spec.(*ACMEIssuerSpec); ok {
		r := is.Redacted()
		return canonicalJSON(&r)
	}
	return canonicalJSON(spec)
}

// Redacted returns a copy of c without any sealed value (certificate keys,
// issued keys, session-ticket keys): the document as the admin API may
// show or export it. It shares everything else with c.
func (c *Config) Redacted() *Config {
	if c == nil {
		return nil
	}
	r := *c
	if len(c.Certificates) > 0 {
		r.Certificates = make(map[string]*Certificate, len(c.Certificates))
		for k, v := range c.Certificates {
			nv := *v
			nv.Spec = v.Spec.Redacted()
			r.Certificates[k] = &nv
		}
	}
	if len(c.CertificateStatus) > 0 {
		r.CertificateStatus = make(map[string]*CertificateStatus, len(c.CertificateStatus))
		for k, v := range c.CertificateStatus {
			nv := v.Redacted()
			r.CertificateStatus[k] = &nv
		}
	}
	r.TicketKeys = nil
	redactACME(&r)
	return &r
}

func nextCertificateIssue(c *Config, index uint64, cmd *CertificateIssue) (*Config, error) {
	cert, ok := c.Certificates[cmd.Name]
	if !ok {
		return nil, notFoundf("name", "certificate %q not found", cmd.Name)
	}
	if cert.Spec.ACME == nil {
		return nil, invalidf("name", "certificate %q is not an acme certificate", cmd.Name)
	}
	if cmd.SpecIndex != cert.ModifyIndex {
		return nil, conflictf("spec_index", "certificate %q has modify_index %d, not %d", cmd.Name, cert.ModifyIndex, cmd.SpecIndex)
	}
	var st CertificateStatus
	if cur := c.CertificateStatus[cmd.Name]; cur != nil {
		st = *cur
	}
	st.SpecIndex = cmd.SpecIndex
	st.ModifyIndex = index
	switch {
	case cmd.Cert != "":
		if cmd.Error != "" {
			return nil, invalidf("error", "set either cert with encrypted_key or error")
		}
		chain, err := parseCertChain("cert", cmd.Cert)
		if err != nil {
			return nil, err
		}
		if cmd.EncryptedKey == "" {
			return nil, invalidf("encrypted_key", "required with cert")
		}
		if err := sealedProblem("encrypted_key", cmd.EncryptedKey); err != nil {
			return nil, err
		}
		st.Cert, st.EncryptedKey = cmd.Cert, cmd.EncryptedKey
		st.NotBefore, st.NotAfter = chain[0].NotBefore.UTC(), chain[0].NotAfter.UTC()
		st.IssuedAt = cmd.Time.UTC()
		st.Error, st.ErrorAt = "", time.Time{}
	case cmd.Error != "":
		if cmd.EncryptedKey != "" {
			return nil, invalidf("encrypted_key", "only valid with cert")
		}
		if err := maxLen("error", cmd.Error, maxIssueError); err != nil {
			return nil, err
		}
		st.Error, st.ErrorAt = cmd.Error, cmd.Time.UTC()
	default:
		return nil, invalidf("cert", "required (or error)")
	}
	b := newBuilder(c, index)
	b.certificateStatus()[cmd.Name] = &st
	return b.c, nil
}

// certificateUser names the first listener (by name) that names the
// certificate, or returns "".
func certificateUser(c *Config, kind Kind, name string) string {
	if kind != KindCertificate {
		return ""
	}
	for _, ln := range sortedKeys(c.Listeners) {
		if t := c.Listeners[ln].Spec.TLS; t != nil && slices.Contains(t.Certificates, name) {
			return ln
		}
	}
	return ""
}

// checkListenerCertificates refuses a listener that names a certificate
// the document does not have.
func checkListenerCertificates(c *Config, l *Listener, p string) error {
	t := l.Spec.TLS
	if t == nil {
		return nil
	}
	for i, n := range t.Certificates {
		if _, ok := c.Certificates[n]; !ok {
			return invalidf(fmt.Sprintf("%s.tls.certificates[%d]", p, i), "certificate %q does not exist", n)
		}
	}
	return nil
}

// restoreCertificateStatus keeps the issued material of the restored
// document's ACME certificates whose spec the restore kept unchanged.
func restoreCertificateStatus(b *builder, in *Config) error {
	for _, name := range sortedKeys(in.CertificateStatus) {
		st := in.CertificateStatus[name]
		p := "certificate_status/" + name
		if st == nil {
			return invalidf(p, "null status")
		}
		cert, ok := b.c.Certificates[name]
		if !ok || cert.Spec.ACME == nil {
			continue
		}
		if st.Cert != "" && st.EncryptedKey == "" {
			// A redacted backup (GET /v1/snapshot) carries no keys: keep
			// the material this cluster has for the same chain, else
			// leave the certificate to be issued again.
			cur := b.base.CertificateStatus[name]
			if cur == nil || cur.Cert != st.Cert {
				continue
			}
			st = &CertificateStatus{}
			*st = *in.CertificateStatus[name]
			st.EncryptedKey = cur.EncryptedKey
		}
		if st.Cert != "" {
			if _, err := parseCertChain(p+".cert", st.Cert); err != nil {
				return err
			}
			if err := sealedProblem(p+".encrypted_key", st.EncryptedKey); err != nil {
				return err
			}
		}
		if err := maxLen(p+".error", st.Error, maxIssueError); err != nil {
			return err
		}
		ns := *st
		ns.SpecIndex = cert.ModifyIndex
		ns.ModifyIndex = b.index
		b.certificateStatus()[name] = &ns
	}
	return nil
}
