package fsm

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Kind names a resource type as it appears in manifests and API paths.
type Kind string

// The kinds an operator manages through manifests and the /v1 CRUD endpoints.
const (
	KindListener Kind = "listener"
	KindRoute    Kind = "route"
	KindPool     Kind = "pool"
	KindVIP      Kind = "vip"
	KindRollout  Kind = "rollout"
)

// Kinds lists the manifest kinds in the order a manifest is applied and
// exported: referenced resources before the ones that reference them,
// except certificates, which came last (a manifest's references are
// checked once all of it is in place, so the order is for reading only;
// kind indexes in fuzz corpora stay what they were), and ACME issuers
// after them for the same reason.
var Kinds = []Kind{KindListener, KindPool, KindRoute, KindVIP, KindRollout, KindCertificate, KindACMEIssuer}

// Duration is a time.Duration that reads and writes as a Go duration string
// ("2s", "150ms") in JSON and YAML manifests. A bare number is taken as
// nanoseconds so that machine-written documents also round-trip.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON accepts "1.5s" style strings or integer nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("invalid duration %q (want e.g. \"2s\", \"150ms\")", s)
		}
		*d = Duration(v)
		return nil
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("invalid duration %s (want e.g. \"2s\", \"150ms\")", b)
	}
	*d = Duration(n)
	return nil
}

// Listener is a port every node binds at its --bind address.
type Listener struct {
	Name        string       `json:"name"`
	ModifyIndex uint64       `json:"modify_index"`
	Spec        ListenerSpec `json:"spec"`
}

// ListenerSpec is the operator-supplied part of a listener.
type ListenerSpec struct {
	Port     int    `json:"port"`
	Protocol string `json:"protocol,omitempty"` // "http" (default) | "https"
	// TLS is required when Protocol is "https".
	TLS *ListenerTLS `json:"tls,omitempty"`
	// Edge marks a listener that faces untrusted clients: X-Forwarded-For is
	// overwritten with the client address instead of appended to.
	Edge   bool           `json:"edge,omitempty"`
	Limits ListenerLimits `json:"limits,omitzero"`
	// ProxyProtocol, when set, reads a PROXY protocol (v1 or v2) header
	// from connections of trusted sources (see ProxyProtocol).
	ProxyProtocol *ProxyProtocol `json:"proxy_protocol,omitempty"`
	// HTTPSRedirect (http listeners) answers every request with a
	// redirect to the same URL over https.
	HTTPSRedirect *HTTPSRedirect `json:"https_redirect,omitempty"`
}

// ListenerTLS says what an https listener serves: either the certificate
// files every node reads (CertFile, KeyFile) or certificates of the
// replicated state, picked by SNI (see listener_tls.go).
type ListenerTLS struct {
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	// Certificates name certificate objects; the handshake picks the one
	// whose names match the SNI exactly, else by the longest wildcard,
	// else Default (Certificates[0] when unset).
	Certificates []string `json:"certificates,omitempty"`
	Default      string   `json:"default,omitempty"`
	// Policy tightens the protocol versions and cipher suites.
	Policy *TLSPolicy `json:"policy,omitempty"`
	// HSTS adds Strict-Transport-Security to every response.
	HSTS *HSTS `json:"hsts,omitempty"`
}

// ListenerLimits bound what one client may cost a node. Zero means the
// data plane's safe default.
type ListenerLimits struct {
	MaxHeaderBytes int      `json:"max_header_bytes,omitempty"` // default 16 KiB
	MaxBodyBytes   int64    `json:"max_body_bytes,omitempty"`   // default 8 MiB; routes may lower or raise it
	ReadTimeout    Duration `json:"read_timeout,omitempty"`     // whole request head and body
	WriteTimeout   Duration `json:"write_timeout,omitempty"`
	IdleTimeout    Duration `json:"idle_timeout,omitempty"`
	MaxConns       int      `json:"max_conns,omitempty"`
}

// Route maps matching requests on a listener to an action.
type Route struct {
	Name        string    `json:"name"`
	ModifyIndex uint64    `json:"modify_index"`
	Spec        RouteSpec `json:"spec"`
}

