package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
)

// Empty returns the document before any command: Index 0 and every map
// non-nil and empty.
func Empty() *Config {
	return &Config{
		Listeners:   map[string]*Listener{},
		Routes:      map[string]*Route{},
		Pools:       map[string]*Pool{},
		VIPs:        map[string]*VIP{},
		Assignments: map[string]*Assignment{},
		Nodes:       map[string]*Node{},
		Zones:       map[string]*ZoneState{},
		Leases:      map[uint64]*Lease{},
		Rollouts:    map[string]*Rollout{},

		RolloutStatus: map[string]*RolloutStatus{},

		Certificates:      map[string]*Certificate{},
		CertificateStatus: map[string]*CertificateStatus{},
	}
}

// Next is the whole state machine as a pure function: the Config that
// results from applying cmd to c at Raft index `index`, or an error (c is
// never modified). Validation (field paths), references (route -> listener,
// split -> pool, vip home/candidates -> nodes when nodes are known), CAS and
// not-found are all decided here, deterministically. The leader calls
// Next(cur, cur.Index+1, cmd) to reject bad commands before proposing; the
// FSM calls it again at apply time.
//
// The result shares every map that the command does not touch with c, and
// every object it does not change keeps its modify_index.
func Next(c *Config, index uint64, cmd *Command) (*Config, error) {
	return NextMemo(c, index, cmd, nil)
}

// NextMemo is Next with the costly pure steps (normalizing specs, encoding
// published objects) remembered in m, which may be nil. Its result and
// its errors are those of Next.
func NextMemo(c *Config, index uint64, cmd *Command, m *Memo) (*Config, error) {
	if c == nil {
		c = Empty()
	}
	if cmd == nil {
		return nil, invalidf("", "nil command")
	}
	if cmd.V != CommandVersion {
		return nil, &FieldError{Field: "v", Message: fmt.Sprintf("command version %d not supported (want %d)", cmd.V, CommandVersion), Err: ErrUnsupportedVersion}
	}
	if cmd.Payload == nil || cmd.Payload.commandType() != cmd.Type {
		return nil, invalidf("type", "command %q carries a payload of another type (%T)", cmd.Type, cmd.Payload)
	}
	switch p := cmd.Payload.(type) {
	case *Put:
		return nextPut(c, index, p, m)
	case *Delete:
		return nextDelete(c, index, p)
	case *ApplyManifest:
		return nextApply(c, index, p, m)
	case *Restore:
		return nextRestore(c, index, p)
	case *Assign:
		return nextAssign(c, index, p)
	case *Settle:
		return nextSettle(c, index, p)
	case *NodeUpsert:
		return nextNodeUpsert(c, index, p)
	case *NodeRemove:
		return nextNodeRemove(c, index, p)
	case *ZoneChange:
		return nextZone(c, index, p)
	case *LeaseGrant:
		return nextLeaseGrant(c, index, p)
	case *LeaseRevoke:
		return nextLeaseRevoke(c, index, p)
	case *LeaseExpire:
		return nextLeaseExpire(c, index, p)
	case *BackendRegister:
		return nextBackendRegister(c, index, p)
	case *BackendDeregister:
		return nextBackendDeregister(c, index, p)
	case *RolloutDecide:
		return nextRolloutDecide(c, index, p)
	case *RolloutControl:
		return nextRolloutControl(c, index, p)
	case *ACMEOrder:
		return nextACMEOrder(c, index, p)
	case *ACMEChallenges:
		return nextACMEChallenges(c, index, p)
	case *ACMEResult:
		return nextACMEResult(c, index, p)
	case *ACMEAccountSet:
		return nextACMEAccount(c, index, p)
	case *CertificateIssue:
		return nextCertificateIssue(c, index, p)
	case *TicketKeysRotate:
		return nextTicketKeysRotate(c, index, p)
	}
	return nil, invalidf("type", "unknown command type %q", cmd.Type)
}

