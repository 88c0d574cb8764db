package dataplane

// Outcome is what one upstream exchange told the data plane about a backend;
// a HealthView uses it for passive outlier detection.
type Outcome uint8

// Outcomes reported to HealthView.Observe.
const (
	OutcomeSuccess      Outcome = iota // a response below 500
	Outcome5xx                         // the backend answered 5xx
	OutcomeConnectError                // no connection could be made
	OutcomeTimeout                     // the response head did not arrive in time
	OutcomeReset                       // the connection failed mid-exchange
)

func (o Outcome) String() string {
	switch o {
	case OutcomeSuccess:
		return "success"
	case Outcome5xx:
		return "5xx"
	case OutcomeConnectError:
		return "connect_error"
	case OutcomeTimeout:
		return "timeout"
	case OutcomeReset:
		return "reset"
	}
	return "unknown"
}

// HealthView is the node-local health verdict the balancers consult. It is
// called on the request path, so both methods must be cheap and must not
// block on a configuration change.
type HealthView interface {
	// Healthy reports whether addr in pool may receive new requests.
	// Backends the view does not know yet are reported healthy.
	Healthy(pool, addr string) bool
	// Observe records the outcome of one exchange (passive checks).
	Observe(pool, addr string, o Outcome)
}

// AllHealthy is the HealthView used when Options.Health is nil: every
// backend is healthy and outcomes are ignored.
type AllHealthy struct{}

// Healthy always reports true.
func (AllHealthy) Healthy(string, string) bool { return true }

// Observe ignores the outcome.
func (AllHealthy) Observe(string, string, Outcome) {}