// RouteSpec is the operator-supplied part of a route.
type RouteSpec struct {
	Listener string      `json:"listener"`
	Priority int         `json:"priority,omitempty"` // higher wins; beats host and path specificity
	Match    RouteMatch  `json:"match,omitzero"`
	Action   RouteAction `json:"action"`
	Rewrite  *Rewrite    `json:"rewrite,omitempty"`
	// Request headers set before forwarding / removed before forwarding.
	HeadersAdd    map[string]string `json:"headers_add,omitempty"`
	HeadersRemove []string          `json:"headers_remove,omitempty"`
	// Response headers set / removed before answering the client.
	ResponseHeadersAdd    map[string]string `json:"response_headers_add,omitempty"`
	ResponseHeadersRemove []string          `json:"response_headers_remove,omitempty"`
	Timeouts              RouteTimeouts     `json:"timeouts,omitzero"`
	Retries               *RetryPolicy      `json:"retries,omitempty"`
	MaxBody               int64             `json:"max_body,omitempty"` // bytes; 0 = listener limit
}

// RouteMatch: every non-empty part must match.
type RouteMatch struct {
	// Hosts are exact ("app.example.com") or a leading wildcard
	// ("*.example.com"); compared case-insensitively, port ignored. Empty: any host.
	Hosts   []string     `json:"hosts,omitempty"`
	Path    PathMatch    `json:"path,omitzero"`
	Methods []string     `json:"methods,omitempty"`
	Headers []ValueMatch `json:"headers,omitempty"`
	Query   []ValueMatch `json:"query,omitempty"`
}

// PathMatch sets at most one of its fields; none set means prefix "/".
// Matching is on the raw request path, exactly as it is forwarded.
type PathMatch struct {
	Prefix string `json:"prefix,omitempty"`
	Exact  string `json:"exact,omitempty"`
	Regex  string `json:"regex,omitempty"` // RE2, anchored at both ends
}

// ValueMatch matches a header or query parameter by name. With neither
// Value nor Regex set it matches when the name is present.
type ValueMatch struct {
	Name   string `json:"name"`
	Value  string `json:"value,omitempty"`
	Regex  string `json:"regex,omitempty"`
	Invert bool   `json:"invert,omitempty"` // match when the condition does not hold
}

// RouteAction sets exactly one of Split, Redirect, Respond.
type RouteAction struct {
	Split []WeightedPool `json:"split,omitempty"`
	// Sticky keeps one user on one leg of Split: the leg is chosen by a
	// hash of the header or cookie instead of at random, and a growing leg
	// only takes users from the legs before it.
	Sticky   *Sticky   `json:"sticky,omitempty"`
	Redirect *Redirect `json:"redirect,omitempty"`
	Respond  *Respond  `json:"respond,omitempty"`
}

// WeightedPool is one leg of a traffic split; weights are relative (0..10000).
type WeightedPool struct {
	Pool   string `json:"pool"`
	Weight int    `json:"weight"`
}

// Redirect answers with a redirect; empty fields keep the request's value.
type Redirect struct {
	Scheme string `json:"scheme,omitempty"`
	Host   string `json:"host,omitempty"`
	Port   int    `json:"port,omitempty"`
	Path   string `json:"path,omitempty"`
	Code   int    `json:"code,omitempty"` // 301, 302 (default), 303, 307, 308
}