func checkCAS(cas *uint64, kind Kind, name string, cur uint64, exists bool) error {
	if cas == nil {
		return nil
	}
	switch {
	case *cas == 0 && exists:
		return conflictf("cas", "%s %q already exists (modify_index %d)", kind, name, cur)
	case *cas != 0 && !exists:
		return conflictf("cas", "%s %q does not exist (cas %d)", kind, name, *cas)
	case *cas != 0 && cur != *cas:
		return conflictf("cas", "%s %q has modify_index %d, not %d", kind, name, cur, *cas)
	}
	return nil
}

func nextPut(c *Config, index uint64, cmd *Put, m *Memo) (*Config, error) {
	if len(cmd.Objects) != 1 {
		return nil, invalidf("objects", "put takes exactly one object, got %d", len(cmd.Objects))
	}
	o := cmd.Objects[0]
	if !validKind(o.Kind) {
		return nil, invalidf("kind", "unknown kind %q (want one of listener, pool, route, vip, rollout, certificate, acme_issuer)", o.Kind)
	}
	if err := validateName("name", o.Name); err != nil {
		return nil, err
	}
	spec, canon, err := m.normalize("spec", o.Kind, o.Spec)
	if err != nil {
		return nil, err
	}
	if spec, canon, err = keepLeased(c, "spec", o.Name, spec, canon); err != nil {
		return nil, err
	}
	if spec, canon, err = sealCertificate(c, "spec", o.Name, spec, canon); err != nil {
		return nil, err
	}
	if spec, canon, err = sealEABKey(c, "spec", o.Name, spec, canon); err != nil {
		return nil, err
	}
	_, cur, exists := c.lookup(o.Kind, o.Name)
	if err := checkCAS(cmd.CAS, o.Kind, o.Name, cur, exists); err != nil {
		return nil, err
	}
	b := newBuilder(c, index)
	b.memo = m
	b.put(o.Kind, o.Name, spec, canon)
	if err := checkRefs(b.c, o.Kind, o.Name, "spec", true); err != nil {
		return nil, err
	}
	b.startRollouts()
	b.enforceRollouts()
	return b.c, nil
}

func nextDelete(c *Config, index uint64, cmd *Delete) (*Config, error) {
	if !validKind(cmd.Kind) {
		return nil, invalidf("kind", "unknown kind %q (want one of listener, pool, route, vip, rollout, certificate, acme_issuer)", cmd.Kind)
	}
	_, cur, exists := c.lookup(cmd.Kind, cmd.Name)
	if !exists {
		return nil, notFoundf("name", "%s %q not found", cmd.Kind, cmd.Name)
	}
	if err := checkCAS(cmd.CAS, cmd.Kind, cmd.Name, cur, exists); err != nil {
		return nil, err
	}
	if user := referencedBy(c, cmd.Kind, cmd.Name); user != "" {
		return nil, conflictf("name", "%s %q is still used by route %q", cmd.Kind, cmd.Name, user)
	}
	if user := rolloutUser(c, cmd.Kind, cmd.Name); user != "" {
		return nil, conflictf("name", "%s %q is still used by rollout %q", cmd.Kind, cmd.Name, user)
	}
	if cmd.Kind == KindACMEIssuer {
		if user := issuerUser(c, cmd.Name); user != "" {
			return nil, conflictf("name", "acme_issuer %q is ordering certificate %q", cmd.Name, user)
		}
	}
	if user := certificateUser(c, cmd.Kind, cmd.Name); user != "" {
		return nil, conflictf("name", "%s %q is still used by listener %q", cmd.Kind, cmd.Name, user)
	}
	b := newBuilder(c, index)
	b.delete(cmd.Kind, cmd.Name)
	if cmd.Kind == KindCertificate {
		b.forgetACME(cmd.Name)
	}
	if cmd.Kind == KindVIP {
		if _, ok := c.Assignments[cmd.Name]; ok {
			delete(b.assignments(), cmd.Name)
		}
	}
	return b.c, nil
}

