package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// authenticator checks bearer tokens. Tokens are kept as sha256 digests so
// every comparison is between equal-length values and its time tells
// nothing about a token's length or content.
type authenticator struct {
	readWrite [][sha256.Size]byte
	readOnly  [][sha256.Size]byte
}

func newAuthenticator(rw, ro []string) *authenticator {
	a := &authenticator{}
	for _, t := range rw {
		a.readWrite = append(a.readWrite, sha256.Sum256([]byte(t)))
	}
	for _, t := range ro {
		a.readOnly = append(a.readOnly, sha256.Sum256([]byte(t)))
	}
	return a
}

func (a *authenticator) enabled() bool { return len(a.readWrite)+len(a.readOnly) > 0 }

// check returns what token grants: ok false for an unknown token, write
// true for a read-write one. Every configured token is compared, with no
// early exit, so timing does not reveal which (or whether one) matched.
func (a *authenticator) check(token string) (ok, write bool) {
	sum := sha256.Sum256([]byte(token))
	rw, ro := 0, 0
	for i := range a.readWrite {
		rw |= subtle.ConstantTimeCompare(sum[:], a.readWrite[i][:])
	}
	for i := range a.readOnly {
		ro |= subtle.ConstantTimeCompare(sum[:], a.readOnly[i][:])
	}
	return rw|ro == 1, rw == 1
}

// bearerToken extracts the token of an "Authorization: Bearer TOKEN" header.
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

func (s *server) authorize(r *http.Request, acc access) error {
	if acc == accessPublic || !s.auth.enabled() {
		return nil
	}
	token, ok := bearerToken(r)
	if !ok {
		return errUnauthorized
	}
	known, write := s.auth.check(token)
	switch {
	case !known:
		return errUnauthorized
	case acc == accessWrite && !write:
		return errForbidden
	}
	return nil
}
