package cli

import (
	"time"

	"github.com/rafterlb/rafter/api"
)

// acmeState sums up an ACME certificate's order state for the certificate
// table: "valid, renews AT", "ordering", "failed, retry AT: ERROR"; ""
// when no order was begun.
func acmeState(o *api.ACMEOrderView) string {
	if o == nil {
		return ""
	}
	switch o.State {
	case "valid":
		return "valid, renews " + o.RenewAt.UTC().Format(time.RFC3339)
	case "failed":
		s := "failed"
		if !o.NextAttempt.IsZero() {
			s += ", retry " + o.NextAttempt.UTC().Format(time.RFC3339)
		}
		if o.LastError != "" {
			msg := o.LastError
			if len(msg) > 120 {
				msg = msg[:120] + "…"
			}
			s += ": " + msg
		}
		return s
	}
	return o.State
}
