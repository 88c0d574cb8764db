package dataplane

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/fsm"
)

// Incremental compilation. With 10,000 routes a full compile takes about
// 100 ms of CPU on every node for every change; a change of a few routes
// needs only those routes compiled and the host lists they are in sorted
// again. Everything else (compiled pools, routes, the lists of untouched
// hosts) is shared with the previous table, which is never modified:
// both stay valid for the requests still reading the old one.

// maxIncrementalShare: a change of more than 1/maxIncrementalShare of
// the routes is compiled in full, which is then about as cheap.
const maxIncrementalShare = 8

// compileNext compiles cfg, reusing prev where the change allows.
func compileNext(prev *Table, cfg *fsm.Config, reg *registry, zone string) *Table {
	if t := compileIncremental(prev, cfg, reg); t != nil {
		return t
	}
	return compile(cfg, reg, zone)
}

// attachObs gives cr its series (when the registry counts requests) and
// returns obs with them appended.
func attachObs(reg *registry, cr *route, obs []*requestObs) []*requestObs {
	m := reg.metrics
	if m == nil {
		return obs
	}
	cr.obs = m.requestObs(cr.name, "")
	obs = append(obs, cr.obs)
	for i := range cr.split {
		cr.split[i].obs = m.requestObs(cr.name, cr.split[i].pool.name)
		obs = append(obs, cr.split[i].obs)
	}
	return obs
}

// hostKey names one route list of a listener: exact host, wildcard
// suffix, or (any) the routes without hosts.
type hostKey struct {
	listener string
	wild     bool
	any      bool
	host     string
}

// routeKeys lists the lists a route spec is in, as compile files it.
func routeKeys(s *fsm.RouteSpec) []hostKey {
	if len(s.Match.Hosts) == 0 {
		return []hostKey{{listener: s.Listener, any: true}}
	}
	keys := make([]hostKey, 0, len(s.Match.Hosts))
	for _, h := range s.Match.Hosts {
		h = normalizeHostString(h)
		if suffix, ok := strings.CutPrefix(h, "*"); ok {
			keys = append(keys, hostKey{listener: s.Listener, wild: true, host: suffix})
		} else {
			keys = append(keys, hostKey{listener: s.Listener, host: h})
		}
	}
	return keys
}

