package fsm

import (
	"fmt"
	"slices"
)

// TLSPolicy tightens what an https listener negotiates. The defaults are
// TLS 1.2 at least and, for TLS 1.2, only the ECDHE AEAD suites (no CBC,
// no RSA key exchange); TLS 1.3 suites are all AEAD and not configurable.
type TLSPolicy struct {
	// MinVersion is "1.2" (default) or "1.3".
	MinVersion string `json:"min_version,omitempty"`
	// CipherSuites narrows the TLS 1.2 suites to these, by their IANA
	// names, from TLSCipherSuites; empty: all of them.
	CipherSuites []string `json:"cipher_suites,omitempty"`
}

// TLS versions a policy may name.
const (
	TLSVersion12 = "1.2"
	TLSVersion13 = "1.3"
)

// TLSCipherSuites are the TLS 1.2 suites a listener may offer, all ECDHE
// with an AEAD cipher, in the server's order of preference. It is also the
// default list.
var TLSCipherSuites = []string{
	"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
	"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
	"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
	"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
	"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
	"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}

// HSTS adds Strict-Transport-Security to every response of an https
// listener: "max-age=N[; includeSubDomains][; preload]".
type HSTS struct {
	// MaxAge is in seconds, 0..maxHSTSMaxAge; 0 tells browsers to forget
	// the policy.
	MaxAge            int  `json:"max_age"`
	IncludeSubdomains bool `json:"include_subdomains,omitempty"`
	// Preload requires include_subdomains and a max_age of a year or more
	// (what the browsers' preload lists accept).
	Preload bool `json:"preload,omitempty"`
}

// HTTPSRedirect answers every request of an http listener with a redirect
// to https on Port (default 443) with the same host, path and query.
type HTTPSRedirect struct {
	Port int `json:"port,omitempty"`
	Code int `json:"code,omitempty"` // 301 (default), 302, 307, 308
}

// Bounds on listener TLS options.
const (
	// maxHSTSMaxAge is two years, the longest max-age the preload lists
	// recommend; beyond it a mistake cannot be taken back in practice.
	maxHSTSMaxAge = 2 * 365 * 24 * 3600
	// minPreloadMaxAge is the shortest max-age the preload lists accept.
	minPreloadMaxAge = 365 * 24 * 3600
)

// DefaultCertificate is the certificate a listener serves when no name
// matches the SNI: Default, or the first of Certificates.
func (t *ListenerTLS) DefaultCertificate() string {
	if t.Default != "" {
		return t.Default
	}
	if len(t.Certificates) > 0 {
		return t.Certificates[0]
	}
	return ""
}

// HeaderValue is the Strict-Transport-Security value of h.
func (h *HSTS) HeaderValue() string {
	v := fmt.Sprintf("max-age=%d", h.MaxAge)
	if h.IncludeSubdomains {
		v += "; includeSubDomains"
	}
	if h.Preload {
		v += "; preload"
	}
	return v
}

func validateListenerTLS(p string, t *ListenerTLS) error {
	files := t.CertFile != "" || t.KeyFile != ""
	switch {
	case files && len(t.Certificates) > 0:
		return invalidf(p+".certificates", "set either certificates or cert_file and key_file, not both")
	case files:
		if t.CertFile == "" {
			return invalidf(p+".cert_file", "required with key_file")
		}
		if t.KeyFile == "" {
			return invalidf(p+".key_file", "required with cert_file")
		}
		if err := firstErr(
			maxLen(p+".cert_file", t.CertFile, maxFileLen),
			maxLen(p+".key_file", t.KeyFile, maxFileLen),
		); err != nil {
			return err
		}
		if t.Default != "" {
			return invalidf(p+".default", "only valid with certificates")
		}
	case len(t.Certificates) == 0:
		return invalidf(p+".certificates", "required: name certificates (or set cert_file and key_file)")
	default:
		if err := maxItems(p+".certificates", len(t.Certificates), maxListenerCertificates); err != nil {
			return err
		}
		for i, n := range t.Certificates {
			f := fmt.Sprintf("%s.certificates[%d]", p, i)
			if err := validateName(f, n); err != nil {
				return err
			}
			if j := slices.Index(t.Certificates, n); j < i {
				return invalidf(f, "%q is already listed as certificates[%d]", n, j)
			}
		}
		if t.Default != "" && !slices.Contains(t.Certificates, t.Default) {
			return invalidf(p+".default", "%q is not one of certificates", t.Default)
		}
	}
	if err := validateTLSPolicy(p+".policy", t.Policy); err != nil {
		return err
	}
	if h := t.HSTS; h != nil {
		if err := intRange(p+".hsts.max_age", h.MaxAge, 0, maxHSTSMaxAge); err != nil {
			return err
		}
		if h.Preload && (!h.IncludeSubdomains || h.MaxAge < minPreloadMaxAge) {
			return invalidf(p+".hsts.preload", "requires include_subdomains and a max_age of at least %d (one year)", minPreloadMaxAge)
		}
	}
	return nil
}

func validateTLSPolicy(p string, pol *TLSPolicy) error {
	if pol == nil {
		return nil
	}
	switch pol.MinVersion {
	case "", TLSVersion12, TLSVersion13:
	default:
		return invalidf(p+".min_version", "%q is not \"1.2\" or \"1.3\"", pol.MinVersion)
	}
	if err := maxItems(p+".cipher_suites", len(pol.CipherSuites), len(TLSCipherSuites)); err != nil {
		return err
	}
	if len(pol.CipherSuites) > 0 && pol.MinVersion == TLSVersion13 {
		return invalidf(p+".cipher_suites", "only valid with min_version \"1.2\" (TLS 1.3 suites are not configurable)")
	}
	for i, cs := range pol.CipherSuites {
		f := fmt.Sprintf("%s.cipher_suites[%d]", p, i)
		if !slices.Contains(TLSCipherSuites, cs) {
			return invalidf(f, "%q is not an allowed suite (want one of %v)", cs, TLSCipherSuites)
		}
		if j := slices.Index(pol.CipherSuites, cs); j < i {
			return invalidf(f, "%q is already listed as cipher_suites[%d]", cs, j)
		}
	}
	return nil
}

func validateHTTPSRedirect(p string, r *HTTPSRedirect) error {
	if r == nil {
		return nil
	}
	if err := intRange(p+".port", r.Port, 0, 65535); err != nil {
		return err
	}
	switch r.Code {
	case 0, 301, 302, 307, 308:
	default:
		return invalidf(p+".code", "%d is not 301, 302, 307 or 308", r.Code)
	}
	return nil
}
