package fsm

import (
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// KindACMEIssuer is an ACME certificate authority that certificates with
// spec.acme name as their issuer.
const KindACMEIssuer Kind = "acme_issuer"

// The challenge types an issuer may use.
const (
	ChallengeHTTP01    = "http-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
)

// The states of an ACME certificate's order (ACMEStatus.State).
const (
	ACMEOrdering = "ordering" // an order is being driven by the leader
	ACMEValid    = "valid"    // a certificate was issued; renewed at RenewAt
	ACMEFailed   = "failed"   // the last order failed; retried at NextAttempt
)

// Bounds of the ACME state. Tokens and key authorizations are short
// base64url strings (RFC 8555 §8.1: a token has at least 128 bits of
// entropy); the bounds only keep a confused or hostile leader from
// bloating every node's memory.
const (
	maxACMEURL        = 2048
	maxACMEEmail      = 254
	maxACMERoots      = 64 << 10
	maxACMEEABKeyID   = 256
	maxACMEEABHMAC    = 512
	maxACMEToken      = 256
	maxACMEKeyAuth    = 512
	maxACMEChallenges = 1000
	maxACMEError      = 2048
)

// ACMEIssuer is an ACME CA and the account rafter holds there.
type ACMEIssuer struct {
	Name        string         `json:"name"`
	ModifyIndex uint64         `json:"modify_index"`
	Spec        ACMEIssuerSpec `json:"spec"`
}

// ACMEIssuerSpec is the operator-supplied part of an issuer.
type ACMEIssuerSpec struct {
	// Directory is the https URL of the CA's ACME directory.
	Directory string `json:"directory"`
	// Email is the account's contact address, if any.
	Email string `json:"email,omitempty"`
	// EAB is the external account binding some CAs require.
	EAB *ACMEEAB `json:"eab,omitempty"`
	// CARoots are PEM certificates trusted for the directory's TLS, for a
	// private CA; empty means the system roots.
	CARoots string `json:"ca_roots,omitempty"`
	// Challenge is http-01 (the default) or tls-alpn-01.
	Challenge string `json:"challenge,omitempty"`
}

// ACMEEAB is an external account binding: the key id and the base64url
// HMAC key the CA handed out.
//
// The HMAC key is sealed at rest like a certificate's key: an operator
// sends HMACKey, the admin API node seals it with the secrets key into
// EncryptedHMACKey and proposes the spec without HMACKey; a command that
// carries HMACKey is refused. A binding with neither keeps the stored
// sealed key when the key id is unchanged (re-applying an export, which
// never holds keys).
type ACMEEAB struct {
	KeyID string `json:"kid"`
	// HMACKey is the plaintext key; only ever in what an operator sends.
	HMACKey string `json:"hmac_key,omitempty"`
	// EncryptedHMACKey is HMACKey sealed with the cluster's secrets key
	// (see package secrets, ACMEEABKeyAAD). Never in an API answer, and
	// the admin API takes it from no client: only a node seals.
	EncryptedHMACKey string `json:"encrypted_hmac_key,omitempty"`
}

// CheckEABHMACKey checks a plaintext EAB HMAC key against its bound. The
// admin API node calls it before sealing: once sealed, Apply sees only the
// sealed form's (larger) bound.
func CheckEABHMACKey(field, key string) error {
	return maxLen(field, key, maxACMEEABHMAC)
}

// ChallengeType is the issuer's challenge type, defaulted.
func (s *ACMEIssuerSpec) ChallengeType() string {
	if s.Challenge == "" {
		return ChallengeHTTP01
	}
	return s.Challenge
}

func validateACMEIssuer(p string, s *ACMEIssuerSpec) error {
	if s.Directory == "" {
		return invalidf(p+".directory", "required")
	}
	if err := firstErr(
		maxLen(p+".directory", s.Directory, maxACMEURL),
		maxLen(p+".email", s.Email, maxACMEEmail),
		maxLen(p+".ca_roots", s.CARoots, maxACMERoots),
	); err != nil {
		return err
	}
	u, err := url.Parse(s.Directory)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return invalidf(p+".directory", "%q is not an https URL", s.Directory)
	}
	if s.Email != "" && (!strings.Contains(s.Email, "@") || strings.ContainsAny(s.Email, " \t\r\n,<>")) {
		return invalidf(p+".email", "%q is not an email address", s.Email)
	}
	switch s.Challenge {
	case "", ChallengeHTTP01, ChallengeTLSALPN01:
	default:
		return invalidf(p+".challenge", "%q is not http-01 or tls-alpn-01", s.Challenge)
	}
	if s.EAB != nil {
		switch {
		case s.EAB.KeyID == "":
			return invalidf(p+".eab.kid", "required")
		}
		if err := firstErr(
			maxLen(p+".eab.kid", s.EAB.KeyID, maxACMEEABKeyID),
			CheckEABHMACKey(p+".eab.hmac_key", s.EAB.HMACKey),
		); err != nil {
			return err
		}
		if s.EAB.HMACKey != "" && s.EAB.EncryptedHMACKey != "" {
			return invalidf(p+".eab.hmac_key", "set hmac_key or encrypted_hmac_key, not both")
		}
		if s.EAB.EncryptedHMACKey != "" {
			if err := sealedProblem(p+".eab.encrypted_hmac_key", s.EAB.EncryptedHMACKey); err != nil {
				return err
			}
		}
	}
	if s.CARoots != "" {
		if _, err := ParseCertificatesPEM(s.CARoots); err != nil {
			return invalidf(p+".ca_roots", "%v", err)
		}
	}
	return nil
}

