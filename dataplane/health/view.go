package health

import (
	"cmp"
	"encoding/json"
	"net/http"
	"slices"
	"time"
)

// TargetStatus is one backend as this node sees it.
type TargetStatus struct {
	Pool    string `json:"pool"`
	Addr    string `json:"addr"`
	Healthy bool   `json:"healthy"`
	// Reason says why the target is in or out of rotation, e.g.
	// "active: 3 consecutive failures: status 500" or "outlier: 5 consecutive 5xx".
	Reason string `json:"reason,omitempty"`
	// Since is when Healthy last changed (or the target appeared).
	Since time.Time `json:"since"`
	// ActiveCheck is whether the pool has a health_check.
	ActiveCheck     bool      `json:"active_check"`
	ActiveFailures  int       `json:"active_failures"`
	ActiveSuccesses int       `json:"active_successes"`
	Checks          uint64    `json:"checks"`
	LastCheck       time.Time `json:"last_check,omitzero"`
	// Ejections counts passive ejections of this target since it appeared.
	Ejections    int       `json:"ejections"`
	EjectedUntil time.Time `json:"ejected_until,omitzero"`
}

// View returns every target, sorted by pool then address.
func (m *Monitor) View() []TargetStatus {
	s := m.snap.Load()
	out := make([]TargetStatus, 0, len(s.targets))
	for _, t := range s.targets {
		t.mu.Lock()
		ts := TargetStatus{
			Pool:            t.pool.name,
			Addr:            t.addr,
			Healthy:         t.healthy.Load(),
			Reason:          t.reason,
			Since:           t.since,
			ActiveCheck:     t.pool.cfg.Load().check != nil,
			ActiveFailures:  t.activeFails,
			ActiveSuccesses: t.activeOKs,
			Checks:          t.checks,
			LastCheck:       t.lastCheck,
			Ejections:       t.ejections,
		}
		if u := t.ejectedUntil.Load(); u != 0 {
			ts.EjectedUntil = time.Unix(0, u)
		}
		t.mu.Unlock()
		out = append(out, ts)
	}
	slices.SortFunc(out, func(a, b TargetStatus) int {
		return cmp.Or(cmp.Compare(a.Pool, b.Pool), cmp.Compare(a.Addr, b.Addr))
	})
	return out
}

// HealthView is the JSON document Handler serves.
type HealthView struct {
	Node    string         `json:"node"`
	Targets []TargetStatus `json:"targets"`
	// Listeners is the data plane's bind state of every listener
	// (dataplane.ListenerStatus), so a port that cannot be bound shows
	// here and not only in the log.
	Listeners any `json:"listeners,omitempty"`
}

// Handler serves View as a HealthView on GET (and HEAD); the optional
// query parameter pool keeps only that pool's targets. listeners, when not
// nil, fills HealthView.Listeners. It does no authentication: the admin
// API mounts it behind its own.
func (m *Monitor) Handler(listeners func() any) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusMethodNotAllowed)
			_, _ = w.Write([]byte(`{"error":{"code":"method_not_allowed","message":"use GET"}}` + "\n"))
			return
		}
		targets := m.View()
		if pool := r.URL.Query().Get("pool"); pool != "" {
			targets = slices.DeleteFunc(targets, func(t TargetStatus) bool { return t.Pool != pool })
		}
		hv := HealthView{Node: m.nodeID, Targets: targets}
		if listeners != nil {
			hv.Listeners = listeners()
		}
		body, err := json.Marshal(hv)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(append(body, '\n'))
		}
	})
}
