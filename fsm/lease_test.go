package fsm

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"
)

// leaseConfig is baseConfig with two leases granted and one backend each
// registered in pool app (10.0.1.1:80 on the first lease) and in pools app
// and other (10.0.1.2:80 on the second).
func leaseConfig(t testing.TB) (c *Config, l1, l2 uint64) {
	t.Helper()
	c = baseConfig(t)
	c = mustNext(t, c, LeaseGrantCommand(30*time.Second, fixedTime))
	l1 = c.Index
	c = mustNext(t, c, LeaseGrantCommand(10*time.Second, fixedTime))
	l2 = c.Index
	c = mustNext(t, c, BackendRegisterCommand("app", Backend{Addr: "10.0.1.1:80", Lease: l1, Weight: 2, Zone: "z-a"}))
	c = mustNext(t, c, BackendRegisterCommand("app", Backend{Addr: "10.0.1.2:80", Lease: l2}))
	c = mustNext(t, c, BackendRegisterCommand("other", Backend{Addr: "10.0.1.2:80", Lease: l2}))
	return c, l1, l2
}

func addrs(p *Pool) []string {
	var out []string
	for _, be := range p.Spec.Backends {
		out = append(out, be.Addr)
	}
	return out
}

func TestLeaseGrantAndRegister(t *testing.T) {
	c, l1, l2 := leaseConfig(t)
	l := c.Leases[l1]
	if l == nil || l.ID != l1 || l.TTL.D() != 30*time.Second || !l.GrantedAt.Equal(fixedTime) {
		t.Fatalf("lease %d = %+v", l1, l)
	}
	if got, want := addrs(c.Pools["app"]), []string{"10.0.0.1:80", "10.0.1.1:80", "10.0.1.2:80"}; !slices.Equal(got, want) {
		t.Fatalf("app backends %v, want %v", got, want)
	}
	if be := c.Pools["app"].Spec.Backends[1]; be.Lease != l1 || be.Weight != 2 || be.Zone != "z-a" {
		t.Fatalf("registered backend %+v", be)
	}
	if c.Pools["other"].Spec.Backends[0].Lease != l2 {
		t.Fatalf("other: %+v", c.Pools["other"].Spec.Backends)
	}
	// Registering the same backend again changes nothing.
	same := mustNext(t, c, BackendRegisterCommand("app", Backend{Addr: "10.0.1.1:80", Lease: l1, Weight: 2, Zone: "z-a"}))
	if same.Pools["app"] != c.Pools["app"] {
		t.Fatal("an unchanged registration rewrote the pool")
	}
	// A new lease takes an address over (re-registration after a lost lease).
	c2 := mustNext(t, c, LeaseGrantCommand(5*time.Second, fixedTime))
	l3 := c2.Index
	c2 = mustNext(t, c2, BackendRegisterCommand("app", Backend{Addr: "10.0.1.1:80", Lease: l3}))
	if be := c2.Pools["app"].Spec.Backends[1]; be.Lease != l3 || be.Weight != 0 {
		t.Fatalf("take over: %+v", be)
	}
	if got := addrs(c2.Pools["app"]); len(got) != 3 {
		t.Fatalf("take over duplicated the address: %v", got)
	}
}

func TestLeaseExpireRemovesBackendsEverywhere(t *testing.T) {
	c, l1, l2 := leaseConfig(t)
	next := mustNext(t, c, LeaseExpireCommand([]uint64{l2, 999}, fixedTime.Add(time.Minute)))
	if _, ok := next.Leases[l2]; ok {
		t.Fatal("expired lease still there")
	}
	if _, ok := next.Leases[l1]; !ok {
		t.Fatal("other lease gone")
	}
	if got, want := addrs(next.Pools["app"]), []string{"10.0.0.1:80", "10.0.1.1:80"}; !slices.Equal(got, want) {
		t.Fatalf("app %v, want %v", got, want)
	}
	if got := next.Pools["other"].Spec.Backends; got != nil {
		t.Fatalf("other still has %v", got)
	}
	if next.Pools["app"].ModifyIndex != next.Index {
		t.Fatal("pool modify_index not advanced")
	}
	// The base document is untouched.
	if len(c.Pools["app"].Spec.Backends) != 3 || c.Leases[l2] == nil {
		t.Fatal("Next modified its input")
	}
	// Expiring only unknown leases is a no-op, not an error.
	again := mustNext(t, next, LeaseExpireCommand([]uint64{l2}, fixedTime))
	if again.Pools["app"] != next.Pools["app"] {
		t.Fatal("no-op expiry rewrote a pool")
	}
}

