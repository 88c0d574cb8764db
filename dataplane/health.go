package dataplane

import "github.com/rafterlb/rafter/dataplane/health"

// HealthView is the node-local health verdict the balancers consult. It is
// called on the request path, so both methods must be cheap and must not
// block on a configuration change.
type HealthView interface {
	// Healthy reports whether addr in pool may receive new requests.
	// Backends the view does not know yet are reported healthy.
	Healthy(pool, addr string) bool
	// Observe records the outcome of one exchange (passive checks).
	// *health.Monitor is the HealthView the agent uses.
	Observe(pool, addr string, o health.Outcome)
}

// AllHealthy is the HealthView used when Options.Health is nil: every
// backend is healthy and outcomes are ignored.
type AllHealthy struct{}

// Healthy always reports true.
func (AllHealthy) Healthy(string, string) bool { return true }

// Observe ignores the outcome.
func (AllHealthy) Observe(string, string, health.Outcome) {}
