package fsm

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// The accepted range of a lease's TTL. Below the minimum a keepalive every
// TTL/3 would load the leader for nothing; above the maximum a lost
// backend would linger for more than a day.
const (
	MinLeaseTTL = 2 * time.Second
	MaxLeaseTTL = 24 * time.Hour
)

// LeaseGrantCommand grants a lease of ttl; now is the leader's clock.
func LeaseGrantCommand(ttl time.Duration, now time.Time) *Command {
	return NewCommand(&LeaseGrant{TTL: Duration(ttl), Time: now})
}

// LeaseRevokeCommand ends lease id. With drain, its backends are only
// marked drain: true and the lease stays (Draining) until a later revoke
// without drain removes both.
func LeaseRevokeCommand(id uint64, drain bool, now time.Time) *Command {
	return NewCommand(&LeaseRevoke{ID: id, Drain: drain, Time: now})
}

// LeaseExpireCommand ends every lease of ids whose owner stopped sending
// keepalives. Ids that are already gone are skipped, so a late expiry
// racing a revoke is harmless.
func LeaseExpireCommand(ids []uint64, now time.Time) *Command {
	return NewCommand(&LeaseExpire{IDs: ids, Time: now})
}

// BackendRegisterCommand adds be (with be.Lease set) to pool, or updates
// the backend of that address when a lease already holds it.
func BackendRegisterCommand(pool string, be Backend) *Command {
	return NewCommand(&BackendRegister{Pool: pool, Backend: &be})
}

// BackendDeregisterCommand removes the lease-attached backend addr from
// pool; lease, when not 0, must be the one that holds it.
func BackendDeregisterCommand(pool, addr string, lease uint64) *Command {
	return NewCommand(&BackendDeregister{Pool: pool, Backend: &Backend{Addr: addr, Lease: lease}})
}

func validateLeaseTTL(field string, ttl Duration) error {
	if ttl.D() < MinLeaseTTL || ttl.D() > MaxLeaseTTL {
		return invalidf(field, "%v is out of range %v..%v", ttl.D(), MinLeaseTTL, MaxLeaseTTL)
	}
	return nil
}

func (b *builder) leases() map[uint64]*Lease {
	if !b.owned["lease"] {
		b.c.Leases = maps.Clone(b.c.Leases)
		if b.c.Leases == nil {
			b.c.Leases = map[uint64]*Lease{}
		}
		b.owned["lease"] = true
	}
	return b.c.Leases
}

// setBackends replaces pool name's backends in the document being built.
func (b *builder) setBackends(name string, backends []Backend) {
	old := b.c.Pools[name]
	np := *old
	np.ModifyIndex = b.index
	if len(backends) == 0 {
		backends = nil
	}
	np.Spec.Backends = backends
	b.pools()[name] = &np
}

func nextLeaseGrant(c *Config, index uint64, cmd *LeaseGrant) (*Config, error) {
	if err := validateLeaseTTL("ttl", cmd.TTL); err != nil {
		return nil, err
	}
	if cmd.Time.IsZero() {
		return nil, invalidf("time", "required (the leader's clock)")
	}
	if _, ok := c.Leases[index]; ok {
		return nil, conflictf("id", "lease %d already exists", index)
	}
	b := newBuilder(c, index)
	b.leases()[index] = &Lease{ID: index, TTL: cmd.TTL, GrantedAt: cmd.Time.UTC()}
	return b.c, nil
}

func nextLeaseRevoke(c *Config, index uint64, cmd *LeaseRevoke) (*Config, error) {
	if cmd.ID == 0 {
		return nil, invalidf("id", "required")
	}
	l, ok := c.Leases[cmd.ID]
	if !ok {
		return nil, notFoundf("id", "lease %d not found", cmd.ID)
	}
	b := newBuilder(c, index)
	if !cmd.Drain {
		removeLeases(b, map[uint64]bool{cmd.ID: true})
		return b.c, nil
	}
	if l.Draining {
		return b.c, nil
	}
	if cmd.Time.IsZero() {
		return nil, invalidf("time", "required with drain (the leader's clock)")
	}
	nl := *l
	nl.Draining = true
	nl.DrainSince = cmd.Time.UTC()
	b.leases()[cmd.ID] = &nl
	for _, name := range sortedKeys(c.Pools) {
		bes := c.Pools[name].Spec.Backends
		if !slices.ContainsFunc(bes, func(be Backend) bool { return be.Lease == cmd.ID && !be.Drain }) {
			continue
		}
		out := slices.Clone(bes)
		for i := range out {
			if out[i].Lease == cmd.ID {
				out[i].Drain = true
			}
		}
		b.setBackends(name, out)
	}
	return b.c, nil
}

