package dataplane

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rafterlb/rafter/fsm"
	"github.com/valyala/fasthttp"
)

// ACMEALPNProto is the ALPN protocol of the TLS-ALPN-01 challenge (RFC 8737).
const ACMEALPNProto = "acme-tls/1"

// idPeACMEIdentifier is the extension a TLS-ALPN-01 certificate carries
// the SHA-256 of the key authorization in (RFC 8737 §3).
var idPeACMEIdentifier = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 31}

// acmeAnswers is what every node answers an ACME CA with, built from the
// challenges in the replicated state: the leader that drives an order
// cannot know which node the CA's validation request reaches.
type acmeAnswers struct {
	cur atomic.Pointer[acmeTable]

	mu    sync.Mutex                  // serializes update
	certs map[string]*tls.Certificate // by domain + key authorization, kept while in use
}

type acmeTable struct {
	http map[string][]byte           // token -> key authorization
	alpn map[string]*tls.Certificate // domain -> challenge certificate
}

// update builds the answers of cfg. TLS-ALPN-01 certificates are made on
// this node with a key of its own: only the key authorization's digest,
// not the key, has to match what the CA expects.
func (a *acmeAnswers) update(cfg *fsm.Config) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if cfg == nil || len(cfg.ACMEChallenges) == 0 {
		if a.cur.Load() != nil {
			a.cur.Store(nil)
		}
		a.certs = nil
		return nil
	}
	t := &acmeTable{http: map[string][]byte{}, alpn: map[string]*tls.Certificate{}}
	certs := map[string]*tls.Certificate{}
	var firstErr error
	for tok, ch := range cfg.ACMEChallenges {
		switch ch.Type {
		case fsm.ChallengeHTTP01:
			t.http[tok] = []byte(ch.KeyAuth)
		case fsm.ChallengeTLSALPN01:
			key := ch.Domain + "\x00" + ch.KeyAuth
			c := a.certs[key]
			if c == nil {
				var err error
				if c, err = alpnCertificate(ch.Domain, ch.KeyAuth); err != nil {
					if firstErr == nil {
						firstErr = err
					}
					continue
				}
			}
			certs[key] = c
			t.alpn[ch.Domain] = c
		}
	}
	a.certs = certs
	a.cur.Store(t)
	return firstErr
}

// serveHTTP answers an HTTP-01 validation request for a pending token and
// reports whether it did; other requests go on to routing. It matches the
// raw request target, the bytes the CA sent.
func (a *acmeAnswers) serveHTTP(ctx *fasthttp.RequestCtx) bool {
	t := a.cur.Load()
	if t == nil || len(t.http) == 0 {
		return false
	}
	uri := ctx.Request.Header.RequestURI()
	if !bytes.HasPrefix(uri, []byte(acmeChallengePrefix)) {
		return false
	}
	if !ctx.IsGet() && !ctx.IsHead() {
		return false
	}
	ka, ok := t.http[string(uri[len(acmeChallengePrefix):])]
	if !ok {
		return false
	}
	ctx.Response.Header.SetContentType("application/octet-stream")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetBody(ka)
	return true
}

// getCertificate returns the TLS-ALPN-01 certificate for hello when the
// client asks for acme-tls/1 and a challenge for its server name is
// pending; nil otherwise, so the listener's own certificates answer.
func (a *acmeAnswers) getCertificate(hello *tls.ClientHelloInfo) *tls.Certificate {
	if !slices.Contains(hello.SupportedProtos, ACMEALPNProto) {
		return nil
	}
	t := a.cur.Load()
	if t == nil {
		return nil
	}
	return t.alpn[hello.ServerName]
}

// withACME makes an https listener's TLS config answer TLS-ALPN-01
// challenges before its own certificate selection runs: acme-tls/1 is
// offered, and a ClientHello that asks for it gets the challenge
// certificate of its server name. A ClientHello that offers nothing but
// acme-tls/1 with no challenge pending fails the handshake: RFC 8737 §3
// forbids negotiating acme-tls/1 with any other certificate. cfg is
// changed in place, before it serves: the certificate manager keeps a
// reference to it for session-ticket keys.
func (a *acmeAnswers) withACME(cfg *tls.Config) {
	if !slices.Contains(cfg.NextProtos, ACMEALPNProto) {
		cfg.NextProtos = append(slices.Clone(cfg.NextProtos), ACMEALPNProto)
	}
	next := cfg.GetCertificate
	cfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if slices.Contains(hello.SupportedProtos, ACMEALPNProto) {
			if c := a.getCertificate(hello); c != nil {
				return c, nil
			}
			if len(hello.SupportedProtos) == 1 {
				return nil, errNoACMEChallenge
			}
		}
		if next != nil {
			return next(hello)
		}
		return nil, nil // the config's Certificates answer
	}
}

// handler answers pending HTTP-01 challenges before next (routing,
// redirects) sees the request.
func (a *acmeAnswers) handler(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if a.serveHTTP(ctx) {
			return
		}
		next(ctx)
	}
}

type acmeError string

func (e acmeError) Error() string { return string(e) }

const errNoACMEChallenge = acmeError("no ACME challenge pending for this server name")

// alpnCertificate is the self-signed TLS-ALPN-01 certificate of domain
// for keyAuth (RFC 8737 §3).
func alpnCertificate(domain, keyAuth string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(keyAuth))
	ext, err := asn1.Marshal(sum[:])
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:    serial,
		Subject:         pkix.Name{CommonName: "ACME challenge"},
		DNSNames:        []string{domain},
		NotBefore:       now.Add(-time.Hour),
		NotAfter:        now.Add(24 * time.Hour),
		ExtraExtensions: []pkix.Extension{{Id: idPeACMEIdentifier, Critical: true, Value: ext}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
