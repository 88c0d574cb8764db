package fsm

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
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
	case *RolloutSpec:
		return validateRollout(prefix, s)
	case *ACMEIssuerSpec:
		return validateACMEIssuer(prefix, s)
	case *CertificateSpec:
		return validateCertificate(prefix, s)
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
		if err := validateHTTPSRedirect(p+".https_redirect", s.HTTPSRedirect); err != nil {
			return err
		}
	case "https":
		if s.TLS == nil {
			return invalidf(p+".tls", "required with protocol https")
		}
		if s.HTTPSRedirect != nil {
			return invalidf(p+".https_redirect", "only valid with protocol http")
		}
		if err := validateListenerTLS(p+".tls", s.TLS); err != nil {
			return err
		}
	default:
		return invalidf(p+".protocol", "%q is not http or https", s.Protocol)
	}
	if err := validateProxyProtocol(p+".proxy_protocol", s.ProxyProtocol); err != nil {
		return err
	}
	l, lp := s.Limits, p+".limits."
	return firstErr(
		intRange(lp+"max_header_bytes", l.MaxHeaderBytes, 0, maxHeaderBytes),
		intRange(lp+"max_body_bytes", l.MaxBodyBytes, 0, maxBodyBytes),
		durRange(lp+"read_timeout", l.ReadTimeout, 0, maxListenerTimeout),
		durRange(lp+"write_timeout", l.WriteTimeout, 0, maxListenerTimeout),
		durRange(lp+"idle_timeout", l.IdleTimeout, 0, maxListenerTimeout),
		intRange(lp+"max_conns", l.MaxConns, 0, maxConns),
	)
}