// Respond answers directly with a fixed response.
type Respond struct {
	Status  int               `json:"status"`
	Body    string            `json:"body,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
}

// Rewrite changes the forwarded path: the matched PathMatch.Prefix is
// replaced by PathPrefix.
type Rewrite struct {
	PathPrefix string `json:"path_prefix,omitempty"`
	Host       string `json:"host,omitempty"` // replaces the Host sent to the backend
}

// RouteTimeouts bound the upstream exchange. Zero means the data plane default.
type RouteTimeouts struct {
	Connect Duration `json:"connect,omitempty"`
	Request Duration `json:"request,omitempty"` // response head must arrive within this (per try)
	Idle    Duration `json:"idle,omitempty"`    // for streamed bodies and tunnels
}

// RetryPolicy retries on a different backend within a budget.
type RetryPolicy struct {
	Attempts int `json:"attempts"` // extra tries after the first, 0..5
	// On lists retriable conditions: "connect-failure" (always safe),
	// "reset", "timeout", or status codes such as "503". Status, reset and
	// timeout retries apply only to idempotent methods.
	On []string `json:"on,omitempty"`
	// BudgetPercent caps retries at this share of the pool's active requests (default 20).
	BudgetPercent int `json:"budget_percent,omitempty"`
}

// Pool is a set of backends with a balancing and health policy.
type Pool struct {
	Name        string   `json:"name"`
	ModifyIndex uint64   `json:"modify_index"`
	Spec        PoolSpec `json:"spec"`
}

// Balancer names.
const (
	BalancerRoundRobin   = "round_robin"
	BalancerLeastRequest = "least_request"
	BalancerRandom       = "random"
	BalancerHash         = "hash"
)

// PoolSpec is the operator-supplied part of a pool.
type PoolSpec struct {
	Balancer string      `json:"balancer,omitempty"` // default round_robin
	Hash     *HashPolicy `json:"hash,omitempty"`     // for balancer "hash"
	// ZoneAware prefers backends in the proxying node's zone while at least
	// ZoneMinHealthyPercent (default 70) of them are healthy.
	ZoneAware             bool         `json:"zone_aware,omitempty"`
	ZoneMinHealthyPercent int          `json:"zone_min_healthy_percent,omitempty"`
	HealthCheck           *HealthCheck `json:"health_check,omitempty"`
	Outlier               *Outlier     `json:"outlier,omitempty"`
	// PanicThreshold: below this share (percent) of healthy backends, all are used.
	PanicThreshold int `json:"panic_threshold,omitempty"`
	// MaxConnsPerBackend limits connections a node opens to each backend
	// (default 512), open Upgrade tunnels included; requests and Upgrades
	// beyond it wait up to MaxConnWait (default 1s).
	MaxConnsPerBackend int        `json:"max_conns_per_backend,omitempty"`
	MaxConnWait        Duration   `json:"max_conn_wait,omitempty"`
	Backends           []Backend  `json:"backends,omitempty"`
	Discovery          *Discovery `json:"discovery,omitempty"`
	// TLS, when set, makes connections to the pool's backends (requests
	// and health checks) TLS (see PoolTLS).
	TLS *PoolTLS `json:"tls,omitempty"`
	// SendProxyProtocol ("v1" or "v2") starts every backend connection
	// with a PROXY protocol header carrying the client's address.
	SendProxyProtocol string `json:"send_proxy_protocol,omitempty"`
}

// HashPolicy picks the key for consistent hashing; exactly one is set.
type HashPolicy struct {
	Header   string `json:"header,omitempty"`
	Cookie   string `json:"cookie,omitempty"`
	ClientIP bool   `json:"client_ip,omitempty"`
}

// Backend is one upstream server. Addr is host:port (an IP or a DNS name).
type Backend struct {
	Addr   string `json:"addr"`
	Weight int    `json:"weight,omitempty"` // default 1, 0..1000 (0 = no new traffic)
	Zone   string `json:"zone,omitempty"`
	Drain  bool   `json:"drain,omitempty"` // no new requests; in-flight ones finish
	Lease  uint64 `json:"lease,omitempty"` // set for self-registered backends
	// Source names what manages the backend: "" (the operator) or "ec2"
	// (EC2 tag discovery), so any leader can tell discovery's backends apart.
	Source string `json:"source,omitempty"`
}

// HealthCheck configures node-local active HTTP checks.
type HealthCheck struct {
	Path     string   `json:"path"`
	Expect   int      `json:"expect,omitempty"` // status; 0 means any 2xx/3xx
	Host     string   `json:"host,omitempty"`
	Interval Duration `json:"interval,omitempty"` // default 2s
	Timeout  Duration `json:"timeout,omitempty"`  // default 1s
	Rise     int      `json:"rise,omitempty"`     // default 2
	Fall     int      `json:"fall,omitempty"`     // default 3
}

// Outlier configures node-local passive ejection.
type Outlier struct {
	Consecutive5xx           int      `json:"consecutive_5xx,omitempty"`
	ConsecutiveConnectErrors int      `json:"consecutive_connect_errors,omitempty"`
	BaseEjection             Duration `json:"base_ejection,omitempty"`       // default 30s, grows with each ejection
	MaxEjectedPercent        int      `json:"max_ejected_percent,omitempty"` // default 50
}

// Discovery fills a pool from a cloud listing.
type Discovery struct {
	EC2 *EC2Discovery `json:"ec2,omitempty"`
}

// EC2Discovery lists running instances by tag.
type EC2Discovery struct {
	Tags    map[string]string `json:"tags"`
	Port    int               `json:"port"`
	Refresh Duration          `json:"refresh,omitempty"`
}

// VIP is an address clients reach the cluster on.
type VIP struct {
	Name        string  `json:"name"`
	ModifyIndex uint64  `json:"modify_index"`
	Spec        VIPSpec `json:"spec"`
}

// BackendSourceEC2 marks a backend EC2 tag discovery added and manages.
const BackendSourceEC2 = "ec2"

// VIP providers.
const (
	ProviderAWSEIP = "aws-eip"
	ProviderLinux  = "linux"
	ProviderNone   = "none"
	// ProviderAWSPrivateIP moves a secondary private IP between the
	// holders' network interfaces (AssignPrivateIpAddresses); the
	// interfaces must share a subnet, so one availability zone.
	ProviderAWSPrivateIP = "aws-private-ip"
	// ProviderAWSRoute points a route-table entry for a CIDR at the
	// holder's network interface (ReplaceRoute), across zones.
	ProviderAWSRoute = "aws-route"
)

// VIPSpec is the operator-supplied part of a VIP.
type VIPSpec struct {
	Provider     string `json:"provider"`
	AllocationID string `json:"allocation_id,omitempty"` // aws-eip
	Address      string `json:"address,omitempty"`       // linux: CIDR, e.g. 10.0.0.100/24
	Interface    string `json:"interface,omitempty"`     // linux
	PrivateIP    string `json:"private_ip,omitempty"`    // aws-private-ip: the secondary IPv4 address that moves
	// RouteTableIDs and CIDR (aws-route): every table gets a route for
	// CIDR pointing at the holder's network interface.
	RouteTableIDs []string `json:"route_table_ids,omitempty"`
	CIDR          string   `json:"cidr,omitempty"`
	// ENIs (aws-private-ip, aws-route) names, by node id, the network
	// interface to use instead of the node's own (its --aws-eni).
	ENIs       map[string]string `json:"enis,omitempty"`
	HomeNode   string            `json:"home_node"`
	Candidates []string          `json:"candidates,omitempty"` // empty: every member
	// Failback moves the VIP home once the home node is healthy again (default true).
	Failback *bool `json:"failback,omitempty"`
}

// Assignment records which node holds a VIP. Token is the Raft index of the
// entry that made the assignment; it fences stale actors.
type Assignment struct {
	VIP    string    `json:"vip"`
	Holder string    `json:"holder"`
	Token  uint64    `json:"token"`
	Since  time.Time `json:"since"`
	Reason string    `json:"reason,omitempty"`
	// Settled: the hand-over to Holder is complete; no other node can
	// still have the address (linux VIPs: every other node let go).
	Settled bool `json:"settled,omitempty"`
}

// Node is a cluster member as the cluster knows it.
type Node struct {
	ID        string `json:"id"`
	Zone      string `json:"zone,omitempty"`
	RaftAddr  string `json:"raft_addr"`
	AdminAddr string `json:"admin_addr,omitempty"`
	DataAddr  string `json:"data_addr,omitempty"`
	// The node's AWS identity, which Elastic IPs are associated with.
	InstanceID string `json:"instance_id,omitempty"`
	ENI        string `json:"eni,omitempty"`
	PrivateIP  string `json:"private_ip,omitempty"`
	// Role is RoleVoter or RoleProxy (a Raft non-voter: it receives the
	// log and serves, but never counts toward quorum). "" is a voter: the
	// records written before roles existed.
	Role        string `json:"role,omitempty"`
	ModifyIndex uint64 `json:"modify_index"`
}

// Node roles.
const (
	RoleVoter = "voter"
	RoleProxy = "proxy"
)

// IsProxy reports whether the node is a non-voting proxy member.
func (n *Node) IsProxy() bool { return n.Role == RoleProxy }

// ZoneState is the "evacuate AZ" lever.
type ZoneState struct {
	Zone        string `json:"zone"`
	Evacuated   bool   `json:"evacuated"`
	ModifyIndex uint64 `json:"modify_index"`
}

// Config is the whole replicated document at one Raft index. A *Config
// handed out by the FSM is immutable: readers never lock and must never
// modify it; every command produces a new Config.
type Config struct {
	Index       uint64                 `json:"index"`
	Listeners   map[string]*Listener   `json:"listeners"`
	Routes      map[string]*Route      `json:"routes"`
	Pools       map[string]*Pool       `json:"pools"`
	VIPs        map[string]*VIP        `json:"vips"`
	Assignments map[string]*Assignment `json:"assignments"`
	Nodes       map[string]*Node       `json:"nodes"`
	Zones       map[string]*ZoneState  `json:"zones"`
	// Leases are keyed by their ID. Every backend whose Lease is set refers
	// to one of them.
	Leases map[uint64]*Lease `json:"leases"`
	// Rollouts are the progressive canary rollouts; RolloutStatus holds
	// each one's progress, written only by rollout commands.
	Rollouts      map[string]*Rollout       `json:"rollouts"`
	RolloutStatus map[string]*RolloutStatus `json:"rollout_status"`
	// ACMEIssuers are the ACME CAs; the other ACME maps are written only
	// by the leader's fenced ACME commands (see acme.go): accounts by
	// issuer, order state by certificate name, pending challenges by
	// token. Issued material goes to CertificateStatus.
	ACMEIssuers    map[string]*ACMEIssuer    `json:"acme_issuers,omitempty"`
	ACMEAccounts   map[string]*ACMEAccount   `json:"acme_accounts,omitempty"`
	ACMEStatus     map[string]*ACMEStatus    `json:"acme_status,omitempty"`
	ACMEChallenges map[string]*ACMEChallenge `json:"acme_challenges,omitempty"`
	// Certificates are TLS certificates with sealed keys; CertificateStatus
	// holds the issued material of ACME certificates, written only by
	// CertificateIssue commands.
	Certificates      map[string]*Certificate       `json:"certificates"`
	CertificateStatus map[string]*CertificateStatus `json:"certificate_status"`
	// TicketKeys are the cluster's sealed TLS session-ticket keys (nil
	// until the leader first rotates them).
	TicketKeys *TicketKeys `json:"ticket_keys,omitempty"`

	// routesFrom is how the command that made this document changed
	// Routes (nil when not recorded). It is not part of the document:
	// never encoded, never compared (see ChangedRoutes).
	routesFrom *routesDelta
}

// routesDelta records that a Routes map was made from the map base by
// writing (setting or deleting) only the keys in names.
type routesDelta struct {
	base  map[string]*Route
	names []string
}

// Lease is a TTL lease that self-registered backends are attached to. Its
// ID is the Raft index of the entry that granted it. When the lease ends
// (revoked, or expired by the leader because no keepalive came within
// TTL), its backends leave every pool. Deadlines live only in the leader's
// memory: on a leader change every lease gets a fresh full TTL.
type Lease struct {
	ID        uint64    `json:"id"`
	TTL       Duration  `json:"ttl"`
	GrantedAt time.Time `json:"granted_at"`
	// Draining: the lease was revoked with draining; its backends carry
	// drain: true and a later entry removes them and the lease.
	Draining   bool      `json:"draining,omitempty"`
	DrainSince time.Time `json:"drain_since,omitzero"`
}

// Object is the generic form of a managed resource: a manifest document
// (`{kind, name, spec}`) and the answer of GET /v1/{kind}s/{name}.
type Object struct {
	Kind        Kind            `json:"kind"`
	Name        string          `json:"name"`
	Spec        json.RawMessage `json:"spec"`
	ModifyIndex uint64          `json:"modify_index,omitempty"`
}