// referencedBy names the first route (by name) that uses the listener or
// pool, or returns "".
func referencedBy(c *Config, kind Kind, name string) string {
	if kind != KindListener && kind != KindPool {
		return ""
	}
	for _, rn := range sortedKeys(c.Routes) {
		r := c.Routes[rn]
		if kind == KindListener && r.Spec.Listener == name {
			return rn
		}
		if kind == KindPool {
			for _, wp := range r.Spec.Action.Split {
				if wp.Pool == name {
					return rn
				}
			}
		}
	}
	return ""
}

func nextApply(c *Config, index uint64, cmd *ApplyManifest, m *Memo) (*Config, error) {
	type key struct {
		kind Kind
		name string
	}
	seen := make(map[key]int, len(cmd.Objects))
	b := newBuilder(c, index)
	b.memo = m
	for i, o := range cmd.Objects {
		p := fmt.Sprintf("documents[%d]", i)
		if !validKind(o.Kind) {
			return nil, invalidf(p+".kind", "unknown kind %q (want one of listener, pool, route, vip, rollout, certificate, acme_issuer)", o.Kind)
		}
		if err := validateName(p+".name", o.Name); err != nil {
			return nil, err
		}
		k := key{o.Kind, o.Name}
		if j, dup := seen[k]; dup {
			return nil, invalidf(p+".name", "%s %q is already defined by documents[%d]", o.Kind, o.Name, j)
		}
		seen[k] = i
		if m.unchanged(c, o.Kind, o.Name, o.Spec) {
			// What put does with a spec equal to the published one, known
			// here without decoding it.
			b.keep(o.Kind, o.Name)
			continue
		}
		spec, canon, err := m.normalize(p+".spec", o.Kind, o.Spec)
		if err != nil {
			return nil, err
		}
		if spec, canon, err = keepLeased(c, p+".spec", o.Name, spec, canon); err != nil {
			return nil, err
		}
		if spec, canon, err = sealCertificate(c, p+".spec", o.Name, spec, canon); err != nil {
			return nil, err
		}
		if spec, canon, err = sealEABKey(c, p+".spec", o.Name, spec, canon); err != nil {
			return nil, err
		}
		b.put(o.Kind, o.Name, spec, canon)
	}
	for i, o := range cmd.Objects {
		if err := checkRefs(b.c, o.Kind, o.Name, fmt.Sprintf("documents[%d].spec", i), true); err != nil {
			return nil, err
		}
	}
	b.startRollouts()
	b.enforceRollouts()
	return b.c, nil
}