func nextLeaseExpire(c *Config, index uint64, cmd *LeaseExpire) (*Config, error) {
	if len(cmd.IDs) == 0 {
		return nil, invalidf("ids", "at least one lease id required")
	}
	if cmd.Time.IsZero() {
		return nil, invalidf("time", "required (the leader's clock)")
	}
	gone := make(map[uint64]bool, len(cmd.IDs))
	for i, id := range cmd.IDs {
		if id == 0 {
			return nil, invalidf(fmt.Sprintf("ids[%d]", i), "0 is not a lease id")
		}
		if _, ok := c.Leases[id]; ok {
			gone[id] = true
		}
	}
	b := newBuilder(c, index)
	removeLeases(b, gone)
	return b.c, nil
}

// removeLeases deletes the leases in gone and every backend attached to
// them, from every pool.
func removeLeases(b *builder, gone map[uint64]bool) {
	if len(gone) == 0 {
		return
	}
	ls := b.leases()
	for id := range gone {
		delete(ls, id)
	}
	for _, name := range sortedKeys(b.c.Pools) {
		bes := b.c.Pools[name].Spec.Backends
		if !slices.ContainsFunc(bes, func(be Backend) bool { return gone[be.Lease] }) {
			continue
		}
		out := make([]Backend, 0, len(bes))
		for _, be := range bes {
			if !gone[be.Lease] {
				out = append(out, be)
			}
		}
		b.setBackends(name, out)
	}
}

func nextBackendRegister(c *Config, index uint64, cmd *BackendRegister) (*Config, error) {
	pool, err := registrationPool(c, cmd.Pool, cmd.Backend)
	if err != nil {
		return nil, err
	}
	be := *cmd.Backend
	if be.Lease == 0 {
		return nil, invalidf("backend.lease", "required: a registered backend is attached to a lease")
	}
	l, ok := c.Leases[be.Lease]
	if !ok {
		return nil, notFoundf("backend.lease", "lease %d not found (expired or revoked)", be.Lease)
	}
	if l.Draining {
		return nil, conflictf("backend.lease", "lease %d is being revoked", be.Lease)
	}
	be.Drain = false
	bes := pool.Spec.Backends
	i := slices.IndexFunc(bes, func(x Backend) bool { return x.Addr == be.Addr })
	var out []Backend
	switch {
	case i < 0:
		out = append(slices.Clone(bes), be)
	case bes[i].Lease == 0:
		return nil, conflictf("backend.addr", "%q is part of pool %q's spec; it cannot also be registered with a lease", be.Addr, cmd.Pool)
	case bes[i] == be:
		return newBuilder(c, index).c, nil
	default:
		// A new lease takes the address over: the owner re-registered after
		// losing its old lease, or moved its registration.
		out = slices.Clone(bes)
		out[i] = be
	}
	spec := pool.Spec
	spec.Backends = out
	if err := validatePool("pools/"+cmd.Pool+".spec", &spec); err != nil {
		return nil, backendField(err, len(out)-1, i)
	}
	b := newBuilder(c, index)
	b.setBackends(cmd.Pool, out)
	return b.c, nil
}

// backendField renames an error about the registered backend
// ("pools/p.spec.backends[3].weight") to the command's field
// ("backend.weight").
func backendField(err error, last, at int) error {
	fe, ok := err.(*FieldError)
	if !ok {
		return err
	}
	if at < 0 {
		at = last
	}
	prefix := fmt.Sprintf("backends[%d].", at)
	if i := strings.LastIndex(fe.Field, prefix); i >= 0 {
		return &FieldError{Field: "backend." + fe.Field[i+len(prefix):], Message: fe.Message, Err: fe.Err}
	}
	return err
}

func nextBackendDeregister(c *Config, index uint64, cmd *BackendDeregister) (*Config, error) {
	pool, err := registrationPool(c, cmd.Pool, cmd.Backend)
	if err != nil {
		return nil, err
	}
	bes := pool.Spec.Backends
	i := slices.IndexFunc(bes, func(x Backend) bool { return x.Addr == cmd.Backend.Addr })
	switch {
	case i < 0:
		return nil, notFoundf("backend.addr", "%q is not a backend of pool %q", cmd.Backend.Addr, cmd.Pool)
	case bes[i].Lease == 0:
		return nil, conflictf("backend.addr", "%q is part of pool %q's spec, not registered with a lease; change the pool instead", cmd.Backend.Addr, cmd.Pool)
	case cmd.Backend.Lease != 0 && bes[i].Lease != cmd.Backend.Lease:
		return nil, conflictf("backend.lease", "%q is held by lease %d, not %d", cmd.Backend.Addr, bes[i].Lease, cmd.Backend.Lease)
	}
	b := newBuilder(c, index)
	b.setBackends(cmd.Pool, slices.Delete(slices.Clone(bes), i, i+1))
	return b.c, nil
}

