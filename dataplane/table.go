package dataplane

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/conf"
)

// Table is one compiled, immutable view of the configuration. Requests read
// it through an atomic pointer; a configuration change compiles a new Table
// and swaps it in. Nothing in a Table is written after compile except the
// balancer state inside each pool, which has its own lock.
type Table struct {
	index     uint64
	listeners map[string]*listenerTable
	pools     map[string]*pool
	// errors are problems compile worked around (a route skipped, a leg
	// dropped); they are logged once per swap.
	errors []error
	// obs are the per-(route, pool) series this table counts into, looked
	// up once here rather than per request (nil without metrics).
	obs []*requestObs
	// src is the configuration compiled, and routes its compiled routes
	// by name: the next table reuses what did not change (incremental.go).
	src    *fsm.Config
	routes nameMap
	// incremental: built from the previous table, whose series of the
	// changed routes that this one no longer counts into are goneObs.
	incremental bool
	goneObs     []*requestObs
}

// Index is the configuration index the table was compiled from.
func (t *Table) Index() uint64 { return t.index }

type listenerTable struct {
	name   string
	spec   fsm.ListenerSpec
	limits listenerLimits
	// Routes by exact lower-case host, by wildcard suffix (".example.com"
	// for "*.example.com") and for any host. Each list is in precedence
	// order (lessRoute) and indexed by path; lookup merges the candidates
	// of the lists that apply to a host by priority, preferring the more
	// specific host list on equal priority. anyHost is nil without routes.
	exact   map[string]*routeList
	wild    map[string]*routeList
	anyHost *routeList
}

type listenerLimits struct {
	maxHeaderBytes int
	maxBodyBytes   int64
	readTimeout    time.Duration
	writeTimeout   time.Duration
	idleTimeout    time.Duration
	maxConns       int
}

func effectiveLimits(l fsm.ListenerLimits) listenerLimits {
	out := listenerLimits{
		maxHeaderBytes: l.MaxHeaderBytes, maxBodyBytes: l.MaxBodyBytes,
		readTimeout: l.ReadTimeout.D(), writeTimeout: l.WriteTimeout.D(),
		idleTimeout: l.IdleTimeout.D(), maxConns: l.MaxConns,
	}
	conf.Positive(&out.maxHeaderBytes, DefaultMaxHeaderBytes)
	conf.Positive(&out.maxBodyBytes, DefaultMaxBodyBytes)
	conf.Positive(&out.readTimeout, DefaultReadTimeout)
	conf.Positive(&out.writeTimeout, DefaultWriteTimeout)
	conf.Positive(&out.idleTimeout, DefaultIdleTimeout)
	conf.Positive(&out.maxConns, DefaultMaxConns)
	out.maxHeaderBytes = clampInt(out.maxHeaderBytes, maxHeaderBytesCeiling)
	out.maxConns = clampInt(out.maxConns, maxConnsCeiling)
	out.readTimeout = clampDuration(out.readTimeout)
	out.writeTimeout = clampDuration(out.writeTimeout)
	out.idleTimeout = clampDuration(out.idleTimeout)
	return out
}

type pathKind uint8

// Path kinds in the order they win over each other.
const (
	pathExact pathKind = iota
	pathRegex
	pathPrefix
)

type actionKind uint8

const (
	actionSplit actionKind = iota
	actionRedirect
	actionRespond
)

type valueMatcher struct {
	name   string // lower-case for headers, raw for query
	value  string
	hasVal bool
	re     *regexp.Regexp
	invert bool
}

type splitLeg struct {
	pool *pool
	cum  int // cumulative weight, for a binary search
	obs  *requestObs
}

type headerKV struct{ key, value string }

type retryPolicy struct {
	attempts                      int
	onConnect, onReset, onTimeout bool
	statuses                      []int
	budgetPercent                 int
}

type route struct {
	name     string
	priority int
	kind     pathKind
	path     string
	re       *regexp.Regexp
	methods  []string
	headers  []valueMatcher
	query    []valueMatcher

	action actionKind
	split  []splitLeg
	total  int
	// stickyHeader / stickyCookie: the split leg is picked by a hash of
	// this header or cookie (see splitPoint).
	stickyHeader, stickyCookie string
	splitStride                int           // see splitPoint
	splitSeq                   atomic.Uint64 // requests split so far on this node
	redirect                   fsm.Redirect
	respond                    struct {
		status  int
		body    []byte
		headers []headerKV
	}

	rewrite       bool
	rewritePrefix string
	rewriteHost   string
	reqAdd        []headerKV
	reqRemove     []string // lower-case
	respAdd       []headerKV
	respRemove    []string // lower-case

	connectTimeout time.Duration
	requestTimeout time.Duration
	idleTimeout    time.Duration // streamed bodies; 0: none
	tunnelIdle     time.Duration // Upgrade tunnels, silent both ways
	retry          retryPolicy
	maxBody        int64 // 0: the listener's
	// obs counts the route's requests that reach no pool (respond,
	// redirect, no leg); each leg has its own.
	obs *requestObs
}