func nextRestore(c *Config, index uint64, cmd *Restore) (*Config, error) {
	in := cmd.Config
	if in == nil {
		return nil, invalidf("config", "required")
	}
	// Start from an empty document that keeps the cluster's members, then
	// put every restored object; objects equal to the current ones keep
	// their modify_index so compare-and-set by clients stays meaningful.
	// Session-ticket keys are the cluster's own, like its members: a
	// restore keeps them.
	b := newBuilder(&Config{Nodes: c.Nodes, TicketKeys: c.TicketKeys}, index)
	b.base = c
	type item struct {
		kind Kind
		name string
	}
	var items []item
	for _, kind := range Kinds {
		for _, name := range in.names(kind) {
			p := fmt.Sprintf("%ss/%s", kind, name)
			if err := validateName(p, name); err != nil {
				return nil, err
			}
			if err := checkObjectName(p, kind, name, in); err != nil {
				return nil, err
			}
			spec, _, _ := in.lookup(kind, name)
			nspec, canon, err := normalize(p+".spec", kind, canonicalJSON(spec))
			if err != nil {
				return nil, err
			}
			if nspec, canon, err = sealCertificate(c, p+".spec", name, nspec, canon); err != nil {
				return nil, err
			}
			if nspec, canon, err = sealEABKey(c, p+".spec", name, nspec, canon); err != nil {
				return nil, err
			}
			b.put(kind, name, nspec, canon)
			items = append(items, item{kind, name})
		}
	}
	for _, it := range items {
		if err := checkRefs(b.c, it.kind, it.name, fmt.Sprintf("%ss/%s.spec", it.kind, it.name), false); err != nil {
			return nil, err
		}
	}
	as := b.assignments()
	for _, name := range sortedKeys(in.Assignments) {
		a := in.Assignments[name]
		p := "assignments/" + name
		if a == nil || a.VIP != name {
			return nil, invalidf(p+".vip", "must equal the map key %q", name)
		}
		if _, ok := b.c.VIPs[name]; !ok {
			return nil, invalidf(p+".vip", "vip %q is not in the restored document", name)
		}
		na := *a
		na.Since = na.Since.UTC()
		if cur, ok := c.Assignments[name]; ok && sameAssignment(cur, &na) {
			as[name] = cur
			continue
		}
		na.Token = index
		as[name] = &na
	}
	zs := b.zones()
	for _, name := range sortedKeys(in.Zones) {
		z := in.Zones[name]
		p := "zones/" + name
		if z == nil || z.Zone != name {
			return nil, invalidf(p+".zone", "must equal the map key %q", name)
		}
		if err := validateZoneName(p+".zone", name); err != nil {
			return nil, err
		}
		if cur, ok := c.Zones[name]; ok && cur.Evacuated == z.Evacuated {
			zs[name] = cur
			continue
		}
		zs[name] = &ZoneState{Zone: name, Evacuated: z.Evacuated, ModifyIndex: index}
	}
	if err := restoreLeases(b, c, in); err != nil {
		return nil, err
	}
	if err := restoreRollouts(b, in); err != nil {
		return nil, err
	}
	restoreACME(b, c)
	if err := restoreCertificateStatus(b, in); err != nil {
		return nil, err
	}
	return b.c, nil
}

// checkObjectName refuses a restored object whose own name differs from
// its map key: the document would then be ambiguous.
func checkObjectName(p string, kind Kind, key string, c *Config) error {
	var name string
	present := false
	switch kind {
	case KindListener:
		if o := c.Listeners[key]; o != nil {
			name, present = o.Name, true
		}
	case KindRoute:
		if o := c.Routes[key]; o != nil {
			name, present = o.Name, true
		}
	case KindPool:
		if o := c.Pools[key]; o != nil {
			name, present = o.Name, true
		}
	case KindVIP:
		if o := c.VIPs[key]; o != nil {
			name, present = o.Name, true
		}
	case KindRollout:
		if o := c.Rollouts[key]; o != nil {
			name, present = o.Name, true
		}
	case KindACMEIssuer:
		if o := c.ACMEIssuers[key]; o != nil {
			name, present = o.Name, true
		}
	case KindCertificate:
		if o := c.Certificates[key]; o != nil {
			name, present = o.Name, true
		}
	}
	if !present {
		return invalidf(p, "null object")
	}
	if name != key {
		return invalidf(p+".name", "%q does not match its key %q", name, key)
	}
	return nil
}

func sameAssignment(a, b *Assignment) bool {
	return a.VIP == b.VIP && a.Holder == b.Holder && a.Token == b.Token &&
		a.Since.Equal(b.Since) && a.Reason == b.Reason
}

