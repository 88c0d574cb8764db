package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/fsm"
)

// fakeLeases grants and revokes through the fake store (so fsm validates),
// and answers keepalives from the document, as the leader's Manager does.
type fakeLeases struct {
	store *fakeStore
	mu    sync.Mutex
	kas   int
}

var leaseClock = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func (f *fakeLeases) Grant(ctx context.Context, ttl time.Duration) (fsm.Lease, error) {
	idx, err := f.store.Apply(ctx, fsm.LeaseGrantCommand(ttl, leaseClock))
	if err != nil {
		return fsm.Lease{}, err
	}
	return fsm.Lease{ID: idx, TTL: fsm.Duration(ttl), GrantedAt: leaseClock}, nil
}

func (f *fakeLeases) KeepAlive(_ context.Context, id uint64) (time.Duration, error) {
	f.store.mu.Lock()
	role := f.store.roleErr()
	f.store.mu.Unlock()
	if role != nil {
		return 0, role
	}
	l, ok := f.store.Config().Leases[id]
	if !ok {
		return 0, &fsm.FieldError{Field: "id", Message: fmt.Sprintf("lease %d not found", id), Err: fsm.ErrNotFound}
	}
	f.mu.Lock()
	f.kas++
	f.mu.Unlock()
	return l.TTL.D(), nil
}

func (f *fakeLeases) Revoke(ctx context.Context, id uint64) (uint64, error) {
	return f.store.Apply(ctx, fsm.LeaseRevokeCommand(id, false, leaseClock))
}

func (f *fakeLeases) keepalives() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.kas
}

// newLeaseAPI is newTestAPI with leases served and pool "app" stored.
func newLeaseAPI(t *testing.T, id string) (*testAPI, *fakeLeases) {
	t.Helper()
	var fl *fakeLeases
	a := newTestAPI(t, id, func(c *Config) {
		fl = &fakeLeases{store: c.Store.(*fakeStore)}
		c.Leases = fl
	})
	a.store.put(t, fsm.KindPool, "app", `{}`)
	return a, fl
}

