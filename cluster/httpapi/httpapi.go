package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/conf"
	"github.com/rafterlb/rafter/secrets"
)

// Response headers carried by every answer of the API, errors included.
const (
	HeaderIndex  = "X-Rafter-Index"
	HeaderLeader = "X-Rafter-Leader"
	// HeaderForwarded marks a request a follower relayed to the leader; its
	// value is the relaying node's id. A request carrying it is never
	// forwarded again, so a leadership change cannot make requests loop.
	HeaderForwarded = "X-Rafter-Forwarded-By"
)

// DefaultMaxBodyBytes bounds request bodies when Config.MaxBodyBytes is 0.
const DefaultMaxBodyBytes = 8 << 20

// DefaultMaxSnapshotBytes bounds POST /v1/restore bodies when
// Config.MaxSnapshotBytes is 0. Snapshots are compressed (10,000 routes
// take about 150 KB), so this leaves room for far larger documents than
// a manifest body may be.
const DefaultMaxSnapshotBytes = 256 << 20

// Store is what the API needs from the Raft node (*cluster.Node implements it).
type Store interface {
	Apply(ctx context.Context, cmd *fsm.Command) (uint64, error)
	Config() *fsm.Config
	Changed() <-chan struct{}
	ConsistentConfig(ctx context.Context) (*fsm.Config, error)
	Leader() (id, adminAddr string)
	Status() cluster.Status
	PeerInfo() cluster.PeerInfo
	AddMember(ctx context.Context, info cluster.PeerInfo) error
	RemoveServer(ctx context.Context, id string) error
	Promote(ctx context.Context, ids []string) ([]string, error)
	Demote(ctx context.Context, ids []string) ([]string, error)
}

// Config configures the admin API handler.
type Config struct {
	Store  Store
	NodeID string
	// Bearer tokens. With none configured, authentication is off (the
	// caller logs that as a warning).
	ReadWriteTokens  []string
	ReadOnlyTokens   []string
	MaxBodyBytes     int64        // default DefaultMaxBodyBytes
	MaxSnapshotBytes int64        // POST /v1/restore bodies; default DefaultMaxSnapshotBytes
	ForwardClient    *http.Client // for forwarding to the leader (TLS configured by the caller); default: a plain client
	ForwardScheme    string       // "http" (default) | "https"
	Logger           *slog.Logger // default: discard
	// Extra handlers mounted as is (e.g. "/metrics", "/v1/health", "/ui/").
	// They require a valid token (read-only is enough), except "/metrics"
	// when MetricsNoAuth is set.
	Extra         map[string]http.Handler
	MetricsNoAuth bool
	// Leases serves the lease endpoints (*lease.Manager); without it they
	// answer 404.
	Leases Leases
	// Probe answers node probes (*probe.Tracker); without it they answer 404.
	Probe Prober
	// Rollouts takes the nodes' rollout reports (*rollout.Collector);
	// without it they answer 404.
	Rollouts RolloutReports
	// Timeouts of the http.Server NewServer builds; zero fields take
	// DefaultTimeouts. Handlers extend them for blocking reads and snapshots.
	Timeouts Timeouts
	// History serves GET /v1/history and the history in the event
	// stream; without it /v1/history answers 404.
	History *History
	// EventInterval is how often GET /v1/events gathers the cluster's
	// state; default DefaultEventInterval.
	EventInterval time.Duration
	// UI, when set, serves the dashboard at /ui/ without a token: it is
	// static files, and the page asks for a token before it reads the API.
	UI http.Handler
	// Secrets seals the private keys of certificate writes before they
	// are proposed; without it such writes answer 412 naming
	// --secrets-key-file.
	Secrets *secrets.Keyring
	// Now is the clock certificate validity is checked against; default
	// time.Now.
	Now func() time.Time
}

// DefaultConfig returns a Config with every optional field at its default;
// the caller sets Store, NodeID and tokens.
func DefaultConfig() Config {
	return Config{
		MaxBodyBytes:     DefaultMaxBodyBytes,
		MaxSnapshotBytes: DefaultMaxSnapshotBytes,
		ForwardScheme:    "http",
		Timeouts:         DefaultTimeouts(),
	}
}