func nextAssign(c *Config, index uint64, cmd *Assign) (*Config, error) {
	a := cmd.Assignment
	if a == nil {
		return nil, invalidf("assignment", "required")
	}
	if _, ok := c.VIPs[a.VIP]; !ok {
		return nil, notFoundf("assignment.vip", "vip %q not found", a.VIP)
	}
	// An empty holder records that nobody holds the VIP.
	if a.Holder != "" {
		if err := validateNodeID("assignment.holder", a.Holder); err != nil {
			return nil, err
		}
		if len(c.Nodes) > 0 {
			if _, ok := c.Nodes[a.Holder]; !ok {
				return nil, invalidf("assignment.holder", "node %q is not a cluster member", a.Holder)
			}
		}
	}
	if cmd.CAS != nil {
		var cur uint64
		if old, ok := c.Assignments[a.VIP]; ok {
			cur = old.Token
		}
		if cur != *cmd.CAS {
			return nil, conflictf("cas", "assignment of vip %q has token %d, not %d", a.VIP, cur, *cmd.CAS)
		}
	}
	b := newBuilder(c, index)
	b.assignments()[a.VIP] = &Assignment{
		VIP:    a.VIP,
		Holder: a.Holder,
		Token:  index,
		Since:  cmd.Time.UTC(),
		Reason: a.Reason,
	}
	return b.c, nil
}

// nextSettle records that no node but the holder can still have the VIP
// of the assignment with cmd.Assignment.Token. It refuses any other token,
// so a late settle never marks a newer assignment.
func nextSettle(c *Config, index uint64, cmd *Settle) (*Config, error) {
	a := cmd.Assignment
	if a == nil {
		return nil, invalidf("assignment", "required")
	}
	cur, ok := c.Assignments[a.VIP]
	if !ok {
		return nil, notFoundf("assignment.vip", "vip %q has no assignment", a.VIP)
	}
	if cur.Token != a.Token {
		return nil, conflictf("assignment.token", "assignment of vip %q has token %d, not %d", a.VIP, cur.Token, a.Token)
	}
	b := newBuilder(c, index)
	if cur.Settled {
		return b.c, nil
	}
	settled := *cur
	settled.Settled = true
	b.assignments()[a.VIP] = &settled
	return b.c, nil
}

func nextNodeUpsert(c *Config, index uint64, cmd *NodeUpsert) (*Config, error) {
	n := cmd.Node
	if n == nil {
		return nil, invalidf("node", "required")
	}
	if err := validateNode("node", n); err != nil {
		return nil, err
	}
	if cur, ok := c.Nodes[n.ID]; ok {
		same := *n
		same.ModifyIndex = cur.ModifyIndex
		if same == *cur {
			return newBuilder(c, index).c, nil
		}
	}
	if err := checkNodePorts(c, "node", n); err != nil {
		return nil, err
	}
	nn := *n
	nn.ModifyIndex = index
	b := newBuilder(c, index)
	b.nodes()[n.ID] = &nn
	return b.c, nil
}

func nextNodeRemove(c *Config, index uint64, cmd *NodeRemove) (*Config, error) {
	if _, ok := c.Nodes[cmd.NodeID]; !ok {
		return nil, notFoundf("node_id", "node %q not found", cmd.NodeID)
	}
	b := newBuilder(c, index)
	delete(b.nodes(), cmd.NodeID)
	return b.c, nil
}

func nextZone(c *Config, index uint64, cmd *ZoneChange) (*Config, error) {
	z := cmd.Zone
	if z == nil {
		return nil, invalidf("zone", "required")
	}
	if err := validateZoneName("zone.zone", z.Zone); err != nil {
		return nil, err
	}
	b := newBuilder(c, index)
	if cur, ok := c.Zones[z.Zone]; ok && cur.Evacuated == z.Evacuated {
		return b.c, nil
	}
	b.zones()[z.Zone] = &ZoneState{Zone: z.Zone, Evacuated: z.Evacuated, ModifyIndex: index}
	return b.c, nil
}

// builder produces the next Config copy-on-write: a map is cloned the first
// time the command writes to it, so published Configs are never modified
// and untouched maps are shared.
type builder struct {
	base  *Config // the published document whose objects keep their index when unchanged
	c     *Config
	index uint64
	owned map[string]bool
	memo  *Memo // may be nil
}

