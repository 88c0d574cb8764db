package fsm

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// Limits on operator-supplied values that the data plane relies on.
const (
	maxNameLen      = 63
	maxNodeIDLen    = 128
	maxZoneLen      = 63
	maxSplitWeight  = 10000
	maxBackendWt    = 1000
	maxRetries      = 5
	maxRegexLen     = 4096
	maxHealthRiseFl = 100
)

// Defaults the data plane applies, needed here only to compare a health
// check timeout with its interval when one of them is left unset.
const (
	defaultCheckInterval = 2_000_000_000 // 2s
	defaultCheckTimeout  = 1_000_000_000 // 1s
)

// validateSpec checks the values of one decoded spec. References to other
// objects are checked by checkRefs against the resulting document.
func validateSpec(prefix string, kind Kind, spec any) error {
	switch s := spec.(type) {
	case *ListenerSpec:
		return validateListener(prefix, s)
	case *RouteSpec:
		return validateRoute(prefix, s)
	case *PoolSpec:
		return validatePool(prefix, s)
	case *VIPSpec:
		return validateVIP(prefix, s)
	}
	return invalidf("kind", "unknown kind %q", kind)
}

func validateListener(p string, s *ListenerSpec) error {
	if s.Port < 1 || s.Port > 65535 {
		return invalidf(p+".port", "%d is not a port (1..65535)", s.Port)
	}
	switch s.Protocol {
	case "", "http":
		if s.TLS != nil {
			return invalidf(p+".tls", "only valid with protocol https")
		}
	case "https":
		if s.TLS == nil {
			return invalidf(p+".tls", "required with protocol https")
		}
		if s.TLS.CertFile == "" {
			return invalidf(p+".tls.cert_file", "required")
		}
		if s.TLS.KeyFile == "" {
			return invalidf(p+".tls.key_file", "required")
		}
	default:
		return invalidf(p+".protocol", "%q is not http or https", s.Protocol)
	}
	l := s.Limits
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"max_header_bytes", int64(l.MaxHeaderBytes)},
		{"max_body_bytes", l.MaxBodyBytes},
		{"read_timeout", int64(l.ReadTimeout)},
		{"write_timeout", int64(l.WriteTimeout)},
		{"idle_timeout", int64(l.IdleTimeout)},
		{"max_conns", int64(l.MaxConns)},
	} {
		if f.v < 0 {
			return invalidf(p+".limits."+f.name, "must not be negative")
		}
	}
	return nil
}

func validateRoute(p string, s *RouteSpec) error {
	if s.Listener == "" {
		return invalidf(p+".listener", "required")
	}
	if err := validateMatch(p+".match", &s.Match); err != nil {
		return err
	}
	if err := validateAction(p+".action", &s.Action); err != nil {
		return err
	}
	if rw := s.Rewrite; rw != nil {
		if rw.PathPrefix != "" {
			if !strings.HasPrefix(rw.PathPrefix, "/") {
				return invalidf(p+".rewrite.path_prefix", "%q must start with \"/\"", rw.PathPrefix)
			}
			if s.Match.Path.Exact != "" || s.Match.Path.Regex != "" {
				return invalidf(p+".rewrite.path_prefix", "only valid with a prefix path match")
			}
		}
		if rw.Host != "" {
			if msg := hostnameProblem(rw.Host, false); msg != "" {
				return invalidf(p+".rewrite.host", "%s", msg)
			}
		}
	}
	if err := validateHeaderOps(p, "headers_add", "headers_remove", s.HeadersAdd, s.HeadersRemove); err != nil {
		return err
	}
	if err := validateHeaderOps(p, "response_headers_add", "response_headers_remove", s.ResponseHeadersAdd, s.ResponseHeadersRemove); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		v    Duration
	}{{"connect", s.Timeouts.Connect}, {"request", s.Timeouts.Request}, {"idle", s.Timeouts.Idle}} {
		if f.v < 0 {
			return invalidf(p+".timeouts."+f.name, "must not be negative")
		}
	}
	if r := s.Retries; r != nil {
		if r.Attempts < 0 || r.Attempts > maxRetries {
			return invalidf(p+".retries.attempts", "%d is out of range 0..%d", r.Attempts, maxRetries)
		}
		for i, on := range r.On {
			if !retryCondition(on) {
				return invalidf(fmt.Sprintf("%s.retries.on[%d]", p, i), "%q is not connect-failure, reset, timeout or a 4xx/5xx status", on)
			}
		}
		if r.BudgetPercent < 0 || r.BudgetPercent > 100 {
			return invalidf(p+".retries.budget_percent", "%d is out of range 0..100", r.BudgetPercent)
		}
	}
	if s.MaxBody < 0 {
		return invalidf(p+".max_body", "must not be negative")
	}
	return nil
}