// compileIncremental returns the table of cfg built from prev, or nil
// when only a full compile will do: no previous table, listeners, pools
// or zones changed (pools are shared as compiled), or too many routes.
func compileIncremental(prev *Table, cfg *fsm.Config, reg *registry) *Table {
	if prev == nil || prev.src == nil || cfg == nil || prev.routes.shards == nil {
		return nil
	}
	old := prev.src
	if !sameMap(old.Listeners, cfg.Listeners) || !sameMap(old.Pools, cfg.Pools) || !sameMap(old.Zones, cfg.Zones) {
		return nil
	}
	limit := max(len(cfg.Routes)/maxIncrementalShare, 8)
	changed, ok := changedRoutes(old, cfg, limit)
	if !ok {
		return nil
	}
	// A map whose name count has moved far from what its shards were
	// made for is built afresh with the whole table.
	if !shardsFit(len(prev.routes.shards), len(cfg.Routes)) {
		return nil
	}
	t := &Table{
		index: cfg.Index, src: cfg, pools: prev.pools,
		listeners: make(map[string]*listenerTable, len(prev.listeners)),
	}
	routes := prev.routes.writer()
	for name, lt := range prev.listeners {
		nlt := *lt
		nlt.exact, nlt.wild = maps.Clone(lt.exact), maps.Clone(lt.wild)
		t.listeners[name] = &nlt
	}
	// The lists a changed route left or joins are built from the previous
	// list without its old version and with its new one.
	type listChange struct{ removed, added []*route }
	dirty := map[hostKey]*listChange{}
	change := func(k hostKey) *listChange {
		lc := dirty[k]
		if lc == nil {
			lc = &listChange{}
			dirty[k] = lc
		}
		return lc
	}
	for name := range changed {
		if o, cr := old.Routes[name], prev.routes.get(name); o != nil && cr != nil {
			for _, k := range routeKeys(&o.Spec) {
				lc := change(k)
				lc.removed = append(lc.removed, cr)
			}
		}
		routes.delete(name)
	}
	res := regexCache{}
	for _, name := range slices.Sorted(maps.Keys(changed)) {
		r := cfg.Routes[name]
		if r == nil {
			continue
		}
		if t.listeners[r.Spec.Listener] == nil {
			t.errors = append(t.errors, errMissingListener(name, r.Spec.Listener))
			continue
		}
		cr, err := compileRoute(name, &r.Spec, t.pools, res)
		if err != nil {
			t.errors = append(t.errors, err)
			continue
		}
		routes.set(name, cr)
		for _, k := range routeKeys(&r.Spec) {
			lc := change(k)
			lc.added = append(lc.added, cr)
		}
	}
	t.routes = routes.m
	for k, lc := range dirty {
		lt := t.listeners[k.listener]
		var cur *routeList
		switch {
		case k.any:
			cur = lt.anyHost
		case k.wild:
			cur = lt.wild[k.host]
		default:
			cur = lt.exact[k.host]
		}
		nl := cur.with(lc.removed, lc.added)
		switch {
		case k.any:
			lt.anyHost = nl
		case nl == nil && k.wild:
			delete(lt.wild, k.host)
		case nl == nil:
			delete(lt.exact, k.host)
		case k.wild:
			lt.wild[k.host] = nl
		default:
			lt.exact[k.host] = nl
		}
	}
	t.incremental = true
	if reg.metrics != nil {
		t.obs = make([]*requestObs, 0, len(prev.obs))
		var was []*requestObs
		for _, o := range prev.obs {
			if changed[o.route] {
				was = append(was, o)
			} else {
				t.obs = append(t.obs, o)
			}
		}
		n := len(t.obs)
		for _, name := range slices.Sorted(maps.Keys(changed)) {
			if cr := t.routes.get(name); cr != nil {
				t.obs = attachObs(reg, cr, t.obs)
			}
		}
		for _, o := range was {
			if !slices.Contains(t.obs[n:], o) {
				t.goneObs = append(t.goneObs, o)
			}
		}
	}
	return t
}

// changedRoutes is the set of route names whose route differs between a
// and b, or false when it has more than limit names. When b records how
// its routes were made from a's, only the names written are compared.
func changedRoutes(a, b *fsm.Config, limit int) (map[string]bool, bool) {
	changed := map[string]bool{}
	if names, ok := fsm.ChangedRoutes(a, b); ok {
		for _, name := range names {
			if a.Routes[name] != b.Routes[name] {
				changed[name] = true
			}
		}
		return changed, len(changed) <= limit
	}
	for name, r := range b.Routes {
		if o, ok := a.Routes[name]; !ok || o != r {
			changed[name] = true
		}
		if len(changed) > limit {
			return nil, false
		}
	}
	for name := range a.Routes {
		if _, ok := b.Routes[name]; !ok {
			changed[name] = true
		}
		if len(changed) > limit {
			return nil, false
		}
	}
	return changed, true
}

// retireRoutes is sweepRoutes for a table built incrementally: only the
// series of the routes that changed can have gone, and t lists them.
func (m *metrics) retireRoutes(t *Table) {
	for _, o := range t.goneObs {
		m.obs.CompareAndDelete(obsKey{o.route, o.pool}, o)
		o.retired.Store(true)
		m.requests.DeletePartialMatch(prometheus.Labels{"route": o.route, "pool": o.pool})
		if t.routes.get(o.route) == nil {
			m.latency.DeleteLabelValues(o.route)
		}
	}
}

func errMissingListener(route, listener string) error {
	return fmt.Errorf("routes[%s].listener: %q does not exist", route, listener)
}

// sameMap: fsm copies a map only when a command changes it, so an
// unchanged map is the same map in both documents.
func sameMap[K comparable, V any](a, b map[K]V) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}