func newBuilder(c *Config, index uint64) *builder {
	nc := *c
	nc.Index = index
	// Until this command writes a route, the routes are c's, made as c's
	// record says; the first write records afresh.
	fillMaps(&nc)
	return &builder{base: c, c: &nc, index: index, owned: map[string]bool{}}
}

// fillMaps makes every nil map of c empty, so readers never meet nil maps.
func fillMaps(c *Config) {
	if c.Listeners == nil {
		c.Listeners = map[string]*Listener{}
	}
	if c.Routes == nil {
		c.Routes = map[string]*Route{}
	}
	if c.Pools == nil {
		c.Pools = map[string]*Pool{}
	}
	if c.VIPs == nil {
		c.VIPs = map[string]*VIP{}
	}
	if c.Assignments == nil {
		c.Assignments = map[string]*Assignment{}
	}
	if c.Nodes == nil {
		c.Nodes = map[string]*Node{}
	}
	if c.Zones == nil {
		c.Zones = map[string]*ZoneState{}
	}
	if c.Leases == nil {
		c.Leases = map[uint64]*Lease{}
	}
	if c.Rollouts == nil {
		c.Rollouts = map[string]*Rollout{}
	}
	if c.RolloutStatus == nil {
		c.RolloutStatus = map[string]*RolloutStatus{}
	}
	if c.Certificates == nil {
		c.Certificates = map[string]*Certificate{}
	}
	if c.CertificateStatus == nil {
		c.CertificateStatus = map[string]*CertificateStatus{}
	}
}

func own[V any](b *builder, key string, m *map[string]V) map[string]V {
	if !b.owned[key] {
		*m = maps.Clone(*m)
		if *m == nil {
			*m = map[string]V{}
		}
		b.owned[key] = true
	}
	return *m
}

func (b *builder) listeners() map[string]*Listener { return own(b, "l", &b.c.Listeners) }

// routes is the document's routes, to be written only through setRoute
// and deleteRoute, which record the names they write (ChangedRoutes).
func (b *builder) routes() map[string]*Route {
	if !b.owned["r"] {
		b.c.routesFrom = &routesDelta{base: b.c.Routes}
	}
	return own(b, "r", &b.c.Routes)
}

func (b *builder) setRoute(name string, r *Route) {
	m := b.routes()
	b.c.routesFrom.names = append(b.c.routesFrom.names, name)
	m[name] = r
}

func (b *builder) deleteRoute(name string) {
	m := b.routes()
	b.c.routesFrom.names = append(b.c.routesFrom.names, name)
	delete(m, name)
}
func (b *builder) pools() map[string]*Pool             { return own(b, "p", &b.c.Pools) }
func (b *builder) vips() map[string]*VIP               { return own(b, "v", &b.c.VIPs) }
func (b *builder) assignments() map[string]*Assignment { return own(b, "a", &b.c.Assignments) }
func (b *builder) nodes() map[string]*Node             { return own(b, "n", &b.c.Nodes) }
func (b *builder) zones() map[string]*ZoneState        { return own(b, "z", &b.c.Zones) }
func (b *builder) rollouts() map[string]*Rollout       { return own(b, "ro", &b.c.Rollouts) }
func (b *builder) rolloutStatus() map[string]*RolloutStatus {
	return own(b, "rs", &b.c.RolloutStatus)
}
func (b *builder) certificates() map[string]*Certificate { return own(b, "c", &b.c.Certificates) }
func (b *builder) certificateStatus() map[string]*CertificateStatus {
	return own(b, "cs", &b.c.CertificateStatus)
}