func retryCondition(s string) bool {
	switch s {
	case "connect-failure", "reset", "timeout":
		return true
	}
	if len(s) != 3 {
		return false
	}
	code, err := strconv.Atoi(s)
	return err == nil && code >= 400 && code <= 599
}

func validateMatch(p string, m *RouteMatch) error {
	for i, h := range m.Hosts {
		if msg := hostnameProblem(h, true); msg != "" {
			return invalidf(fmt.Sprintf("%s.hosts[%d]", p, i), "%s", msg)
		}
	}
	pm := m.Path
	set := 0
	for _, v := range []string{pm.Prefix, pm.Exact, pm.Regex} {
		if v != "" {
			set++
		}
	}
	if set > 1 {
		return invalidf(p+".path", "set at most one of prefix, exact, regex")
	}
	if pm.Prefix != "" && !strings.HasPrefix(pm.Prefix, "/") {
		return invalidf(p+".path.prefix", "%q must start with \"/\"", pm.Prefix)
	}
	if pm.Exact != "" && !strings.HasPrefix(pm.Exact, "/") {
		return invalidf(p+".path.exact", "%q must start with \"/\"", pm.Exact)
	}
	if pm.Regex != "" {
		if msg := regexProblem(pm.Regex); msg != "" {
			return invalidf(p+".path.regex", "%s", msg)
		}
	}
	for i, meth := range m.Methods {
		if !isToken(meth) || strings.ToUpper(meth) != meth {
			return invalidf(fmt.Sprintf("%s.methods[%d]", p, i), "%q is not an upper-case method token", meth)
		}
	}
	for _, part := range []struct {
		name   string
		vs     []ValueMatch
		header bool
	}{{"headers", m.Headers, true}, {"query", m.Query, false}} {
		for i, vm := range part.vs {
			f := fmt.Sprintf("%s.%s[%d]", p, part.name, i)
			if vm.Name == "" {
				return invalidf(f+".name", "required")
			}
			if part.header && !isToken(vm.Name) {
				return invalidf(f+".name", "%q is not a valid header name", vm.Name)
			}
			if vm.Value != "" && vm.Regex != "" {
				return invalidf(f, "set at most one of value, regex")
			}
			if vm.Regex != "" {
				if msg := regexProblem(vm.Regex); msg != "" {
					return invalidf(f+".regex", "%s", msg)
				}
			}
		}
	}
	return nil
}

func regexProblem(re string) string {
	if len(re) > maxRegexLen {
		return fmt.Sprintf("longer than %d characters", maxRegexLen)
	}
	if _, err := regexp.Compile(re); err != nil {
		return err.Error()
	}
	return ""
}

func validateAction(p string, a *RouteAction) error {
	set := 0
	if len(a.Split) > 0 {
		set++
	}
	if a.Redirect != nil {
		set++
	}
	if a.Respond != nil {
		set++
	}
	if set != 1 {
		return invalidf(p, "set exactly one of split, redirect, respond")
	}
	if len(a.Split) > 0 {
		sum := 0
		seen := make(map[string]int, len(a.Split))
		for i, wp := range a.Split {
			f := fmt.Sprintf("%s.split[%d]", p, i)
			if wp.Pool == "" {
				return invalidf(f+".pool", "required")
			}
			if j, dup := seen[wp.Pool]; dup {
				return invalidf(f+".pool", "pool %q is already in split[%d]", wp.Pool, j)
			}
			seen[wp.Pool] = i
			if wp.Weight < 0 || wp.Weight > maxSplitWeight {
				return invalidf(f+".weight", "%d is out of range 0..%d", wp.Weight, maxSplitWeight)
			}
			sum += wp.Weight
		}
		if sum == 0 {
			return invalidf(p+".split", "weights must not all be 0")
		}
	}
	if r := a.Redirect; r != nil {
		switch r.Code {
		case 0, 301, 302, 303, 307, 308:
		default:
			return invalidf(p+".redirect.code", "%d is not 301, 302, 303, 307 or 308", r.Code)
		}
		switch r.Scheme {
		case "", "http", "https":
		default:
			return invalidf(p+".redirect.scheme", "%q is not http or https", r.Scheme)
		}
		if r.Host != "" {
			if msg := hostnameProblem(r.Host, false); msg != "" {
				return invalidf(p+".redirect.host", "%s", msg)
			}
		}
		if r.Port < 0 || r.Port > 65535 {
			return invalidf(p+".redirect.port", "%d is not a port", r.Port)
		}
		if r.Path != "" && !strings.HasPrefix(r.Path, "/") {
			return invalidf(p+".redirect.path", "%q must start with \"/\"", r.Path)
		}
	}
	if r := a.Respond; r != nil {
		if r.Status < 100 || r.Status > 599 {
			return invalidf(p+".respond.status", "%d is out of range 100..599", r.Status)
		}
		for _, k := range sortedKeys(r.Headers) {
			if !isToken(k) {
				return invalidf(p+".respond.headers."+k, "%q is not a valid header name", k)
			}
		}
	}
	return nil
}