func validateRoute(p string, s *RouteSpec) error {
	if s.Listener == "" {
		return invalidf(p+".listener", "required")
	}
	if err := intRange(p+".priority", s.Priority, -maxPriority, maxPriority); err != nil {
		return err
	}
	if err := validateMatch(p+".match", &s.Match); err != nil {
		return err
	}
	if err := validateAction(p+".action", &s.Action); err != nil {
		return err
	}
	if rw := s.Rewrite; rw != nil {
		if rw.PathPrefix != "" {
			if msg := pathProblem(rw.PathPrefix); msg != "" {
				return invalidf(p+".rewrite.path_prefix", "%s", msg)
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
	if err := firstErr(
		durRange(p+".timeouts.connect", s.Timeouts.Connect, 0, maxConnectTimeout),
		durRange(p+".timeouts.request", s.Timeouts.Request, 0, maxRouteTimeout),
		durRange(p+".timeouts.idle", s.Timeouts.Idle, 0, maxRouteTimeout),
	); err != nil {
		return err
	}
	if r := s.Retries; r != nil {
		if r.Attempts < 0 || r.Attempts > maxRetries {
			return invalidf(p+".retries.attempts", "%d is out of range 0..%d", r.Attempts, maxRetries)
		}
		if err := maxItems(p+".retries.on", len(r.On), maxRetryOn); err != nil {
			return err
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
	return intRange(p+".max_body", s.MaxBody, 0, maxBodyBytes)
}

// pathProblem describes why s is not a path a spec may hold, or returns "".
func pathProblem(s string) string {
	if !strings.HasPrefix(s, "/") {
		return fmt.Sprintf("%q must start with \"/\"", s)
	}
	if len(s) > maxPathLen {
		return fmt.Sprintf("at most %d bytes long, got %d", maxPathLen, len(s))
	}
	return ""
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
	if err := firstErr(
		maxItems(p+".hosts", len(m.Hosts), maxHosts),
		maxItems(p+".methods", len(m.Methods), maxMethods),
		maxItems(p+".headers", len(m.Headers), maxValueMatches),
		maxItems(p+".query", len(m.Query), maxValueMatches),
	); err != nil {
		return err
	}
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
	if pm.Prefix != "" {
		if msg := pathProblem(pm.Prefix); msg != "" {
			return invalidf(p+".path.prefix", "%s", msg)
		}
	}
	if pm.Exact != "" {
		if msg := pathProblem(pm.Exact); msg != "" {
			return invalidf(p+".path.exact", "%s", msg)
		}
	}
	if pm.Regex != "" {
		if msg := regexProblem(pm.Regex); msg != "" {
			return invalidf(p+".path.regex", "%s", msg)
		}
	}
	for i, meth := range m.Methods {
		f := fmt.Sprintf("%s.methods[%d]", p, i)
		if err := maxLen(f, meth, maxHeaderNameLen); err != nil {
			return err
		}
		if !isToken(meth) || strings.ToUpper(meth) != meth {
			return invalidf(f, "%q is not an upper-case method token", meth)
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
			if err := firstErr(
				maxLen(f+".name", vm.Name, maxHeaderNameLen),
				maxLen(f+".value", vm.Value, maxHeaderValueLen),
			); err != nil {
				return err
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
		if err := maxItems(p+".split", len(a.Split), maxSplit); err != nil {
			return err
		}
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
	if a.Sticky != nil && len(a.Split) == 0 {
		return invalidf(p+".sticky", "only valid with split")
	}
	if err := validateSticky(p+".sticky", a.Sticky); err != nil {
		return err
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
		if r.Path != "" {
			if msg := pathProblem(r.Path); msg != "" {
				return invalidf(p+".redirect.path", "%s", msg)
			}
		}
	}
	if r := a.Respond; r != nil {
		if r.Status < minStatus || r.Status > maxStatus {
			return invalidf(p+".respond.status", "%d is out of range %d..%d", r.Status, minStatus, maxStatus)
		}
		if err := maxLen(p+".respond.body", r.Body, maxRespondBody); err != nil {
			return err
		}
		if err := validateHeaderOps(p+".respond", "headers", "", r.Headers, nil); err != nil {
			return err
		}
	}
	return nil
}

func validateHeaderOps(p, addName, removeName string, add map[string]string, remove []string) error {
	if err := maxItems(p+"."+addName, len(add), maxHeaderOps); err != nil {
		return err
	}
	for _, k := range sortedKeys(add) {
		f := p + "." + addName + "." + k
		if len(k) > maxHeaderNameLen {
			// The name itself is too long to repeat in the path.
			return invalidf(p+"."+addName, "header name %.32q... is longer than %d bytes", k, maxHeaderNameLen)
		}
		if !isToken(k) {
			return invalidf(f, "%q is not a valid header name", k)
		}
		if strings.ContainsAny(add[k], "\r\n\x00") {
			return invalidf(f, "value contains a line break or NUL")
		}
		if err := maxLen(f, add[k], maxHeaderValueLen); err != nil {
			return err
		}
	}
	if removeName == "" {
		return nil
	}
	if err := maxItems(p+"."+removeName, len(remove), maxHeaderOps); err != nil {
		return err
	}
	for i, k := range remove {
		f := fmt.Sprintf("%s.%s[%d]", p, removeName, i)
		if !isToken(k) {
			return invalidf(f, "%q is not a valid header name", k)
		}
		if err := maxLen(f, k, maxHeaderNameLen); err != nil {
			return err
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
		if err := firstErr(
			maxLen(p+".hash.header", s.Hash.Header, maxHeaderNameLen),
			maxLen(p+".hash.cookie", s.Hash.Cookie, maxHeaderNameLen),
		); err != nil {
			return err
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
	if err := firstErr(
		intRange(p+".max_conns_per_backend", s.MaxConnsPerBackend, 0, maxConnsPerBackend),
		durRange(p+".max_conn_wait", s.MaxConnWait, 0, maxConnWait),
		maxItems(p+".backends", len(s.Backends), maxBackends),
	); err != nil {
		return err
	}
	if err := validatePoolTLS(p, s); err != nil {
		return err
	}
	if hc := s.HealthCheck; hc != nil {
		if err := validateHealthCheck(p+".health_check", hc); err != nil {
			return err
		}
	}
	if o := s.Outlier; o != nil {
		if err := firstErr(
			intRange(p+".outlier.consecutive_5xx", o.Consecutive5xx, 0, maxOutlierCount),
			intRange(p+".outlier.consecutive_connect_errors", o.ConsecutiveConnectErrors, 0, maxOutlierCount),
			durRange(p+".outlier.base_ejection", o.BaseEjection, 0, maxBaseEjection),
			percent(p+".outlier.max_ejected_percent", o.MaxEjectedPercent),
		); err != nil {
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
		if err := maxItems(p+".discovery.ec2.tags", len(d.EC2.Tags), maxDiscoveryTags); err != nil {
			return err
		}
		for _, k := range sortedKeys(d.EC2.Tags) {
			if k == "" {
				return invalidf(p+".discovery.ec2.tags", "empty tag key")
			}
			if len(k) > maxTagKeyLen {
				return invalidf(p+".discovery.ec2.tags", "tag key %.32q... is longer than %d bytes", k, maxTagKeyLen)
			}
			if err := maxLen(p+".discovery.ec2.tags."+k, d.EC2.Tags[k], maxTagValueLen); err != nil {
				return err
			}
		}
		if d.EC2.Port < 1 || d.EC2.Port > 65535 {
			return invalidf(p+".discovery.ec2.port", "%d is not a port (1..65535)", d.EC2.Port)
		}
		if err := durRange(p+".discovery.ec2.refresh", d.EC2.Refresh, 0, maxDiscoveryRefresh); err != nil {
			return err
		}
	}
	return nil
}

func validateHealthCheck(p string, hc *HealthCheck) error {
	if msg := pathProblem(hc.Path); msg != "" {
		return invalidf(p+".path", "%s", msg)
	}
	if strings.ContainsFunc(hc.Path, unicode.IsSpace) {
		return invalidf(p+".path", "%q contains whitespace", hc.Path)
	}
	if hc.Expect != 0 && (hc.Expect < minStatus || hc.Expect > maxStatus) {
		return invalidf(p+".expect", "%d is out of range %d..%d", hc.Expect, minStatus, maxStatus)
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
	if hc.Interval != 0 {
		if err := durRange(p+".interval", hc.Interval, minCheckInterval, maxCheckInterval); err != nil {
			return err
		}
	}
	if err := durRange(p+".timeout", hc.Timeout, 0, maxCheckInterval); err != nil {
		return err
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
		if err := maxLen(p+".allocation_id", s.AllocationID, maxAllocationIDLen); err != nil {
			return err
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
	case ProviderAWSPrivateIP, ProviderAWSRoute:
		if err := validateVIPPrivate(p, s); err != nil {
			return err
		}
	case ProviderNone:
	case "":
		return invalidf(p+".provider", "required (aws-eip, aws-private-ip, aws-route, linux or none)")
	default:
		return invalidf(p+".provider", "%q is not aws-eip, aws-private-ip, aws-route, linux or none", s.Provider)
	}
	if err := onlyWithPrivate(p, s); err != nil {
		return err
	}
	if s.HomeNode != "" {
		if err := validateNodeID(p+".home_node", s.HomeNode); err != nil {
			return err
		}
	}
	if err := maxItems(p+".candidates", len(s.Candidates), maxCandidates); err != nil {
		return err
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
