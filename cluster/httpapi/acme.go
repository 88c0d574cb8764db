package httpapi

import (
	"slices"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/fsm"
)

// acmeOrderView is the API's view of a certificate's ACME order state, or
// nil when no order was ever begun.
func acmeOrderView(st *fsm.ACMEStatus) *api.ACMEOrderView {
	if st == nil {
		return nil
	}
	return &api.ACMEOrderView{State: st.State, Issuer: st.Issuer, Domains: slices.Clone(st.Domains),
		Orders: st.Orders, Failures: st.Failures, Term: st.Term, Since: st.Since,
		NotBefore: st.NotBefore, NotAfter: st.NotAfter, RenewAt: st.RenewAt,
		NextAttempt: st.NextAttempt, LastError: st.LastError}
}