// lessRoute orders routes in one host list: priority (higher first), path
// specificity (exact, regex, longer prefix), then name so every node agrees.
func lessRoute(a, b *route) int {
	if a.priority != b.priority {
		return cmp.Compare(b.priority, a.priority)
	}
	if a.kind != b.kind {
		return cmp.Compare(a.kind, b.kind)
	}
	if a.kind == pathPrefix && len(a.path) != len(b.path) {
		return cmp.Compare(len(b.path), len(a.path))
	}
	return strings.Compare(a.name, b.name)
}

// compile builds a Table. It never fails as a whole: a route or leg that
// cannot be compiled is left out and reported in Table.errors, so one bad
// object cannot take a node's traffic down.
func compile(cfg *fsm.Config, reg *registry, zone string) *Table {
	t := &Table{listeners: map[string]*listenerTable{}, pools: map[string]*pool{}}
	if cfg == nil {
		return t
	}
	t.index, t.src = cfg.Index, cfg
	t.routes = newNameMap(len(cfg.Routes))
	for name, p := range cfg.Pools {
		if p == nil {
			continue
		}
		t.pools[name] = compilePool(name, &p.Spec, cfg.Zones, reg, zone)
	}
	for name, l := range cfg.Listeners {
		if l == nil {
			continue
		}
		t.listeners[name] = &listenerTable{
			name: name, spec: l.Spec, limits: effectiveLimits(l.Spec.Limits),
			exact: map[string]*routeList{}, wild: map[string]*routeList{},
		}
	}
	type hostRoutes struct {
		exact, wild map[string][]*route
		anyHost     []*route
	}
	byHost := map[*listenerTable]*hostRoutes{}
	// Routes often share patterns (the same regex on many hosts); each
	// distinct pattern is compiled once per build.
	res := regexCache{}
	for name, r := range cfg.Routes {
		if r == nil {
			continue
		}
		lt := t.listeners[r.Spec.Listener]
		if lt == nil {
			t.errors = append(t.errors, errMissingListener(name, r.Spec.Listener))
			continue
		}
		cr, err := compileRoute(name, &r.Spec, t.pools, res)
		if err != nil {
			t.errors = append(t.errors, err)
			continue
		}
		t.obs = attachObs(reg, cr, t.obs)
		t.routes.put(name, cr)
		hr := byHost[lt]
		if hr == nil {
			hr = &hostRoutes{exact: map[string][]*route{}, wild: map[string][]*route{}}
			byHost[lt] = hr
		}
		if len(r.Spec.Match.Hosts) == 0 {
			hr.anyHost = append(hr.anyHost, cr)
			continue
		}
		for _, h := range r.Spec.Match.Hosts {
			h = normalizeHostString(h)
			if suffix, ok := strings.CutPrefix(h, "*"); ok {
				hr.wild[suffix] = append(hr.wild[suffix], cr)
			} else {
				hr.exact[h] = append(hr.exact[h], cr)
			}
		}
	}
	sorted := func(l []*route) *routeList {
		slices.SortFunc(l, lessRoute)
		return newRouteList(l)
	}
	for lt, hr := range byHost {
		for h, l := range hr.exact {
			lt.exact[h] = sorted(l)
		}
		for h, l := range hr.wild {
			lt.wild[h] = sorted(l)
		}
		if len(hr.anyHost) > 0 {
			lt.anyHost = sorted(hr.anyHost)
		}
	}
	return t
}

func normalizeHostString(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	return strings.TrimSuffix(h, ".")
}

// regexCache holds the patterns compiled during one table build, keyed by
// the anchored expression.
type regexCache map[string]*regexp.Regexp

func (c regexCache) compile(pattern string) (*regexp.Regexp, error) {
	expr := `^(?:` + pattern + `)$`
	if re, ok := c[expr]; ok {
		return re, nil
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, err
	}
	c[expr] = re
	return re, nil
}

// maxRegexInput bounds the bytes a route's regex is run on (a path, a
// header or query value). Longer input does not match: Go's regexp is
// linear in the input, but a long path times a costly pattern times many
// routes is still work an attacker chooses.
const maxRegexInput = 8 << 10