// registrationPool checks what register and deregister share: the pool
// exists and the backend address is well formed.
func registrationPool(c *Config, name string, be *Backend) (*Pool, error) {
	if err := validateName("pool", name); err != nil {
		return nil, err
	}
	if be == nil {
		return nil, invalidf("backend", "required")
	}
	if be.Addr == "" {
		return nil, invalidf("backend.addr", "required")
	}
	if msg := hostPortProblem(be.Addr); msg != "" {
		return nil, invalidf("backend.addr", "%s", msg)
	}
	pool, ok := c.Pools[name]
	if !ok {
		return nil, notFoundf("pool", "pool %q not found", name)
	}
	return pool, nil
}

// keepLeased makes a pool spec written by an operator (put or apply) keep
// the pool's current lease-attached backends: they belong to their
// leases, so a manifest neither removes them nor, by listing them, takes
// them over. Backends in spec that carry a lease (as an export shows
// them) are therefore dropped and replaced by the current ones, which
// keeps `rafter apply` of an export idempotent. A static backend whose
// address a lease holds is a conflict.
func keepLeased(c *Config, p, name string, spec any, canon json.RawMessage) (any, json.RawMessage, error) {
	ps, ok := spec.(*PoolSpec)
	if !ok {
		return spec, canon, nil
	}
	var leased []Backend
	if cur, ok := c.Pools[name]; ok {
		for _, be := range cur.Spec.Backends {
			if be.Lease != 0 {
				leased = append(leased, be)
			}
		}
	}
	hasLeaseField := slices.ContainsFunc(ps.Backends, func(be Backend) bool { return be.Lease != 0 })
	if len(leased) == 0 && !hasLeaseField {
		return spec, canon, nil
	}
	held := make(map[string]uint64, len(leased))
	for _, be := range leased {
		held[be.Addr] = be.Lease
	}
	out := make([]Backend, 0, len(ps.Backends)+len(leased))
	for i, be := range ps.Backends {
		if be.Lease != 0 {
			continue
		}
		if id, ok := held[be.Addr]; ok {
			return nil, nil, conflictf(fmt.Sprintf("%s.backends[%d].addr", p, i), "%q is registered with lease %d; deregister it before listing it in the pool", be.Addr, id)
		}
		out = append(out, be)
	}
	out = append(out, leased...)
	ns := *ps
	ns.Backends = out
	if len(out) == 0 {
		ns.Backends = nil
	}
	return &ns, canonicalJSON(&ns), nil
}

// restoreLeases takes the leases of a restored document. A backend
// attached to a lease the document does not hold is refused: such a
// document was not produced by rafter.
func restoreLeases(b *builder, cur, in *Config) error {
	ls := b.leases()
	for _, id := range slices.Sorted(maps.Keys(in.Leases)) {
		l := in.Leases[id]
		p := fmt.Sprintf("leases/%d", id)
		if l == nil || l.ID != id {
			return invalidf(p+".id", "must equal the map key %d", id)
		}
		if err := validateLeaseTTL(p+".ttl", l.TTL); err != nil {
			return err
		}
		nl := *l
		nl.GrantedAt = nl.GrantedAt.UTC()
		nl.DrainSince = nl.DrainSince.UTC()
		if old, ok := cur.Leases[id]; ok && sameLease(old, &nl) {
			ls[id] = old
			continue
		}
		ls[id] = &nl
	}
	for _, name := range sortedKeys(b.c.Pools) {
		for i, be := range b.c.Pools[name].Spec.Backends {
			if be.Lease != 0 && ls[be.Lease] == nil {
				return invalidf(fmt.Sprintf("pools/%s.spec.backends[%d].lease", name, i), "lease %d is not in the restored document", be.Lease)
			}
		}
	}
	return nil
}

func sameLease(a, b *Lease) bool {
	return a.ID == b.ID && a.TTL == b.TTL && a.GrantedAt.Equal(b.GrantedAt) &&
		a.Draining == b.Draining && a.DrainSince.Equal(b.DrainSince)
}