func TestLeaseRevokeDrainsThenRemoves(t *testing.T) {
	c, l1, _ := leaseConfig(t)
	drain := mustNext(t, c, LeaseRevokeCommand(l1, true, fixedTime.Add(time.Second)))
	l := drain.Leases[l1]
	if l == nil || !l.Draining || !l.DrainSince.Equal(fixedTime.Add(time.Second)) {
		t.Fatalf("draining lease %+v", l)
	}
	be := drain.Pools["app"].Spec.Backends[1]
	if !be.Drain || be.Lease != l1 {
		t.Fatalf("backend after drain %+v", be)
	}
	if drain.Pools["app"].Spec.Backends[0].Drain || drain.Pools["app"].Spec.Backends[2].Drain {
		t.Fatal("other backends drained")
	}
	// A draining lease takes no new registrations; draining again is a no-op.
	_, err := Next(drain, drain.Index+1, BackendRegisterCommand("other", Backend{Addr: "10.0.9.9:80", Lease: l1}))
	wantFieldError(t, err, "backend.lease", ErrConflict)
	if again := mustNext(t, drain, LeaseRevokeCommand(l1, true, fixedTime)); again.Pools["app"] != drain.Pools["app"] {
		t.Fatal("second drain rewrote the pool")
	}
	gone := mustNext(t, drain, LeaseRevokeCommand(l1, false, fixedTime.Add(6*time.Second)))
	if _, ok := gone.Leases[l1]; ok {
		t.Fatal("revoked lease still there")
	}
	if got, want := addrs(gone.Pools["app"]), []string{"10.0.0.1:80", "10.0.1.2:80"}; !slices.Equal(got, want) {
		t.Fatalf("app %v, want %v", got, want)
	}
}

func TestDeregister(t *testing.T) {
	c, l1, l2 := leaseConfig(t)
	next := mustNext(t, c, BackendDeregisterCommand("app", "10.0.1.2:80", l2))
	if got, want := addrs(next.Pools["app"]), []string{"10.0.0.1:80", "10.0.1.1:80"}; !slices.Equal(got, want) {
		t.Fatalf("app %v, want %v", got, want)
	}
	if next.Leases[l2] == nil || len(next.Pools["other"].Spec.Backends) != 1 {
		t.Fatal("deregistering one backend touched the lease or another pool")
	}
	_, err := Next(c, c.Index+1, BackendDeregisterCommand("app", "10.0.1.2:80", l1))
	wantFieldError(t, err, "backend.lease", ErrConflict)
}