func validateHeaderOps(p, addName, removeName string, add map[string]string, remove []string) error {
	for _, k := range sortedKeys(add) {
		if !isToken(k) {
			return invalidf(p+"."+addName+"."+k, "%q is not a valid header name", k)
		}
		if strings.ContainsAny(add[k], "\r\n\x00") {
			return invalidf(p+"."+addName+"."+k, "value contains a line break or NUL")
		}
	}
	for i, k := range remove {
		if !isToken(k) {
			return invalidf(fmt.Sprintf("%s.%s[%d]", p, removeName, i), "%q is not a valid header name", k)
		}
	}
	return nil
}

func validatePool(p string, s *PoolSpec) error {
	switch s.Balancer {
	case "", BalancerRoundRobin, BalancerLeastRequest, BalancerRandom:
		if s.Hash != nil {
			return invalidf(p+".hash", "only valid with balancer %q", BalancerHash)
		}
	case BalancerHash:
		if s.Hash == nil {
			return invalidf(p+".hash", "required with balancer %q", BalancerHash)
		}
		set := 0
		if s.Hash.Header != "" {
			set++
			if !isToken(s.Hash.Header) {
				return invalidf(p+".hash.header", "%q is not a valid header name", s.Hash.Header)
			}
		}
		if s.Hash.Cookie != "" {
			set++
			if !isToken(s.Hash.Cookie) {
				return invalidf(p+".hash.cookie", "%q is not a valid cookie name", s.Hash.Cookie)
			}
		}
		if s.Hash.ClientIP {
			set++
		}
		if set != 1 {
			return invalidf(p+".hash", "set exactly one of header, cookie, client_ip")
		}
	default:
		return invalidf(p+".balancer", "%q is not round_robin, least_request, random or hash", s.Balancer)
	}
	if err := percent(p+".zone_min_healthy_percent", s.ZoneMinHealthyPercent); err != nil {
		return err
	}
	if err := percent(p+".panic_threshold", s.PanicThreshold); err != nil {
		return err
	}
	if s.MaxConnsPerBackend < 0 {
		return invalidf(p+".max_conns_per_backend", "must not be negative")
	}
	if s.MaxConnWait < 0 {
		return invalidf(p+".max_conn_wait", "must not be negative")
	}
	if hc := s.HealthCheck; hc != nil {
		if err := validateHealthCheck(p+".health_check", hc); err != nil {
			return err
		}
	}
	if o := s.Outlier; o != nil {
		if o.Consecutive5xx < 0 {
			return invalidf(p+".outlier.consecutive_5xx", "must not be negative")
		}
		if o.ConsecutiveConnectErrors < 0 {
			return invalidf(p+".outlier.consecutive_connect_errors", "must not be negative")
		}
		if o.BaseEjection < 0 {
			return invalidf(p+".outlier.base_ejection", "must not be negative")
		}
		if err := percent(p+".outlier.max_ejected_percent", o.MaxEjectedPercent); err != nil {
			return err
		}
	}
	seen := make(map[string]int, len(s.Backends))
	for i, be := range s.Backends {
		f := fmt.Sprintf("%s.backends[%d]", p, i)
		if be.Addr == "" {
			return invalidf(f+".addr", "required")
		}
		if msg := hostPortProblem(be.Addr); msg != "" {
			return invalidf(f+".addr", "%s", msg)
		}
		if j, dup := seen[be.Addr]; dup {
			return invalidf(f+".addr", "%q is already backends[%d]", be.Addr, j)
		}
		seen[be.Addr] = i
		if be.Weight < 0 || be.Weight > maxBackendWt {
			return invalidf(f+".weight", "%d is out of range 0..%d", be.Weight, maxBackendWt)
		}
		if be.Zone != "" {
			if err := validateZoneName(f+".zone", be.Zone); err != nil {
				return err
			}
		}
		switch be.Source {
		case "":
		case BackendSourceEC2:
			if be.Lease != 0 {
				return invalidf(f+".source", "%q cannot be set on a lease-attached backend", be.Source)
			}
		default:
			return invalidf(f+".source", "%q is not a backend source (\"\" or %q)", be.Source, BackendSourceEC2)
		}
	}
	if d := s.Discovery; d != nil {
		if d.EC2 == nil {
			return invalidf(p+".discovery.ec2", "required")
		}
		if len(d.EC2.Tags) == 0 {
			return invalidf(p+".discovery.ec2.tags", "at least one tag required")
		}
		for _, k := range sortedKeys(d.EC2.Tags) {
			if k == "" {
				return invalidf(p+".discovery.ec2.tags", "empty tag key")
			}
		}
		if d.EC2.Port < 1 || d.EC2.Port > 65535 {
			return invalidf(p+".discovery.ec2.port", "%d is not a port (1..65535)", d.EC2.Port)
		}
		if d.EC2.Refresh < 0 {
			return invalidf(p+".discovery.ec2.refresh", "must not be negative")
		}
	}
	return nil
}