// ParseCertificatesPEM parses every CERTIFICATE block of s; it refuses
// text with no certificate, with other blocks or with trailing garbage.
func ParseCertificatesPEM(s string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := []byte(s)
	for len(strings.TrimSpace(string(rest))) > 0 {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, invalidf("", "not PEM")
		}
		if b.Type != "CERTIFICATE" {
			return nil, invalidf("", "PEM block %q is not a CERTIFICATE", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, invalidf("", "certificate %d: %v", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, invalidf("", "no certificate")
	}
	return out, nil
}

// ACMEAccount is the account key the leader generated for an issuer,
// sealed with the cluster's secrets key; the state machine never sees it
// in the clear.
type ACMEAccount struct {
	Issuer string `json:"issuer"`
	// Directory is the issuer's directory the key was made for: when the
	// issuer moves to another CA the leader makes a new account.
	Directory string `json:"directory"`
	SealedKey string `json:"sealed_key"`
	// Index is the entry that stored the key (the CAS of a replacement).
	Index uint64    `json:"index"`
	Time  time.Time `json:"time,omitzero"`
}

// ACMEStatus is the order state of a certificate with spec.acme, keyed by
// the certificate's name. Only the leader's fenced ACME commands change
// it; the issued material itself is the certificate's CertificateStatus.
type ACMEStatus struct {
	State   string   `json:"state"`
	Issuer  string   `json:"issuer"`
	Domains []string `json:"domains"`
	// SpecIndex is the certificate's modify_index the order is for.
	SpecIndex uint64 `json:"spec_index"`
	// Token is the index of the entry that began the current order; Term
	// the highest leader term that began one. A command of an older order
	// or term is refused, so a deposed leader cannot commit.
	Token uint64 `json:"token"`
	Term  uint64 `json:"term"`
	// Orders counts the orders begun for this certificate.
	Orders      uint64    `json:"orders"`
	Failures    int       `json:"failures,omitempty"`
	Since       time.Time `json:"since,omitzero"`
	NotBefore   time.Time `json:"not_before,omitzero"`
	NotAfter    time.Time `json:"not_after,omitzero"`
	RenewAt     time.Time `json:"renew_at,omitzero"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	// IssuedIndex is the entry that stored the current certificate.
	IssuedIndex uint64 `json:"issued_index,omitempty"`
}

// ACMEChallenge is one pending challenge every node answers: for http-01
// `/.well-known/acme-challenge/TOKEN` with KeyAuth on its http listeners;
// for tls-alpn-01 a certificate for Domain built from KeyAuth on its
// https listeners when the client offers acme-tls/1.
type ACMEChallenge struct {
	Certificate string `json:"certificate"`
	Type        string `json:"type"`
	Domain      string `json:"domain"`
	Token       string `json:"token"`
	KeyAuth     string `json:"key_auth"`
}

// ACMEOrder begins an order for Certificate, whose spec (domains, issuer)
// must still be the one at modify_index SpecIndex: the leader of Term,
// having seen status token Token (0: no status yet), claims it. The new
// status token is this entry's index; every later command of the order
// carries it.
type ACMEOrder struct {
	Certificate string    `json:"certificate"`
	SpecIndex   uint64    `json:"spec_index"`
	Token       uint64    `json:"token"`
	Term        uint64    `json:"term"`
	Time        time.Time `json:"time,omitzero"`
}

// ACMEChallenges adds and removes challenges of the order with Token.
type ACMEChallenges struct {
	Certificate string          `json:"certificate"`
	Token       uint64          `json:"token"`
	Term        uint64          `json:"term"`
	Add         []ACMEChallenge `json:"add,omitempty"`
	Remove      []string        `json:"remove,omitempty"` // tokens
}

// ACMEResult ends the order with Token: issued (CertPEM and SealedKey
// set; they become the certificate's CertificateStatus, the key sealed as
// CertificateStatus.EncryptedKey is) or failed (Error set, NextAttempt
// the leader's back-off; material issued before stays). Either way the
// order's challenges are removed.
type ACMEResult struct {
	Certificate string    `json:"certificate"`
	Token       uint64    `json:"token"`
	Term        uint64    `json:"term"`
	CertPEM     string    `json:"cert_pem,omitempty"`
	SealedKey   string    `json:"sealed_key,omitempty"`
	RenewAt     time.Time `json:"renew_at,omitzero"`
	Error       string    `json:"error,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	Time        time.Time `json:"time,omitzero"`
}

// ACMEAccountSet stores the account key of Issuer. CAS is the index of
// the account it replaces (0: none may exist).
type ACMEAccountSet struct {
	Issuer    string    `json:"issuer"`
	Directory string    `json:"directory"`
	SealedKey string    `json:"sealed_key"`
	CAS       uint64    `json:"cas"`
	Term      uint64    `json:"term"`
	Time      time.Time `json:"time,omitzero"`
}

// Command types of ACME.
const (
	CmdACMEOrder      CommandType = "acme_order"      // ACMEOrder
	CmdACMEChallenges CommandType = "acme_challenges" // ACMEChallenges
	CmdACMEResult     CommandType = "acme_result"     // ACMEResult
	CmdACMEAccount    CommandType = "acme_account"    // ACMEAccountSet
)

func (*ACMEOrder) commandType() CommandType      { return CmdACMEOrder }
func (*ACMEChallenges) commandType() CommandType { return CmdACMEChallenges }
func (*ACMEResult) commandType() CommandType     { return CmdACMEResult }
func (*ACMEAccountSet) commandType() CommandType { return CmdACMEAccount }

func (b *builder) acmeIssuers() map[string]*ACMEIssuer { return own(b, "ai", &b.c.ACMEIssuers) }
func (b *builder) acmeAccounts() map[string]*ACMEAccount {
	return own(b, "aa", &b.c.ACMEAccounts)
}
func (b *builder) acmeStatus() map[string]*ACMEStatus { return own(b, "as", &b.c.ACMEStatus) }
func (b *builder) acmeChallenges() map[string]*ACMEChallenge {
	return own(b, "ach", &b.c.ACMEChallenges)
}

// dropChallenges removes every challenge of certificate name.
func (b *builder) dropChallenges(name string) {
	for tok, ch := range b.c.ACMEChallenges {
		if ch.Certificate == name {
			delete(b.acmeChallenges(), tok)
		}
	}
}

// checkACMEFence refuses a command of another order or an older term.
func checkACMEFence(c *Config, name string, token, term uint64) (*ACMEStatus, error) {
	st := c.ACMEStatus[name]
	switch {
	case st == nil:
		return nil, notFoundf("certificate", "certificate %q has no ACME order", name)
	case st.State != ACMEOrdering:
		return nil, conflictf("token", "certificate %q has no order running (%s)", name, st.State)
	case token != st.Token:
		return nil, conflictf("token", "certificate %q has order token %d, not %d", name, st.Token, token)
	case term < st.Term:
		return nil, conflictf("term", "certificate %q was ordered in term %d, after %d", name, st.Term, term)
	}
	return st, nil
}

func validateACMEDomains(p string, domains []string) error {
	if len(domains) == 0 {
		return invalidf(p, "required")
	}
	if err := maxItems(p, len(domains), maxACMEDomains); err != nil {
		return err
	}
	for i, d := range domains {
		if msg := hostnameProblem(d, false); msg != "" {
			return invalidf(p+"["+strconv.Itoa(i)+"]", "%s", msg)
		}
	}
	return nil
}

func nextACMEOrder(c *Config, index uint64, cmd *ACMEOrder) (*Config, error) {
	cert, err := acmeCertificate(c, cmd.Certificate, cmd.SpecIndex)
	if err != nil {
		return nil, err
	}
	issuer := cert.Spec.ACME.Issuer
	if _, ok := c.ACMEIssuers[issuer]; !ok {
		return nil, notFoundf("certificate", "certificate %q names acme_issuer %q, which does not exist", cmd.Certificate, issuer)
	}
	var prev ACMEStatus
	if st := c.ACMEStatus[cmd.Certificate]; st != nil {
		prev = *st
	}
	switch {
	case cmd.Token != prev.Token:
		return nil, conflictf("token", "certificate %q has order token %d, not %d", cmd.Certificate, prev.Token, cmd.Token)
	case cmd.Term < prev.Term:
		return nil, conflictf("term", "certificate %q was ordered in term %d, after %d", cmd.Certificate, prev.Term, cmd.Term)
	}
	ns := prev
	ns.State, ns.Issuer, ns.Domains, ns.SpecIndex = ACMEOrdering, issuer, slices.Clone(cert.Spec.ACME.Domains), cmd.SpecIndex
	ns.Token, ns.Term, ns.Orders, ns.Since = index, cmd.Term, prev.Orders+1, cmd.Time.UTC()
	ns.NextAttempt = time.Time{}
	b := newBuilder(c, index)
	b.dropChallenges(cmd.Certificate)
	b.acmeStatus()[cmd.Certificate] = &ns
	return b.c, nil
}

// acmeCertificate returns certificate name when it asks for ACME and its
// spec is still the one at modify_index specIndex.
func acmeCertificate(c *Config, name string, specIndex uint64) (*Certificate, error) {
	cert, ok := c.Certificates[name]
	switch {
	case !ok:
		return nil, notFoundf("certificate", "certificate %q not found", name)
	case cert.Spec.ACME == nil:
		return nil, invalidf("certificate", "certificate %q is not an acme certificate", name)
	case cert.ModifyIndex != specIndex:
		return nil, conflictf("spec_index", "certificate %q has modify_index %d, not %d", name, cert.ModifyIndex, specIndex)
	}
	return cert, nil
}

func nextACMEChallenges(c *Config, index uint64, cmd *ACMEChallenges) (*Config, error) {
	if _, err := checkACMEFence(c, cmd.Certificate, cmd.Token, cmd.Term); err != nil {
		return nil, err
	}
	if err := firstErr(
		maxItems("add", len(cmd.Add), maxACMEDomains),
		maxItems("remove", len(cmd.Remove), maxACMEDomains),
	); err != nil {
		return nil, err
	}
	b := newBuilder(c, index)
	chs := b.acmeChallenges()
	for i, tok := range cmd.Remove {
		if ch, ok := chs[tok]; ok {
			if ch.Certificate != cmd.Certificate {
				return nil, conflictf("remove["+strconv.Itoa(i)+"]", "challenge belongs to certificate %q", ch.Certificate)
			}
			delete(chs, tok)
		}
	}
	for i, ch := range cmd.Add {
		p := "add[" + strconv.Itoa(i) + "]"
		if ch.Certificate != cmd.Certificate {
			return nil, invalidf(p+".certificate", "must be %q", cmd.Certificate)
		}
		if err := validateACMEChallenge(p, &ch); err != nil {
			return nil, err
		}
		if old, ok := chs[ch.Token]; ok && old.Certificate != cmd.Certificate {
			return nil, conflictf(p+".token", "token is used by certificate %q", old.Certificate)
		}
		n := ch
		chs[ch.Token] = &n
	}
	if err := maxItems("add", len(chs), maxACMEChallenges); err != nil {
		return nil, conflictf("add", "the cluster holds at most %d challenges", maxACMEChallenges)
	}
	return b.c, nil
}

func validateACMEChallenge(p string, ch *ACMEChallenge) error {
	switch ch.Type {
	case ChallengeHTTP01, ChallengeTLSALPN01:
	default:
		return invalidf(p+".type", "%q is not http-01 or tls-alpn-01", ch.Type)
	}
	if msg := hostnameProblem(ch.Domain, false); msg != "" {
		return invalidf(p+".domain", "%s", msg)
	}
	switch {
	case ch.Token == "":
		return invalidf(p+".token", "required")
	case len(ch.Token) > maxACMEToken:
		return invalidf(p+".token", "at most %d bytes long", maxACMEToken)
	case !base64URL(ch.Token):
		return invalidf(p+".token", "not base64url")
	case ch.KeyAuth == "" || len(ch.KeyAuth) > maxACMEKeyAuth:
		return invalidf(p+".key_auth", "1 to %d bytes long", maxACMEKeyAuth)
	case !strings.HasPrefix(ch.KeyAuth, ch.Token+".") || !base64URL(ch.KeyAuth[len(ch.Token)+1:]):
		return invalidf(p+".key_auth", "not TOKEN.THUMBPRINT")
	}
	return nil
}

func base64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return s != ""
}

func nextACMEResult(c *Config, index uint64, cmd *ACMEResult) (*Config, error) {
	st, err := checkACMEFence(c, cmd.Certificate, cmd.Token, cmd.Term)
	if err != nil {
		return nil, err
	}
	if _, err := acmeCertificate(c, cmd.Certificate, st.SpecIndex); err != nil {
		return nil, err
	}
	ns := *st
	ns.Domains = slices.Clone(st.Domains)
	ns.Term = max(st.Term, cmd.Term)
	ns.Since = cmd.Time.UTC()
	var cs CertificateStatus
	if cur := c.CertificateStatus[cmd.Certificate]; cur != nil {
		cs = *cur
	}
	cs.SpecIndex, cs.ModifyIndex = st.SpecIndex, index
	switch {
	case cmd.Error != "" && (cmd.CertPEM != "" || cmd.SealedKey != ""):
		return nil, invalidf("error", "a result is either an error or a certificate")
	case cmd.Error != "":
		if err := maxLen("error", cmd.Error, maxACMEError); err != nil {
			return nil, err
		}
		ns.State, ns.LastError, ns.NextAttempt = ACMEFailed, cmd.Error, cmd.NextAttempt.UTC()
		ns.Failures = min(st.Failures+1, 1<<20)
		cs.Error, cs.ErrorAt = cmd.Error, cmd.Time.UTC()
	default:
		chain, err := parseCertChain("cert_pem", cmd.CertPEM)
		if err != nil {
			return nil, err
		}
		if cmd.SealedKey == "" {
			return nil, invalidf("sealed_key", "required with cert_pem")
		}
		if err := sealedProblem("sealed_key", cmd.SealedKey); err != nil {
			return nil, err
		}
		ns.State, ns.LastError, ns.Failures, ns.NextAttempt = ACMEValid, "", 0, time.Time{}
		ns.NotBefore, ns.NotAfter = chain[0].NotBefore.UTC(), chain[0].NotAfter.UTC()
		ns.RenewAt = cmd.RenewAt.UTC()
		ns.IssuedIndex = index
		cs.Cert, cs.EncryptedKey = cmd.CertPEM, cmd.SealedKey
		cs.NotBefore, cs.NotAfter, cs.IssuedAt = ns.NotBefore, ns.NotAfter, cmd.Time.UTC()
		cs.Error, cs.ErrorAt = "", time.Time{}
	}
	b := newBuilder(c, index)
	b.dropChallenges(cmd.Certificate)
	b.acmeStatus()[cmd.Certificate] = &ns
	b.certificateStatus()[cmd.Certificate] = &cs
	return b.c, nil
}

func nextACMEAccount(c *Config, index uint64, cmd *ACMEAccountSet) (*Config, error) {
	iss, ok := c.ACMEIssuers[cmd.Issuer]
	if !ok {
		return nil, notFoundf("issuer", "acme_issuer %q not found", cmd.Issuer)
	}
	switch {
	case cmd.SealedKey == "":
		return nil, invalidf("sealed_key", "required")
	case cmd.Directory != iss.Spec.Directory:
		return nil, conflictf("directory", "acme_issuer %q has directory %q", cmd.Issuer, iss.Spec.Directory)
	}
	if err := sealedProblem("sealed_key", cmd.SealedKey); err != nil {
		return nil, err
	}
	var cur uint64
	if a := c.ACMEAccounts[cmd.Issuer]; a != nil {
		cur = a.Index
	}
	if cmd.CAS != cur {
		return nil, conflictf("cas", "acme account of %q has index %d, not %d", cmd.Issuer, cur, cmd.CAS)
	}
	b := newBuilder(c, index)
	b.acmeAccounts()[cmd.Issuer] = &ACMEAccount{Issuer: cmd.Issuer, Directory: cmd.Directory,
		SealedKey: cmd.SealedKey, Index: index, Time: cmd.Time.UTC()}
	return b.c, nil
}

// forgetACME drops the order state and challenges of a deleted certificate.
func (b *builder) forgetACME(name string) {
	if _, ok := b.c.ACMEStatus[name]; ok {
		delete(b.acmeStatus(), name)
	}
	b.dropChallenges(name)
}

// afterIssuerDelete forgets the account of a deleted issuer.
func (b *builder) afterIssuerDelete(name string) {
	if _, ok := b.c.ACMEAccounts[name]; ok {
		delete(b.acmeAccounts(), name)
	}
}

// issuerUser names a certificate whose order state refers to issuer name
// while its order runs, so the issuer is not deleted from under it.
func issuerUser(c *Config, name string) string {
	for _, cert := range sortedKeys(c.ACMEStatus) {
		if st := c.ACMEStatus[cert]; st.Issuer == name && st.State == ACMEOrdering {
			return cert
		}
	}
	return ""
}

// restoreACME keeps the current document's ACME accounts and order state
// across a restore (they are the CA's view of the world, not
// configuration) for the issuers and ACME certificates the restore kept,
// but ends every running order: the new status tokens fence the leader
// that drove it.
func restoreACME(b *builder, cur *Config) {
	for _, name := range sortedKeys(cur.ACMEAccounts) {
		if _, ok := b.c.ACMEIssuers[name]; ok {
			b.acmeAccounts()[name] = cur.ACMEAccounts[name]
		}
	}
	for _, name := range sortedKeys(cur.ACMEStatus) {
		if cert, ok := b.c.Certificates[name]; !ok || cert.Spec.ACME == nil {
			continue
		}
		ns := *cur.ACMEStatus[name]
		if ns.State == ACMEOrdering {
			ns.State, ns.LastError = ACMEFailed, "order interrupted by a restore"
		}
		ns.Token = b.index
		b.acmeStatus()[name] = &ns
	}
}

// checkACMESnapshot refuses a snapshot whose ACME maps hold nulls or
// entries filed under another key.
func checkACMESnapshot(c *Config) error {
	for k, v := range c.ACMEIssuers {
		if v == nil || v.Name != k {
			return corrupt("acme_issuer %q: name does not match key", k)
		}
	}
	for k, v := range c.ACMEAccounts {
		if v == nil || v.Issuer != k {
			return corrupt("acme account %q: issuer does not match key", k)
		}
	}
	for k, v := range c.ACMEStatus {
		if v == nil {
			return corrupt("acme status %q: null", k)
		}
	}
	for k, v := range c.ACMEChallenges {
		if v == nil || v.Token != k {
			return corrupt("acme challenge %q: token does not match key", k)
		}
	}
	return nil
}

// Redacted is the spec as reads show it: without the EAB HMAC key, plain
// or sealed.
func (s ACMEIssuerSpec) Redacted() ACMEIssuerSpec {
	if s.EAB != nil {
		e := *s.EAB
		e.HMACKey, e.EncryptedHMACKey = "", ""
		s.EAB = &e
	}
	return s
}

// sealEABKey finishes an issuer spec a command puts: a plaintext HMAC key
// is refused (it must never reach the log), and a binding without a key
// (re-applying an export: reads never show it) keeps the stored sealed key
// when the key id is unchanged; otherwise the key is required.
func sealEABKey(c *Config, p, name string, spec any, canon []byte) (any, []byte, error) {
	is, ok := spec.(*ACMEIssuerSpec)
	if !ok || is.EAB == nil {
		return spec, canon, nil
	}
	if is.EAB.HMACKey != "" {
		return nil, nil, invalidf(p+".eab.hmac_key", "an HMAC key must be sealed with the secrets key (--secrets-key-file) before it is proposed; send it through the admin API")
	}
	if is.EAB.EncryptedHMACKey != "" {
		return spec, canon, nil
	}
	cur, ok := c.ACMEIssuers[name]
	if !ok || cur.Spec.EAB == nil || cur.Spec.EAB.KeyID != is.EAB.KeyID || cur.Spec.EAB.EncryptedHMACKey == "" {
		return nil, nil, invalidf(p+".eab.hmac_key", "required: acme_issuer %q has no stored key for kid %q", name, is.EAB.KeyID)
	}
	ns := *is
	e := *is.EAB
	e.EncryptedHMACKey = cur.Spec.EAB.EncryptedHMACKey
	ns.EAB = &e
	return &ns, canonicalJSON(&ns), nil
}

// redactACME drops what a read must not show: EAB HMAC keys and the
// sealed account keys (a restore keeps the cluster's accounts anyway).
func redactACME(r *Config) {
	if len(r.ACMEIssuers) > 0 {
		iss := make(map[string]*ACMEIssuer, len(r.ACMEIssuers))
		for k, v := range r.ACMEIssuers {
			nv := *v
			nv.Spec = v.Spec.Redacted()
			iss[k] = &nv
		}
		r.ACMEIssuers = iss
	}
	r.ACMEAccounts = nil
}