func TestLeaseEndpoints(t *testing.T) {
	a, fl := newLeaseAPI(t, "n1")
	r := do(t, a.srv.URL, "POST", "/v1/leases", "", `{"ttl":"30s"}`)
	var l api.Lease
	r.decode(t, &l)
	if r.status != 200 || l.ID == 0 || l.TTL.D() != 30*time.Second || l.Index != l.ID {
		t.Fatalf("grant: %d %s", r.status, r.body)
	}
	if got := r.header.Get(HeaderIndex); got != fmt.Sprint(l.ID) {
		t.Fatalf("grant index header %q, want %d", got, l.ID)
	}
	before := a.store.Config().Index
	r = do(t, a.srv.URL, "PUT", fmt.Sprintf("/v1/leases/%d/keepalive", l.ID), "", "")
	if r.status != 200 || !jsonEqual(t, r.body, fmt.Appendf(nil, `{"id":%d,"ttl":"30s"}`, l.ID)) {
		t.Fatalf("keepalive: %d %s", r.status, r.body)
	}
	if a.store.Config().Index != before || fl.keepalives() != 1 {
		t.Fatal("keepalive wrote to the store or did not reach the lease manager")
	}
	r = do(t, a.srv.URL, "PUT", "/v1/pools/app/backends/10.0.0.9:80", "", fmt.Sprintf(`{"lease":%d,"weight":2,"zone":"z1"}`, l.ID))
	if r.status != 200 {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	bes := a.store.Config().Pools["app"].Spec.Backends
	if len(bes) != 1 || bes[0] != (fsm.Backend{Addr: "10.0.0.9:80", Weight: 2, Zone: "z1", Lease: l.ID}) {
		t.Fatalf("backends %+v", bes)
	}
	r = do(t, a.srv.URL, "PUT", "/v1/pools/app/backends/%5B::1%5D:80", "", fmt.Sprintf(`{"lease":%d}`, l.ID))
	bes = a.store.Config().Pools["app"].Spec.Backends
	if r.status != 200 || len(bes) != 2 || bes[1].Addr != "[::1]:80" || bes[1].Weight != 1 {
		t.Fatalf("register IPv6 with default weight: %d %s %+v", r.status, r.body, bes)
	}
	r = do(t, a.srv.URL, "DELETE", "/v1/pools/app/backends/%5B::1%5D:80", "", "")
	if r.status != 200 || len(a.store.Config().Pools["app"].Spec.Backends) != 1 {
		t.Fatalf("deregister: %d %s", r.status, r.body)
	}
	r = do(t, a.srv.URL, "DELETE", fmt.Sprintf("/v1/leases/%d", l.ID), "", "")
	if r.status != 200 || len(a.store.Config().Pools["app"].Spec.Backends) != 0 || len(a.store.Config().Leases) != 0 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
}

// TestLeaseBadInput: every refusal is a 4xx naming the request's field,
// and nothing stored changes.
func TestLeaseBadInput(t *testing.T) {
	a, _ := newLeaseAPI(t, "n1")
	r := do(t, a.srv.URL, "POST", "/v1/leases", "", `{"ttl":"30s"}`)
	var l api.Lease
	r.decode(t, &l)
	tests := []struct {
		name, method, path, body string
		status                   int
		field                    string
	}{
		{"ttl too short", "POST", "/v1/leases", `{"ttl":"1s"}`, 400, "ttl"},
		{"ttl too long", "POST", "/v1/leases", `{"ttl":"25h"}`, 400, "ttl"},
		{"ttl missing", "POST", "/v1/leases", `{}`, 400, "ttl"},
		{"ttl not a duration", "POST", "/v1/leases", `{"ttl":"soon"}`, 400, "ttl"},
		{"grant unknown field", "POST", "/v1/leases", `{"ttl":"30s","owner":"me"}`, 400, "owner"},
		{"grant empty body", "POST", "/v1/leases", ``, 400, ""},
		{"keepalive bad id", "PUT", "/v1/leases/abc/keepalive", "", 400, "id"},
		{"keepalive unknown", "PUT", "/v1/leases/9999/keepalive", "", 404, "id"},
		{"revoke unknown", "DELETE", "/v1/leases/9999", "", 404, "id"},
		{"unknown pool", "PUT", "/v1/pools/nope/backends/10.0.0.1:80", fmt.Sprintf(`{"lease":%d}`, l.ID), 404, "pool"},
		{"unknown lease", "PUT", "/v1/pools/app/backends/10.0.0.1:80", `{"lease":9999}`, 404, "lease"},
		{"missing lease", "PUT", "/v1/pools/app/backends/10.0.0.1:80", `{"weight":1}`, 400, "lease"},
		{"bad address", "PUT", "/v1/pools/app/backends/10.0.0.1", fmt.Sprintf(`{"lease":%d}`, l.ID), 400, "addr"},
		{"bad port", "PUT", "/v1/pools/app/backends/10.0.0.1:70000", fmt.Sprintf(`{"lease":%d}`, l.ID), 400, "addr"},
		{"bad weight", "PUT", "/v1/pools/app/backends/10.0.0.1:80", fmt.Sprintf(`{"lease":%d,"weight":5000}`, l.ID), 400, "weight"},
		{"bad zone", "PUT", "/v1/pools/app/backends/10.0.0.1:80", fmt.Sprintf(`{"lease":%d,"zone":"a b"}`, l.ID), 400, "zone"},
		{"register unknown field", "PUT", "/v1/pools/app/backends/10.0.0.1:80", fmt.Sprintf(`{"lease":%d,"drain":true}`, l.ID), 400, "drain"},
		{"lease not a number", "PUT", "/v1/pools/app/backends/10.0.0.1:80", `{"lease":"x"}`, 400, "lease"},
		{"deregister unknown backend", "DELETE", "/v1/pools/app/backends/10.0.0.1:80", "", 404, "addr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshotOf(t, a.store.Config())
			r := do(t, a.srv.URL, tt.method, tt.path, "", tt.body)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if got := r.errorBody(t).Field; got != tt.field {
				t.Fatalf("field %q, want %q: %s", got, tt.field, r.body)
			}
			if after := snapshotOf(t, a.store.Config()); after != before {
				t.Fatal("a refused request changed the document")
			}
		})
	}
}

func snapshotOf(t *testing.T, c *fsm.Config) string {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestLeaseForwarding: a follower relays grants, keepalives and
// registrations to the leader once.
func TestLeaseForwarding(t *testing.T) {
	leader, fl := newLeaseAPI(t, "n1")
	follower, _ := newLeaseAPI(t, "n2")
	follower.store.setFollower("n1", leader.srv.Listener.Addr().String())
	r := do(t, follower.srv.URL, "POST", "/v1/leases", "", `{"ttl":"10s"}`)
	var l api.Lease
	r.decode(t, &l)
	if r.status != 200 || leader.store.Config().Leases[l.ID] == nil {
		t.Fatalf("forwarded grant: %d %s", r.status, r.body)
	}
	r = do(t, follower.srv.URL, "PUT", fmt.Sprintf("/v1/leases/%d/keepalive", l.ID), "", "")
	if r.status != 200 || fl.keepalives() != 1 {
		t.Fatalf("forwarded keepalive: %d %s", r.status, r.body)
	}
	r = do(t, follower.srv.URL, "PUT", "/v1/pools/app/backends/10.0.0.3:80", "", fmt.Sprintf(`{"lease":%d}`, l.ID))
	if r.status != 200 || len(leader.store.Config().Pools["app"].Spec.Backends) != 1 {
		t.Fatalf("forwarded registration: %d %s", r.status, r.body)
	}
	follower.store.setNoLeader()
	r = do(t, follower.srv.URL, "PUT", fmt.Sprintf("/v1/leases/%d/keepalive", l.ID), "", "")
	if r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Fatalf("keepalive without a leader: %d %s", r.status, r.body)
	}
}

func TestLeasesNotServed(t *testing.T) {
	a := newTestAPI(t, "n1", nil)
	r := do(t, a.srv.URL, "POST", "/v1/leases", "", `{"ttl":"30s"}`)
	if r.status != 404 {
		t.Fatalf("grant without a lease manager: %d %s", r.status, r.body)
	}
}