func TestLeaseCommandValidation(t *testing.T) {
	c, l1, _ := leaseConfig(t)
	drain := mustNext(t, c, LeaseRevokeCommand(l1, true, fixedTime))
	tests := []struct {
		name     string
		base     *Config
		cmd      *Command
		field    string
		sentinel error
	}{
		{"ttl too short", c, LeaseGrantCommand(time.Second, fixedTime), "ttl", ErrInvalid},
		{"ttl too long", c, LeaseGrantCommand(25*time.Hour, fixedTime), "ttl", ErrInvalid},
		{"ttl missing", c, LeaseGrantCommand(0, fixedTime), "ttl", ErrInvalid},
		{"grant without time", c, LeaseGrantCommand(time.Minute, time.Time{}), "time", ErrInvalid},
		{"revoke no id", c, LeaseRevokeCommand(0, false, fixedTime), "id", ErrInvalid},
		{"revoke unknown", c, LeaseRevokeCommand(4242, false, fixedTime), "id", ErrNotFound},
		{"drain without time", c, LeaseRevokeCommand(l1, true, time.Time{}), "time", ErrInvalid},
		{"expire nothing", c, LeaseExpireCommand(nil, fixedTime), "ids", ErrInvalid},
		{"expire zero id", c, LeaseExpireCommand([]uint64{l1, 0}, fixedTime), "ids[1]", ErrInvalid},
		{"expire without time", c, LeaseExpireCommand([]uint64{l1}, time.Time{}), "time", ErrInvalid},
		{"register unknown pool", c, BackendRegisterCommand("nope", Backend{Addr: "10.0.2.1:80", Lease: l1}), "pool", ErrNotFound},
		{"register bad pool name", c, BackendRegisterCommand("No Pool", Backend{Addr: "10.0.2.1:80", Lease: l1}), "pool", ErrInvalid},
		{"register unknown lease", c, BackendRegisterCommand("app", Backend{Addr: "10.0.2.1:80", Lease: 4242}), "backend.lease", ErrNotFound},
		{"register no lease", c, BackendRegisterCommand("app", Backend{Addr: "10.0.2.1:80"}), "backend.lease", ErrInvalid},
		{"register draining lease", drain, BackendRegisterCommand("app", Backend{Addr: "10.0.2.1:80", Lease: l1}), "backend.lease", ErrConflict},
		{"register bad addr", c, BackendRegisterCommand("app", Backend{Addr: "10.0.2.1", Lease: l1}), "backend.addr", ErrInvalid},
		{"register bad port", c, BackendRegisterCommand("app", Backend{Addr: "10.0.2.1:0", Lease: l1}), "backend.addr", ErrInvalid},
		{"register no addr", c, BackendRegisterCommand("app", Backend{Lease: l1}), "backend.addr", ErrInvalid},
		{"register weight", c, BackendRegisterCommand("app", Backend{Addr: "10.0.2.1:80", Lease: l1, Weight: 5000}), "backend.weight", ErrInvalid},
		{"register zone", c, BackendRegisterCommand("app", Backend{Addr: "10.0.2.1:80", Lease: l1, Zone: "a b"}), "backend.zone", ErrInvalid},
		{"register static addr", c, BackendRegisterCommand("app", Backend{Addr: "10.0.0.1:80", Lease: l1}), "backend.addr", ErrConflict},
		{"register no backend", c, NewCommand(&BackendRegister{Pool: "app"}), "backend", ErrInvalid},
		{"deregister unknown addr", c, BackendDeregisterCommand("app", "10.0.9.9:80", 0), "backend.addr", ErrNotFound},
		{"deregister static", c, BackendDeregisterCommand("app", "10.0.0.1:80", 0), "backend.addr", ErrConflict},
		{"deregister unknown pool", c, BackendDeregisterCommand("nope", "10.0.1.1:80", 0), "pool", ErrNotFound},
		{"apply static over leased", c, ApplyCommand([]Object{obj(KindPool, "app", `{"backends":[{"addr":"10.0.1.1:80"}]}`)}), "documents[0].spec.backends[0].addr", ErrConflict},
		{"put static over leased", c, PutCommand(obj(KindPool, "app", `{"backends":[{"addr":"10.0.1.1:80"}]}`), nil), "spec.backends[0].addr", ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshotBytes(t, tt.base)
			_, err := Next(tt.base, tt.base.Index+1, tt.cmd)
			wantFieldError(t, err, tt.field, tt.sentinel)
			if !bytes.Equal(before, snapshotBytes(t, tt.base)) {
				t.Fatal("a refused command changed the document")
			}
			// The same holds after an encode/decode round trip, as the FSM sees it.
			b, err := EncodeCommand(tt.cmd)
			if err != nil {
				t.Fatal(err)
			}
			f := New()
			f.Restore(tt.base)
			if err := f.Apply(tt.base.Index+1, b); err == nil {
				t.Fatal("FSM applied a refused command")
			}
		})
	}
}

// TestApplyKeepsLeasedBackends: an operator's pool spec keeps the pool's
// lease-attached backends, and re-applying an export is a no-op.
func TestApplyKeepsLeasedBackends(t *testing.T) {
	c, l1, l2 := leaseConfig(t)
	next := mustNext(t, c, ApplyCommand([]Object{obj(KindPool, "app", `{"balancer":"random","backends":[{"addr":"10.0.0.9:80"}]}`)}))
	p := next.Pools["app"]
	if got, want := addrs(p), []string{"10.0.0.9:80", "10.0.1.1:80", "10.0.1.2:80"}; !slices.Equal(got, want) {
		t.Fatalf("app %v, want %v", got, want)
	}
	if p.Spec.Balancer != BalancerRandom || p.Spec.Backends[1].Lease != l1 || p.Spec.Backends[2].Lease != l2 {
		t.Fatalf("app %+v", p.Spec)
	}
	// Export and apply again: nothing changes, modify_index included.
	again := mustNext(t, next, ApplyCommand(next.Objects()))
	if again.Pools["app"] != next.Pools["app"] || again.Pools["other"] != next.Pools["other"] {
		t.Fatal("re-applying the export rewrote pools")
	}
	// A manifest cannot invent lease attachments: a backend with a lease
	// that the pool does not hold is dropped.
	forged := mustNext(t, c, PutCommand(obj(KindPool, "other", fmt.Sprintf(`{"backends":[{"addr":"10.0.7.7:80","lease":%d}]}`, l1)), nil))
	if got := addrs(forged.Pools["other"]); !slices.Equal(got, []string{"10.0.1.2:80"}) {
		t.Fatalf("other %v", got)
	}
}