func validateHealthCheck(p string, hc *HealthCheck) error {
	if !strings.HasPrefix(hc.Path, "/") {
		return invalidf(p+".path", "%q must start with \"/\"", hc.Path)
	}
	if strings.ContainsFunc(hc.Path, unicode.IsSpace) {
		return invalidf(p+".path", "%q contains whitespace", hc.Path)
	}
	if hc.Expect != 0 && (hc.Expect < 100 || hc.Expect > 599) {
		return invalidf(p+".expect", "%d is out of range 100..599", hc.Expect)
	}
	if hc.Host != "" {
		if msg := hostnameProblem(hc.Host, false); msg != "" {
			return invalidf(p+".host", "%s", msg)
		}
	}
	// Zero means "the default"; anything set must be in range.
	if hc.Rise < 0 || hc.Rise > maxHealthRiseFl {
		return invalidf(p+".rise", "%d is out of range 1..%d", hc.Rise, maxHealthRiseFl)
	}
	if hc.Fall < 0 || hc.Fall > maxHealthRiseFl {
		return invalidf(p+".fall", "%d is out of range 1..%d", hc.Fall, maxHealthRiseFl)
	}
	if hc.Interval < 0 {
		return invalidf(p+".interval", "must be positive")
	}
	if hc.Timeout < 0 {
		return invalidf(p+".timeout", "must be positive")
	}
	interval, timeout := hc.Interval, hc.Timeout
	if interval == 0 {
		interval = defaultCheckInterval
	}
	if timeout == 0 {
		timeout = defaultCheckTimeout
	}
	if timeout > interval {
		what := ""
		if hc.Timeout == 0 {
			what = " (the default)"
		}
		return invalidf(p+".timeout", "%v%s must not exceed interval %v", timeout.D(), what, interval.D())
	}
	return nil
}

func percent(field string, v int) error {
	if v < 0 || v > 100 {
		return invalidf(field, "%d is out of range 0..100", v)
	}
	return nil
}

func validateVIP(p string, s *VIPSpec) error {
	switch s.Provider {
	case ProviderAWSEIP:
		if s.AllocationID == "" {
			return invalidf(p+".allocation_id", "required with provider %s", ProviderAWSEIP)
		}
		if strings.ContainsFunc(s.AllocationID, unicode.IsSpace) {
			return invalidf(p+".allocation_id", "%q contains whitespace", s.AllocationID)
		}
		if s.Address != "" {
			if _, err := netip.ParseAddr(s.Address); err != nil {
				return invalidf(p+".address", "%q is not an IP address", s.Address)
			}
		}
		if s.Interface != "" {
			return invalidf(p+".interface", "only valid with provider %s", ProviderLinux)
		}
	case ProviderLinux:
		if s.Address == "" {
			return invalidf(p+".address", "required with provider %s (CIDR, e.g. 10.0.0.100/24)", ProviderLinux)
		}
		if _, err := netip.ParsePrefix(s.Address); err != nil {
			return invalidf(p+".address", "%q is not in CIDR form (e.g. 10.0.0.100/24)", s.Address)
		}
		if s.AllocationID != "" {
			return invalidf(p+".allocation_id", "only valid with provider %s", ProviderAWSEIP)
		}
		if s.Interface != "" && (len(s.Interface) > 15 || strings.ContainsAny(s.Interface, "/ \t\n:")) {
			return invalidf(p+".interface", "%q is not an interface name", s.Interface)
		}
	case ProviderNone:
	case "":
		return invalidf(p+".provider", "required (aws-eip, linux or none)")
	default:
		return invalidf(p+".provider", "%q is not aws-eip, linux or none", s.Provider)
	}
	if s.HomeNode != "" {
		if err := validateNodeID(p+".home_node", s.HomeNode); err != nil {
			return err
		}
	}
	seen := make(map[string]int, len(s.Candidates))
	for i, c := range s.Candidates {
		f := fmt.Sprintf("%s.candidates[%d]", p, i)
		if err := validateNodeID(f, c); err != nil {
			return err
		}
		if j, dup := seen[c]; dup {
			return invalidf(f, "%q is already candidates[%d]", c, j)
		}
		seen[c] = i
	}
	if s.HomeNode != "" && len(s.Candidates) > 0 {
		if _, ok := seen[s.HomeNode]; !ok {
			return invalidf(p+".candidates", "must include home_node %q", s.HomeNode)
		}
	}
	return nil
}