// put stores a normalized spec. An object whose spec equals the one in the
// base document is kept as it was (same pointer, same modify_index), which
// makes re-applying a manifest a no-op.
func (b *builder) put(kind Kind, name string, spec any, canon json.RawMessage) {
	if old, _, ok := b.base.lookup(kind, name); ok && bytes.Equal(b.memo.canonicalOf(old), canon) {
		b.keep(kind, name)
		return
	}
	switch kind {
	case KindListener:
		b.listeners()[name] = &Listener{Name: name, ModifyIndex: b.index, Spec: *spec.(*ListenerSpec)}
	case KindRoute:
		b.setRoute(name, &Route{Name: name, ModifyIndex: b.index, Spec: *spec.(*RouteSpec)})
	case KindPool:
		b.pools()[name] = &Pool{Name: name, ModifyIndex: b.index, Spec: *spec.(*PoolSpec)}
	case KindVIP:
		b.vips()[name] = &VIP{Name: name, ModifyIndex: b.index, Spec: *spec.(*VIPSpec)}
	case KindRollout:
		b.rollouts()[name] = &Rollout{Name: name, ModifyIndex: b.index, Spec: *spec.(*RolloutSpec)}
	case KindACMEIssuer:
		b.acmeIssuers()[name] = &ACMEIssuer{Name: name, ModifyIndex: b.index, Spec: *spec.(*ACMEIssuerSpec)}
	case KindCertificate:
		cs := *spec.(*CertificateSpec)
		b.certificates()[name] = &Certificate{Name: name, ModifyIndex: b.index, Spec: cs}
		if cs.ACME == nil {
			if _, ok := b.c.CertificateStatus[name]; ok {
				delete(b.certificateStatus(), name)
			}
		}
	}
}

// keep makes the document being built hold the base document's object
// for (kind, name), which must exist: same pointer, same modify_index.
func (b *builder) keep(kind Kind, name string) {
	if b.keeps(kind, name) {
		return
	}
	switch kind {
	case KindListener:
		b.listeners()[name] = b.base.Listeners[name]
	case KindRoute:
		b.setRoute(name, b.base.Routes[name])
	case KindPool:
		b.pools()[name] = b.base.Pools[name]
	case KindVIP:
		b.vips()[name] = b.base.VIPs[name]
	case KindRollout:
		b.rollouts()[name] = b.base.Rollouts[name]
	case KindACMEIssuer:
		b.acmeIssuers()[name] = b.base.ACMEIssuers[name]
	case KindCertificate:
		b.certificates()[name] = b.base.Certificates[name]
	}
}

func (b *builder) delete(kind Kind, name string) {
	switch kind {
	case KindListener:
		delete(b.listeners(), name)
	case KindRoute:
		b.deleteRoute(name)
	case KindPool:
		delete(b.pools(), name)
	case KindVIP:
		delete(b.vips(), name)
	case KindRollout:
		delete(b.rollouts(), name)
		if _, ok := b.c.RolloutStatus[name]; ok {
			delete(b.rolloutStatus(), name)
		}
	case KindACMEIssuer:
		delete(b.acmeIssuers(), name)
		b.afterIssuerDelete(name)
	case KindCertificate:
		delete(b.certificates(), name)
		if _, ok := b.c.CertificateStatus[name]; ok {
			delete(b.certificateStatus(), name)
		}
	}
}

// keeps reports whether the document being built already holds the base
// document's object for (kind, name), so an unchanged put clones nothing.
func (b *builder) keeps(kind Kind, name string) bool {
	switch kind {
	case KindListener:
		o, ok := b.c.Listeners[name]
		return ok && o == b.base.Listeners[name]
	case KindRoute:
		o, ok := b.c.Routes[name]
		return ok && o == b.base.Routes[name]
	case KindPool:
		o, ok := b.c.Pools[name]
		return ok && o == b.base.Pools[name]
	case KindVIP:
		o, ok := b.c.VIPs[name]
		return ok && o == b.base.VIPs[name]
	case KindRollout:
		o, ok := b.c.Rollouts[name]
		return ok && o == b.base.Rollouts[name]
	case KindACMEIssuer:
		o, ok := b.c.ACMEIssuers[name]
		return ok && o == b.base.ACMEIssuers[name]
	case KindCertificate:
		o, ok := b.c.Certificates[name]
		return ok && o == b.base.Certificates[name]
	}
	return false
}