func TestLeaseSnapshotAndRestore(t *testing.T) {
	c, l1, l2 := leaseConfig(t)
	c = mustNext(t, c, LeaseRevokeCommand(l1, true, fixedTime.Add(time.Second)))
	back, err := ReadSnapshot(bytes.NewReader(snapshotBytes(t, c)))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(document(back), document(c)) {
		t.Fatal("snapshot round trip differs")
	}
	if len(back.Leases) != 2 || !back.Leases[l1].Draining {
		t.Fatalf("leases %+v", back.Leases)
	}
	// A restore brings the leases back with their backends.
	r := mustNext(t, Empty(), NewCommand(&Restore{Config: back}))
	if len(r.Leases) != 2 || len(r.Pools["app"].Spec.Backends) != 3 {
		t.Fatalf("restored %d leases, app %v", len(r.Leases), addrs(r.Pools["app"]))
	}
	// Restoring the same document keeps the lease objects.
	same := mustNext(t, r, NewCommand(&Restore{Config: back}))
	if same.Leases[l2] != r.Leases[l2] {
		t.Fatal("unchanged lease replaced")
	}
	// A document with a backend on a missing lease is refused.
	orphan := *back
	orphan.Leases = map[uint64]*Lease{l1: back.Leases[l1]}
	_, err = Next(Empty(), 1, NewCommand(&Restore{Config: &orphan}))
	wantFieldError(t, err, "pools/app.spec.backends[2].lease", ErrInvalid)
	// A corrupt lease key is detected when reading a snapshot.
	bad := *c
	bad.Leases = map[uint64]*Lease{7: {ID: 8, TTL: Duration(time.Minute)}}
	if _, err := ReadSnapshot(bytes.NewReader(snapshotBytes(t, &bad))); err == nil {
		t.Fatal("lease with a mismatched key accepted")
	}
}

func TestLeaseDeterminism(t *testing.T) {
	cmds := []*Command{LeaseGrantCommand(3*time.Second, fixedTime)}
	for i := range 20 {
		cmds = append(cmds, LeaseGrantCommand(time.Duration(i+2)*time.Second, fixedTime.Add(time.Duration(i)*time.Millisecond)))
	}
	run := func() []byte {
		f := New()
		f.Restore(baseConfig(t))
		idx := f.Config().Index
		apply := func(cmd *Command) {
			idx++
			b, err := EncodeCommand(cmd)
			if err != nil {
				t.Fatal(err)
			}
			_ = f.Apply(idx, b)
		}
		var ids []uint64
		for _, cmd := range cmds {
			apply(cmd)
			ids = append(ids, idx)
		}
		for i, id := range ids {
			apply(BackendRegisterCommand([]string{"app", "other"}[i%2], Backend{Addr: fmt.Sprintf("10.1.0.%d:80", i+1), Lease: id}))
		}
		apply(LeaseRevokeCommand(ids[1], true, fixedTime.Add(time.Hour)))
		apply(LeaseExpireCommand([]uint64{ids[7], ids[3], ids[5], 99999}, fixedTime.Add(time.Hour)))
		apply(LeaseRevokeCommand(ids[1], false, fixedTime.Add(2*time.Hour)))
		return snapshotBytes(t, f.Config())
	}
	a, b := run(), run()
	if !bytes.Equal(a, b) {
		t.Fatal("the same log gave different snapshots")
	}
	c, err := ReadSnapshot(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Leases) != 21-4 || len(c.Pools["app"].Spec.Backends)+len(c.Pools["other"].Spec.Backends) != 1+21-4 {
		t.Fatalf("%d leases, app %v other %v", len(c.Leases), addrs(c.Pools["app"]), addrs(c.Pools["other"]))
	}
}