// Validate reports the first problem with c, naming the field.
func (c *Config) Validate() error {
	if c.Store == nil {
		return errors.New("httpapi config: store: required")
	}
	if c.MaxBodyBytes < 0 {
		return fmt.Errorf("httpapi config: max_body_bytes: must not be negative, got %d", c.MaxBodyBytes)
	}
	if c.EventInterval < 0 {
		return fmt.Errorf("httpapi config: event_interval: must not be negative, got %v", c.EventInterval)
	}
	if c.MaxSnapshotBytes < 0 {
		return fmt.Errorf("httpapi config: max_snapshot_bytes: must not be negative, got %d", c.MaxSnapshotBytes)
	}
	switch c.ForwardScheme {
	case "", "http", "https":
	default:
		return fmt.Errorf("httpapi config: forward_scheme: must be http or https, got %q", c.ForwardScheme)
	}
	rw := make(map[string]bool, len(c.ReadWriteTokens))
	for i, t := range c.ReadWriteTokens {
		if t == "" {
			return fmt.Errorf("httpapi config: read_write_tokens[%d]: empty token", i)
		}
		rw[t] = true
	}
	for i, t := range c.ReadOnlyTokens {
		if t == "" {
			return fmt.Errorf("httpapi config: read_only_tokens[%d]: empty token", i)
		}
		if rw[t] {
			return fmt.Errorf("httpapi config: read_only_tokens[%d]: also listed as a read-write token", i)
		}
	}
	for p, h := range c.Extra {
		if h == nil {
			return fmt.Errorf("httpapi config: extra[%q]: nil handler", p)
		}
		if !strings.Contains(p, "/") {
			return fmt.Errorf("httpapi config: extra[%q]: not a path pattern", p)
		}
	}
	return nil
}

// access is what a route requires of the caller's token.
type access int

const (
	accessRead access = iota
	accessWrite
	// accessPublic: no token needed (only /metrics with MetricsNoAuth).
	accessPublic
)

// handlerFunc is an API handler: what it returns goes through errorStatus.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// route is one registered API endpoint; the list of them is the single
// source the mux is built from and the OpenAPI test compares against.
type route struct {
	method string
	path   string
	access access
	h      handlerFunc
}

type server struct {
	cfg    Config
	store  Store
	log    *slog.Logger
	auth   *authenticator
	client *http.Client
	mux    *http.ServeMux
	routes []route

	// stopping is closed when the http.Server shuts down, so that event
	// streams end instead of holding Shutdown until its deadline.
	stopping chan struct{}
	stopOnce sync.Once
}

// closeStreams ends every event stream; NewServer registers it with the
// server's Shutdown.
func (s *server) closeStreams() { s.stopOnce.Do(func() { close(s.stopping) }) }

// New returns the admin API handler.
func New(cfg Config) (http.Handler, error) {
	s, err := newServer(cfg)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func newServer(cfg Config) (*server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxSnapshotBytes == 0 {
		cfg.MaxSnapshotBytes = DefaultMaxSnapshotBytes
	}
	if cfg.ForwardScheme == "" {
		cfg.ForwardScheme = "http"
	}
	conf.Logger(&cfg.Logger)
	conf.Positive(&cfg.EventInterval, DefaultEventInterval)
	cfg.Timeouts = cfg.Timeouts.withDefaults()
	client := cfg.ForwardClient
	if client == nil {
		client = &http.Client{
			Transport: http.DefaultTransport.(*http.Transport).Clone(),
			// The leader's answer is relayed as is, redirects included.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	s := &server{
		cfg:      cfg,
		store:    cfg.Store,
		log:      cfg.Logger,
		auth:     newAuthenticator(cfg.ReadWriteTokens, cfg.ReadOnlyTokens),
		client:   client,
		mux:      http.NewServeMux(),
		stopping: make(chan struct{}),
	}
	s.routes = s.apiRoutes()
	for _, rt := range s.routes {
		s.mux.Handle(rt.method+" "+rt.path, s.wrap(rt.access, rt.h))
	}
	for pattern, h := range cfg.Extra {
		acc := accessRead
		if cfg.MetricsNoAuth && patternPath(pattern) == "/metrics" {
			acc = accessPublic
		}
		if err := s.handleExtra(pattern, s.wrapHandler(acc, h)); err != nil {
			return nil, err
		}
	}
	if cfg.UI != nil {
		s.mux.Handle("GET /ui/", http.StripPrefix("/ui", cfg.UI))
		s.mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
	}
	// Anything else answers a JSON 404 or 405 (with headers) instead of
	// the mux's plain-text one.
	s.mux.Handle("/", s.wrap(accessRead, s.handleUnmatched))
	return s, nil
}

// handleExtra registers a caller's pattern; the mux panics on a malformed
// or conflicting one, which is a configuration error here.
func (s *server) handleExtra(pattern string, h http.Handler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("httpapi config: extra[%q]: %v", pattern, p)
		}
	}()
	s.mux.Handle(pattern, h)
	return nil
}

// patternPath strips the optional method and host from a mux pattern.
func patternPath(pattern string) string {
	if i := strings.IndexByte(pattern, ' '); i >= 0 {
		pattern = strings.TrimSpace(pattern[i+1:])
	}
	if i := strings.IndexByte(pattern, '/'); i > 0 {
		pattern = pattern[i:]
	}
	return pattern
}

