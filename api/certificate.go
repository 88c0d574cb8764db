package api

import "time"

// CertificateView is what GET /v1/certificates shows of a certificate
// besides its spec (which never holds the key): the names and validity of
// the chain it serves, where it comes from and which listeners use it.
type CertificateView struct {
	Source string `json:"source"` // "inline" | "acme"
	// Domains are the DNS names (SANs) of the served leaf; for an ACME
	// certificate not issued yet, the requested domains.
	Domains   []string  `json:"domains,omitempty"`
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	Subject   string    `json:"subject,omitempty"`
	Issuer    string    `json:"issuer,omitempty"`
	// Issued: an ACME certificate has material to serve; IssuedAt when.
	Issued   bool      `json:"issued,omitempty"`
	IssuedAt time.Time `json:"issued_at,omitzero"`
	// Stale: the ACME spec changed since the material was issued.
	Stale bool `json:"stale,omitempty"`
	// Error is the last failed ACME attempt, ErrorAt its time.
	Error   string    `json:"error,omitempty"`
	ErrorAt time.Time `json:"error_at,omitzero"`
	// Listeners name the listeners that serve the certificate.
	Listeners []string `json:"listeners,omitempty"`
	// ACME is the order state of an ACME certificate (see api/acme.go).
	ACME *ACMEOrderView `json:"acme,omitempty"`
}