func compileRoute(name string, s *fsm.RouteSpec, pools map[string]*pool, res regexCache) (*route, error) {
	r := &route{name: name, priority: s.Priority, maxBody: s.MaxBody}
	field := "routes[" + name + "]"
	switch m := s.Match.Path; {
	case m.Exact != "":
		r.kind, r.path = pathExact, m.Exact
	case m.Regex != "":
		re, err := res.compile(m.Regex)
		if err != nil {
			return nil, fmt.Errorf("%s.match.path.regex: %w", field, err)
		}
		r.kind, r.re = pathRegex, re
	case m.Prefix != "":
		r.kind, r.path = pathPrefix, m.Prefix
	default:
		r.kind, r.path = pathPrefix, "/"
	}
	for _, m := range s.Match.Methods {
		r.methods = append(r.methods, strings.ToUpper(m))
	}
	var err error
	if r.headers, err = compileValueMatchers(field+".match.headers", s.Match.Headers, true, res); err != nil {
		return nil, err
	}
	if r.query, err = compileValueMatchers(field+".match.query", s.Match.Query, false, res); err != nil {
		return nil, err
	}
	switch a := s.Action; {
	case a.Redirect != nil:
		r.action, r.redirect = actionRedirect, *a.Redirect
		if r.redirect.Code == 0 {
			r.redirect.Code = 302
		}
	case a.Respond != nil:
		r.action = actionRespond
		r.respond.status = a.Respond.Status
		if r.respond.status == 0 {
			r.respond.status = 200
		}
		r.respond.body = []byte(a.Respond.Body)
		r.respond.headers = sortedKV(a.Respond.Headers)
	default:
		r.action = actionSplit
		if a.Sticky != nil {
			r.stickyHeader, r.stickyCookie = strings.ToLower(a.Sticky.Header), a.Sticky.Cookie
		}
		for _, leg := range a.Split {
			p := pools[leg.Pool]
			if p == nil || leg.Weight <= 0 {
				continue // no pool: the leg gets no traffic; with no legs the route answers 503
			}
			r.total += clampInt(leg.Weight, maxWeightCeiling)
			r.split = append(r.split, splitLeg{pool: p, cum: r.total})
		}
		r.splitStride = splitStride(r.total)
	}
	if s.Rewrite != nil {
		r.rewriteHost = s.Rewrite.Host
		if s.Rewrite.PathPrefix != "" && r.kind == pathPrefix {
			r.rewrite, r.rewritePrefix = true, s.Rewrite.PathPrefix
		}
	}
	r.reqAdd = sortedKV(s.HeadersAdd)
	r.respAdd = sortedKV(s.ResponseHeadersAdd)
	for _, h := range s.HeadersRemove {
		r.reqRemove = append(r.reqRemove, strings.ToLower(h))
	}
	for _, h := range s.ResponseHeadersRemove {
		r.respRemove = append(r.respRemove, strings.ToLower(h))
	}
	r.connectTimeout = clampDuration(or(s.Timeouts.Connect.D(), DefaultConnectTimeout))
	r.requestTimeout = clampDuration(or(s.Timeouts.Request.D(), DefaultRequestTimeout))
	r.idleTimeout = clampDuration(s.Timeouts.Idle.D())
	r.tunnelIdle = clampDuration(or(s.Timeouts.Idle.D(), DefaultTunnelIdleTimeout))
	r.retry = compileRetry(s.Retries)
	return r, nil
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// compileRetry: without a policy a route still retries once on a connect
// failure, which is always safe because nothing reached a backend.
func compileRetry(p *fsm.RetryPolicy) retryPolicy {
	if p == nil {
		return retryPolicy{attempts: 1, onConnect: true, budgetPercent: DefaultRetryBudgetPercent}
	}
	out := retryPolicy{attempts: p.Attempts, budgetPercent: or(p.BudgetPercent, DefaultRetryBudgetPercent)}
	if len(p.On) == 0 {
		out.onConnect = true
	}
	for _, on := range p.On {
		switch on {
		case "connect-failure":
			out.onConnect = true
		case "reset":
			out.onReset = true
		case "timeout":
			out.onTimeout = true
		default:
			if code, err := strconv.Atoi(on); err == nil {
				out.statuses = append(out.statuses, code)
			}
		}
	}
	return out
}

func compileValueMatchers(field string, in []fsm.ValueMatch, header bool, res regexCache) ([]valueMatcher, error) {
	var out []valueMatcher
	for i, m := range in {
		vm := valueMatcher{name: m.Name, value: m.Value, hasVal: m.Value != "", invert: m.Invert}
		if header {
			vm.name = strings.ToLower(m.Name)
		}
		if m.Regex != "" {
			re, err := res.compile(m.Regex)
			if err != nil {
				return nil, fmt.Errorf("%s[%d].regex: %w", field, i, err)
			}
			vm.re = re
		}
		out = append(out, vm)
	}
	return out, nil
}

func sortedKV(m map[string]string) []headerKV {
	out := make([]headerKV, 0, len(m))
	for k, v := range m {
		out = append(out, headerKV{k, v})
	}
	slices.SortFunc(out, func(a, b headerKV) int { return strings.Compare(a.key, b.key) })
	return out
}
