package fsm

import "time"

// Bounds on every number, list and string an operator can set in a spec.
// They exist so that a value that passed validation can never make a node
// allocate, loop or overflow its way down (a max_header_bytes of 2^62 once
// made every node panic on its first connection). Each is generous next to
// what an HAProxy or Envoy operator sets; a value beyond one is refused
// with the field's path. Zero keeps meaning "the data plane's default"
// wherever it did before.
const (
	// maxNameLen bounds object names (DNS-label-like, as in Kubernetes).
	maxNameLen = 63
	// maxNodeIDLen bounds node ids (--node-id) and VIP home_node/candidates.
	maxNodeIDLen = 128
	// maxZoneLen bounds zone names, like a DNS label.
	maxZoneLen = 63

	// maxHeaderBytes bounds listener limits.max_header_bytes. The data
	// plane allocates a read buffer of this size per connection; 1 MiB is
	// 64 times the default (16 KiB) and above Envoy's 96 KiB header cap.
	maxHeaderBytes = 1 << 20
	// maxBodyBytes bounds listener limits.max_body_bytes and route
	// max_body: 16 GiB, room for disk images and backups; bodies above
	// 64 KiB are streamed, never held in memory.
	maxBodyBytes = 16 << 30
	// maxConns bounds listener limits.max_conns (default 10000): a million
	// connections is past what one node's file descriptors allow.
	maxConns = 1_000_000
	// maxListenerTimeout bounds limits.read_timeout, write_timeout and
	// idle_timeout: a day covers the slowest upload or download; beyond
	// it a deadline is a leak, and near 2^63 ns adding it to now overflows.
	maxListenerTimeout = Duration(24 * time.Hour)

	// maxPriority bounds a route's priority in both directions.
	maxPriority = 1_000_000
	// maxHosts bounds match.hosts entries per route.
	maxHosts = 256
	// maxMethods bounds match.methods entries per route.
	maxMethods = 32
	// maxValueMatches bounds match.headers and match.query entries each.
	maxValueMatches = 32
	// maxSplit bounds action.split legs per route.
	maxSplit = 100
	// maxSplitWeight bounds a split leg's weight (relative, 0..10000).
	maxSplitWeight = 10000
	// maxRetries bounds retries.attempts: extra tries after the first.
	maxRetries = 5
	// maxRetryOn bounds retries.on entries (three conditions plus statuses).
	maxRetryOn = 32
	// maxConnectTimeout bounds timeouts.connect: HAProxy and Envoy
	// operators set seconds; five minutes is beyond any TCP handshake.
	maxConnectTimeout = Duration(5 * time.Minute)
	// maxRouteTimeout bounds timeouts.request and timeouts.idle (long
	// polling, WebSocket tunnels): a day.
	maxRouteTimeout = Duration(24 * time.Hour)
	// maxHeaderOps bounds each of headers_add, headers_remove,
	// response_headers_add, response_headers_remove and respond.headers.
	maxHeaderOps = 64
	// maxHeaderNameLen bounds header (and cookie and query parameter)
	// names wherever a spec names one.
	maxHeaderNameLen = 256
	// maxHeaderValueLen bounds header values a route sets or matches.
	maxHeaderValueLen = 8 << 10
	// maxPathLen bounds every path in a spec (match prefix/exact,
	// rewrite.path_prefix, redirect.path, health_check.path).
	maxPathLen = 4096
	// maxRespondBody bounds action.respond.body: it is replicated in every
	// log entry and snapshot, so it is meant for short fixed answers.
	maxRespondBody = 64 << 10
	// maxFileLen bounds tls.cert_file and tls.key_file (PATH_MAX).
	maxFileLen = 4096
	// maxStatus is the largest HTTP status a spec may name (expect, respond).
	maxStatus = 599
	// minStatus is the smallest HTTP status a spec may name.
	minStatus = 100

	// maxBackends bounds backends per pool, operator-listed and
	// self-registered together.
	maxBackends = 10000
	// maxBackendWt bounds a backend's weight (default 1, 0 = no new traffic).
	maxBackendWt = 1000
	// maxConnsPerBackend bounds max_conns_per_backend (default 512).
	maxConnsPerBackend = 100_000
	// maxConnWait bounds max_conn_wait (default 1s), how long a request
	// waits for a connection to a busy backend.
	maxConnWait = Duration(5 * time.Minute)
	// maxHealthRiseFl bounds health_check.rise and fall.
	maxHealthRiseFl = 100
	// minCheckInterval and maxCheckInterval bound health_check.interval:
	// every node checks every backend of the pool that often, so below
	// 100 ms checks cost more than the traffic; an hour is past useful.
	// health_check.timeout is at most the interval.
	minCheckInterval = Duration(100 * time.Millisecond)
	maxCheckInterval = Duration(time.Hour)
	// maxOutlierCount bounds outlier.consecutive_5xx and
	// consecutive_connect_errors.
	maxOutlierCount = 10000
	// maxBaseEjection bounds outlier.base_ejection (default 30s); repeated
	// ejections stretch it tenfold at most.
	maxBaseEjection = Duration(time.Hour)
	// maxDiscoveryTags bounds discovery.ec2.tags (AWS allows 50 per instance);
	// maxTagKeyLen and maxTagValueLen are AWS's own tag limits.
	maxDiscoveryTags = 50
	maxTagKeyLen     = 128
	maxTagValueLen   = 256
	// maxDiscoveryRefresh bounds discovery.ec2.refresh (default 30s; the
	// leader never lists more often than every 5s).
	maxDiscoveryRefresh = Duration(24 * time.Hour)

	// maxCandidates bounds a VIP's candidates.
	maxCandidates = 256
	// maxAllocationIDLen bounds a VIP's allocation_id (eipalloc- and 17 hex).
	maxAllocationIDLen = 64
	// maxRouteTables bounds an aws-route VIP's route_table_ids: one per
	// subnet's table of a VPC is rarely more than a few dozen, and every
	// move writes each of them.
	maxRouteTables = 32
	// maxENIs bounds a VIP's enis (one per node that may hold it).
	maxENIs = maxCandidates

	// maxNodeAddrLen bounds a node record's addresses.
	maxNodeAddrLen = 256

	// maxRolloutSteps bounds a rollout's steps: they increase strictly
	// within 1..100.
	maxRolloutSteps = 100
	// minRolloutInterval and maxRolloutInterval bound a rollout's interval:
	// below a second a window holds too few requests to judge; a day is a
	// slow rollout already.
	minRolloutInterval = Duration(time.Second)
	maxRolloutInterval = Duration(24 * time.Hour)
	// maxRolloutRequests bounds min_requests.
	maxRolloutRequests = 1_000_000_000
	// maxRolloutP99 bounds max_p99 (an hour is past any request timeout
	// a canary would be judged by).
	maxRolloutP99 = Duration(time.Hour)
	// maxRolloutP99Ratio bounds max_p99_ratio (canary p99 / stable p99).
	maxRolloutP99Ratio = 1000
	// maxRolloutReason bounds the reason a leader's decision carries.
	maxRolloutReason = 1024
)

