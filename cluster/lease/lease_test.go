package lease

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/fsm"
)

// TestExpiryBound: a lease without keepalives leaves (with its backends)
// once its TTL has run out, by the end of the next check interval, and
// not before; keepalives write nothing to Raft.
func TestExpiryBound(t *testing.T) {
	const ttl = 2 * time.Second
	r := newRig(t, nil)
	quiet, alive := r.grant(ttl), r.grant(ttl)
	r.register("app", "10.0.0.1:80", quiet)
	r.register("other", "10.0.0.1:80", quiet)
	r.register("app", "10.0.0.2:80", alive)
	index := r.store.Config().Index
	// Just before the TTL runs out: still there, and the keepalives so far
	// wrote nothing.
	r.keepAlive(alive)
	r.clock.Advance(ttl - time.Millisecond)
	r.waitRounds()
	if !r.has(quiet) {
		t.Fatal("lease expired before its TTL")
	}
	if got := r.store.Config().Index; got != index {
		t.Fatalf("index moved from %d to %d with only keepalives", index, got)
	}
	// One check interval after the TTL: gone.
	r.keepAlive(alive)
	r.clock.Advance(rigInterval + time.Millisecond)
	r.waitRounds()
	if r.has(quiet) {
		t.Fatalf("lease still there TTL (%v) + one check interval (%v) after its grant", ttl, rigInterval)
	}
	if !r.has(alive) {
		t.Fatal("the lease kept alive expired")
	}
	c := r.store.Config()
	if len(c.Pools["app"].Spec.Backends) != 1 || c.Pools["app"].Spec.Backends[0].Lease != alive || c.Pools["other"].Spec.Backends != nil {
		t.Fatalf("pools after expiry: app %+v other %+v", c.Pools["app"].Spec.Backends, c.Pools["other"].Spec.Backends)
	}
	if got := r.metric("rafter_lease_expired_total"); got != 1 {
		t.Fatalf("expired_total = %v", got)
	}
	if got := r.metric("rafter_lease_keepalives_total"); got != 2 {
		t.Fatalf("keepalives_total = %v", got)
	}
	if _, err := r.m.KeepAlive(context.Background(), quiet); !errors.Is(err, fsm.ErrNotFound) {
		t.Fatalf("keepalive of an expired lease: %v", err)
	}
}

// TestSelfPreservation: 80% of keepalives stop at once; nothing expires,
// the gauge says so; when they resume nothing was lost, and a lone lease
// that stops afterwards expires normally.
func TestSelfPreservation(t *testing.T) {
	const ttl = 2 * time.Second
	r := newRig(t, nil)
	var ids []uint64
	for range 20 {
		ids = append(ids, r.grant(ttl))
	}
	kept := ids[:4] // the other 16 (80%) stop sending keepalives
	const stepBy = ttl / 10
	step := func() {
		r.clock.Advance(stepBy)
		r.waitRounds()
	}
	for range 5 {
		r.keepAlive(ids...)
		step()
	}
	for range int(3 * ttl / stepBy) {
		r.keepAlive(kept...)
		step()
	}
	if !r.m.Held() || r.metric("rafter_lease_expiry_held") != 1 {
		t.Fatalf("expiry not held (held=%v gauge=%v)", r.m.Held(), r.metric("rafter_lease_expiry_held"))
	}
	if n := len(r.store.Config().Leases); n != 20 {
		t.Fatalf("%d leases left while expiry was held, want 20", n)
	}
	r.keepAlive(ids...)
	step()
	if r.m.Held() || r.metric("rafter_lease_expiry_held") != 0 {
		t.Fatal("expiry still held after keepalives returned")
	}
	for range int(2 * ttl / stepBy) {
		r.keepAlive(ids...)
		step()
	}
	if n := len(r.store.Config().Leases); n != 20 {
		t.Fatalf("%d leases after keepalives resumed, want 20", n)
	}
	// One owner of twenty leaving is no mass departure: it expires.
	for range int(2*ttl/stepBy) + 2 {
		r.keepAlive(ids[1:]...)
		step()
	}
	if r.has(ids[0]) || len(r.store.Config().Leases) != 19 || r.m.Held() {
		t.Fatalf("lone lease: present=%v leases=%d held=%v", r.has(ids[0]), len(r.store.Config().Leases), r.m.Held())
	}
}

// TestRegainedLeadershipGivesFreshTTL: leadership lost and regained
// between two reads shows only as a report of a new term; the Manager
// still leaves the old term and gives every lease a fresh TTL.
func TestRegainedLeadershipGivesFreshTTL(t *testing.T) {
	const ttl = 2 * time.Second
	r := newRig(t, nil)
	first, _ := r.m.Term()
	id := r.grant(ttl)
	r.clock.Advance(ttl - rigInterval)
	r.store.setLeader(true) // a loss and a regain, the loss unseen
	r.waitFor("a new term", func() bool { term, ok := r.m.Term(); return ok && term != first })
	r.clock.Advance(ttl - time.Millisecond)
	r.waitRounds()
	if !r.has(id) {
		t.Fatalf("lease expired within a TTL (%v) of regaining leadership", ttl)
	}
}

