package api

import "time"

// ACMEOrderView is the order state of an ACME certificate as GET
// /v1/certificates shows it (CertificateView.ACME): what the leader is
// doing, when it renews or retries, and the last error. It never holds a
// key.
type ACMEOrderView struct {
	State       string    `json:"state"` // ordering | valid | failed
	Issuer      string    `json:"issuer"`
	Domains     []string  `json:"domains,omitempty"`
	Orders      uint64    `json:"orders"`
	Failures    int       `json:"failures,omitempty"`
	Term        uint64    `json:"term,omitempty"`
	Since       time.Time `json:"since,omitzero"`
	NotBefore   time.Time `json:"not_before,omitzero"`
	NotAfter    time.Time `json:"not_after,omitzero"`
	RenewAt     time.Time `json:"renew_at,omitzero"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
}