// intRange refuses v outside lo..hi, naming field.
func intRange[T ~int | ~int64](field string, v, lo, hi T) error {
	switch {
	case v > hi:
		return invalidf(field, "at most %d, got %d", hi, v)
	case v < lo && lo == 0:
		return invalidf(field, "must not be negative, got %d", v)
	case v < lo:
		return invalidf(field, "at least %d, got %d", lo, v)
	}
	return nil
}

// durRange refuses d outside lo..hi, naming field.
func durRange(field string, d, lo, hi Duration) error {
	switch {
	case d > hi:
		return invalidf(field, "at most %v, got %v", hi.D(), d.D())
	case d < 0:
		return invalidf(field, "must not be negative, got %v", d.D())
	case d < lo:
		return invalidf(field, "at least %v, got %v", lo.D(), d.D())
	}
	return nil
}

// maxLen refuses a string longer than n bytes, naming field.
func maxLen(field, s string, n int) error {
	if len(s) > n {
		return invalidf(field, "at most %d bytes long, got %d", n, len(s))
	}
	return nil
}

// maxItems refuses a list or map with more than n entries, naming field.
func maxItems(field string, got, n int) error {
	if got > n {
		return invalidf(field, "at most %d entries, got %d", n, got)
	}
	return nil
}

// firstErr returns the first non-nil error, so a run of independent
// checks reads as a list.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