// TestLeaderChangeGivesFreshTTL: a new leader restarts every deadline at
// a full TTL, so leases whose keepalives went into the election survive.
func TestLeaderChangeGivesFreshTTL(t *testing.T) {
	const ttl = 2 * time.Second
	r := newRig(t, nil)
	id := r.grant(ttl)
	r.clock.Advance(ttl - rigInterval)
	r.store.setLeader(false)
	r.waitFor("stepping down", func() bool { return !r.m.isLeading() })
	if _, err := r.m.KeepAlive(context.Background(), id); !errors.Is(err, cluster.ErrNotLeader) {
		t.Fatalf("keepalive on a follower: %v, want ErrNotLeader", err)
	}
	if _, err := r.m.Grant(context.Background(), ttl); !errors.Is(err, cluster.ErrNotLeader) {
		t.Fatalf("grant on a follower: %v, want ErrNotLeader", err)
	}
	r.clock.Advance(ttl) // the lease's first deadline is long gone
	r.store.setLeader(true)
	r.waitFor("taking office", r.m.isLeading)
	r.clock.Advance(ttl - time.Millisecond)
	r.waitRounds()
	if !r.has(id) {
		t.Fatalf("lease expired within a TTL (%v) of the leader change", ttl)
	}
	r.clock.Advance(rigInterval + time.Millisecond)
	r.waitRounds()
	if r.has(id) {
		t.Fatal("lease without keepalives survived a full TTL after the leader change")
	}
}

// TestRevokeDrains: revoke marks the backends drain in one entry and
// removes them after the drain period in a later one.
func TestRevokeDrains(t *testing.T) {
	r := newRig(t, func(c *Config) { c.DrainPeriod = time.Second })
	id := r.grant(10 * time.Second)
	r.register("app", "10.0.0.1:80", id)
	idx, err := r.m.Revoke(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	c := r.store.Config()
	if be := c.Pools["app"].Spec.Backends; len(be) != 1 || !be[0].Drain || !c.Leases[id].Draining || c.Index != idx {
		t.Fatalf("after revoke: %+v lease %+v", be, c.Leases[id])
	}
	if _, err := r.m.KeepAlive(context.Background(), id); !errors.Is(err, fsm.ErrNotFound) {
		t.Fatalf("keepalive of a draining lease: %v", err)
	}
	r.clock.Advance(time.Second - rigInterval)
	r.waitRounds()
	if !r.has(id) {
		t.Fatal("removed before the drain period ended")
	}
	r.clock.Advance(rigInterval)
	r.waitFor("drained lease removed", func() bool { return !r.has(id) })
	c = r.store.Config()
	if c.Pools["app"].Spec.Backends != nil || c.Index <= idx {
		t.Fatalf("after drain: %+v at %d", c.Pools["app"].Spec.Backends, c.Index)
	}
	if got := r.metric("rafter_lease_expired_total"); got != 0 {
		t.Fatalf("a revoke counted as expiry: %v", got)
	}
}

func TestErrors(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	tests := []struct {
		name     string
		call     func() error
		field    string
		sentinel error
	}{
		{"keepalive unknown", func() error { _, err := r.m.KeepAlive(ctx, 4242); return err }, "id", fsm.ErrNotFound},
		{"revoke unknown", func() error { _, err := r.m.Revoke(ctx, 4242); return err }, "id", fsm.ErrNotFound},
		{"ttl too short", func() error { _, err := r.m.Grant(ctx, time.Second); return err }, "ttl", fsm.ErrInvalid},
		{"ttl too long", func() error { _, err := r.m.Grant(ctx, 25*time.Hour); return err }, "ttl", fsm.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := r.store.applies.Load()
			err := tt.call()
			var fe *fsm.FieldError
			if !errors.Is(err, tt.sentinel) || !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("err = %v, want %v on field %q", err, tt.sentinel, tt.field)
			}
			if r.store.applies.Load() != before {
				t.Fatal("a refused call wrote to the log")
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		field  string
		adjust func(*Config)
	}{
		{"store", func(c *Config) { c.Store = nil }},
		{"check_interval", func(c *Config) { c.CheckInterval = 0 }},
		{"drain_period", func(c *Config) { c.DrainPeriod = -time.Second }},
		{"self_preservation_share", func(c *Config) { c.SelfPreservationShare = 0 }},
		{"self_preservation_share", func(c *Config) { c.SelfPreservationShare = 1.5 }},
		{"self_preservation_min_leases", func(c *Config) { c.SelfPreservationMinLeases = -1 }},
		{"max_expire_per_entry", func(c *Config) { c.MaxExpirePerEntry = 0 }},
		{"apply_timeout", func(c *Config) { c.ApplyTimeout = 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			c := DefaultConfig()
			c.Store = newFakeStore(t)
			tt.adjust(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.field+":") {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tt.field)
			}
		})
	}
	c := DefaultConfig()
	c.Store = newFakeStore(t)
	if err := c.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	if _, err := New(c); err != nil {
		t.Fatal(err)
	}
}