func (s *server) apiRoutes() []route {
	rs := []route{
		{"GET", "/v1/status", accessRead, s.handleStatus},
		{"GET", "/v1/internal/peer", accessRead, s.handlePeer},
		{"POST", "/v1/nodes", accessWrite, s.handleNodeJoin},
		{"DELETE", "/v1/nodes/{id}", accessWrite, s.handleNodeRemove},
		{"POST", "/v1/nodes/{id}/promote", accessWrite, s.handleSuffrage(true, false)},
		{"POST", "/v1/nodes/{id}/demote", accessWrite, s.handleSuffrage(false, false)},
		{"POST", "/v1/nodes/promote", accessWrite, s.handleSuffrage(true, true)},
		{"POST", "/v1/nodes/demote", accessWrite, s.handleSuffrage(false, true)},
		// handleApply asks for write access itself unless the request is a dry run.
		{"POST", "/v1/apply", accessRead, s.handleApply},
		{"GET", "/v1/config", accessRead, s.handleExport},
		{"GET", "/v1/snapshot", accessRead, s.handleSnapshot},
		{"POST", "/v1/restore", accessWrite, s.handleRestore},
		{"GET", "/v1/openapi.json", accessRead, s.handleOpenAPI},
		{"GET", "/v1/zones", accessRead, s.handleZoneList},
		{"GET", "/v1/zones/{zone}", accessRead, s.handleZoneGet},
		{"POST", "/v1/zones/{zone}/evacuate", accessWrite, s.handleZoneEvacuate(true)},
		{"DELETE", "/v1/zones/{zone}/evacuate", accessWrite, s.handleZoneEvacuate(false)},
	}
	rs = append(rs, s.leaseRoutes()...)
	rs = append(rs, s.fanOutRoutes()...)
	rs = append(rs, s.vipRoutes()...)
	rs = append(rs, s.rolloutRoutes()...)
	for _, k := range fsm.Kinds {
		base := "/v1/" + kindPath(k)
		rs = append(rs,
			route{"GET", base, accessRead, s.handleList(k)},
			route{"GET", base + "/{name}", accessRead, s.handleGet(k)},
			route{"PUT", base + "/{name}", accessWrite, s.handlePut(k)},
			route{"DELETE", base + "/{name}", accessWrite, s.handleDelete(k)},
		)
	}
	return rs
}

// kindPath is the plural used in API paths ("routes" for fsm.KindRoute).
func kindPath(k fsm.Kind) string { return string(k) + "s" }

// ServeHTTP sets the index and leader headers before anything else can
// answer, so that every response carries them.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.setMeta(w, 0)
	s.mux.ServeHTTP(w, r)
}

// setMeta (re)writes X-Rafter-Index and X-Rafter-Leader. atLeast is an
// index the answer is known to reflect (a write's index, a consistent
// read's), which the local state may not show yet on a follower.
func (s *server) setMeta(w http.ResponseWriter, atLeast uint64) {
	idx := uint64(0)
	if c := s.store.Config(); c != nil {
		idx = c.Index
	}
	idx = max(idx, atLeast)
	id, _ := s.store.Leader()
	h := w.Header()
	h.Set(HeaderIndex, strconv.FormatUint(idx, 10))
	h.Set(HeaderLeader, id)
}

// wrap authorizes the request and sends a returned error through the one
// error mapping.
func (s *server) wrap(acc access, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.authorize(r, acc); err != nil {
			s.writeError(w, r, err)
			return
		}
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

func (s *server) wrapHandler(acc access, h http.Handler) http.Handler {
	return s.wrap(acc, func(w http.ResponseWriter, r *http.Request) error {
		h.ServeHTTP(w, r)
		return nil
	})
}

// probeMethods are the methods tried to tell a wrong method (405) from an
// unknown path (404).
var probeMethods = [...]string{http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete}

func (s *server) handleUnmatched(w http.ResponseWriter, r *http.Request) error {
	var allow []string
	for _, m := range probeMethods {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "" && pattern != "/" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		return fmt.Errorf("%s %s: %w", r.Method, r.URL.Path, errMethodNotAllowed)
	}
	// /v1/{kind}/... with a kind that does not exist gets a message that says so.
	parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/v1/"), "/", 2)
	if strings.HasPrefix(r.URL.Path, "/v1/") && parts[0] != "" {
		if _, err := fsm.ParseKind(parts[0]); err != nil {
			return fmt.Errorf("unknown kind %q (want one of listeners, routes, pools, vips, rollouts): %w", parts[0], errNoRoute)
		}
	}
	return fmt.Errorf("no endpoint %s %s: %w", r.Method, r.URL.Path, errNoRoute)
}
