package acme

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	legoacme "github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/lego"
	"github.com/go-acme/lego/v5/registration"

	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/secrets"
)

// user is an ACME account as lego sees it.
type user struct {
	email string
	key   crypto.Signer
	reg   *legoacme.ExtendedAccount
}

func (u *user) GetEmail() string                           { return u.email }
func (u *user) GetRegistration() *legoacme.ExtendedAccount { return u.reg }
func (u *user) GetPrivateKey() crypto.Signer               { return u.key }

// client is a registered lego client of one issuer, valid while the
// issuer's spec and account stay what they were when it was made.
type client struct {
	spec    uint64 // the issuer's modify_index
	account uint64 // the account's index
	lego    *lego.Client
	iss     fsm.ACMEIssuerSpec
}

// httpClient talks to the issuer's directory, trusting its ca_roots when
// given.
func (m *Manager) httpClient(spec *fsm.ACMEIssuerSpec) (*http.Client, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if spec.CARoots != "" {
		certs, err := fsm.ParseCertificatesPEM(spec.CARoots)
		if err != nil {
			return nil, fmt.Errorf("ca_roots: %w", err)
		}
		pool := x509.NewCertPool()
		for _, c := range certs {
			pool.AddCert(c)
		}
		tlsCfg.RootCAs = pool
	}
	return &http.Client{
		Timeout: m.cfg.RequestTimeout,
		Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			TLSClientConfig:       tlsCfg,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: m.cfg.RequestTimeout,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       30 * time.Second,
		},
	}, nil
}

// account returns a registered client for issuer, creating the account key
// (committed first, then registered) when the issuer has none.
func (t *term) account(ctx context.Context, issuer string) (*client, error) {
	cfg := t.m.cfg.Store.Config()
	iss := cfg.ACMEIssuers[issuer]
	if iss == nil {
		return nil, fmt.Errorf("acme_issuer %q not found", issuer)
	}
	acct := cfg.ACMEAccounts[issuer]
	if acct != nil && acct.Directory != iss.Spec.Directory {
		acct = nil // made for another CA: replace it
	}
	if c := t.clients[issuer]; c != nil && acct != nil && c.spec == iss.ModifyIndex && c.account == acct.Index {
		return c, nil
	}
	var key crypto.Signer
	var index uint64
	if acct == nil {
		var cas uint64
		if old := cfg.ACMEAccounts[issuer]; old != nil {
			cas = old.Index
		}
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		sealed, err := t.sealKey(k, AccountKeyAAD(issuer))
		if err != nil {
			return nil, err
		}
		idx, err := t.apply(ctx, &fsm.ACMEAccountSet{Issuer: issuer, Directory: iss.Spec.Directory, SealedKey: sealed,
			CAS: cas, Term: t.term, Time: t.m.cfg.Now().UTC()})
		if err != nil {
			return nil, fmt.Errorf("storing the account key: %w", err)
		}
		key, index = k, idx
	} else {
		k, err := t.openKey(acct.SealedKey, AccountKeyAAD(issuer))
		if err != nil {
			return nil, fmt.Errorf("account key of %q: %w", issuer, err)
		}
		key, index = k, acct.Index
	}
	hc, err := t.m.httpClient(&iss.Spec)
	if err != nil {
		return nil, err
	}
	u := &user{email: iss.Spec.Email, key: key}
	lc, err := newLegoClient(iss.Spec.Directory, hc, u)
	if err != nil {
		return nil, err
	}
	// Registering an existing key answers with its account (RFC 8555
	// §7.3.1), so a new leader simply registers again.
	var reg *legoacme.ExtendedAccount
	if eab := iss.Spec.EAB; eab != nil {
		// Sealed at rest like every private key: opened only here, for lego.
		hmacKey, oerr := t.m.cfg.Sealer.Open(eab.EncryptedHMACKey, secrets.ACMEEABKeyAAD(issuer))
		if oerr != nil {
			return nil, fmt.Errorf("EAB HMAC key of %q: %w", issuer, oerr)
		}
		reg, err = lc.Registration.RegisterWithExternalAccountBinding(ctx, registration.RegisterEABOptions{
			TermsOfServiceAgreed: true, Kid: eab.KeyID, HmacEncoded: string(hmacKey)})
	} else {
		reg, err = lc.Registration.Register(ctx, registration.RegisterOptions{TermsOfServiceAgreed: true})
	}
	if err != nil {
		return nil, fmt.Errorf("registering with %s: %w", iss.Spec.Directory, err)
	}
	u.reg = reg
	if lc, err = newLegoClient(iss.Spec.Directory, hc, u); err != nil {
		return nil, err
	}
	c := &client{spec: iss.ModifyIndex, account: index, lego: lc, iss: iss.Spec}
	t.clients[issuer] = c
	return c, nil
}

func newLegoClient(dir string, hc *http.Client, u *user) (*lego.Client, error) {
	lc := lego.NewConfig(u)
	lc.CADirURL = dir
	lc.HTTPClient = hc
	lc.UserAgent = "rafter"
	lc.Certificate.Timeout = 60 * time.Second
	return lego.NewClient(lc)
}

// AccountKeyAAD binds a sealed ACME account key to its issuer.
func AccountKeyAAD(issuer string) []byte { return []byte("rafter/acme-account-key/" + issuer) }

// sealKey seals a private key (PKCS #8 PEM) with the secrets key.
func (t *term) sealKey(k crypto.Signer, aad []byte) (string, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return "", err
	}
	return t.m.cfg.Sealer.Seal(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), aad)
}

func (t *term) openKey(sealed string, aad []byte) (crypto.Signer, error) {
	b, err := t.m.cfg.Sealer.Open(sealed, aad)
	if err != nil {
		return nil, err
	}
	return ParseKey(b)
}

// ParseKey parses a PKCS #8 PEM private key as sealKey writes it.
func ParseKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("private key is not PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key of type %T cannot sign", k)
	}
	return s, nil
}
