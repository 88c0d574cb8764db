package dataplane

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/secrets"
)

// Defaults applied where the configuration leaves a limit at zero.
const (
	DefaultMaxHeaderBytes = 16 << 10
	DefaultMaxBodyBytes   = 8 << 20
	DefaultReadTimeout    = 60 * time.Second
	DefaultWriteTimeout   = 60 * time.Second
	DefaultIdleTimeout    = 90 * time.Second
	DefaultMaxConns       = 10000
	DefaultConnectTimeout = 5 * time.Second
	DefaultRequestTimeout = 60 * time.Second
	// DefaultTunnelIdleTimeout ends an Upgrade tunnel silent both ways
	// this long when its route sets no idle timeout: a tunnel holds its
	// place under the listener's max_conns, so silent ones must not hold
	// it for good (Envoy's default connection idle timeout is the same).
	DefaultTunnelIdleTimeout  = time.Hour
	DefaultMaxConnsPerBackend = 512
	DefaultMaxConnWait        = time.Second
	DefaultZoneMinHealthy     = 70
	DefaultRetryBudgetPercent = 20
	DefaultDrainTimeout       = 30 * time.Second
	// MaxListenShards bounds Options.ListenShards.
	MaxListenShards = 256
	// DefaultUpstreamIdleTimeout closes a pooled backend connection that
	// has carried no request for that long.
	DefaultUpstreamIdleTimeout = 60 * time.Second
	// minRetryConcurrency lets a lightly loaded pool retry at all even
	// when BudgetPercent of its active requests rounds down to zero.
	minRetryConcurrency = 3
	// bufferBodyLimit: request bodies up to this size with a known length
	// are read into memory so that they can be replayed on a retry; larger
	// or chunked bodies are streamed.
	bufferBodyLimit = 64 << 10
)

// Options configure a Dataplane.
type Options struct {
	// Source supplies the replicated configuration. Required.
	Source ConfigSource
	// BindIP is the address every listener binds (the node's --bind).
	BindIP string
	// Zone is this node's availability zone (for zone-aware pools).
	Zone string
	// NodeID is this node's id. When set, and BindIP is a specific
	// address, every listener also binds the address of each linux VIP
	// this node may hold (IP_FREEBIND, so before the address arrives), and
	// a VIP serves the moment its holder adds it.
	NodeID string
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
	// AccessLog receives one JSON-able record per request; nil turns the
	// access log off at no per-request cost.
	AccessLog *slog.Logger
	// Spans, when set, receives the span of every sampled request (OTLP
	// export); a valid client traceparent then reaches the backend with
	// the proxy hop's span id as its parent. Nil exports nothing and
	// passes a valid traceparent on unchanged.
	Spans SpanSink
	// Registerer receives the data plane's metrics; nil keeps them
	// unregistered (they are still counted).
	Registerer prometheus.Registerer
	// Health is consulted by the balancers; nil means AllHealthy.
	Health HealthView
	// DrainTimeout bounds how long Run waits for in-flight requests after
	// its context is done.
	DrainTimeout time.Duration
	// Listen opens socket number shard (0 to ListenShards-1) of a
	// listener; nil means ListenShared. Tests pass in-memory listeners
	// here. A listener whose configured port is 0 binds an ephemeral port
	// with shard 0, and its other shards bind the port shard 0 got;
	// ListenerAddr reports it.
	Listen func(name string, shard int, addr string) (net.Listener, error)
	// ListenVIP opens the sockets of a listener on a linux VIP address;
	// nil means ListenFreebind. The agent passes sockets an upgrade hands
	// over through Listen and ListenVIP.
	ListenVIP func(name string, shard int, addr string) (net.Listener, error)
	// ListenShards is how many sockets serve each listener address, each
	// with its own accept loop (SO_REUSEPORT: the kernel spreads new
	// connections over them). 0 means one per GOMAXPROCS on Linux and 1
	// elsewhere; at most MaxListenShards. Shards after the first that
	// cannot bind are left out: the listener serves on those it has.
	ListenShards int
	// Dial opens upstream connections (HTTP and Upgrade tunnels); nil
	// means a net.Dialer with the route's connect timeout.
	Dial func(addr string, timeout time.Duration) (net.Conn, error)
	// Secrets opens the sealed keys of certificates and the cluster's TLS
	// session-ticket keys; nil: listeners serve only certificate files.
	Secrets *secrets.Keyring

	// routeHook, when set, is called with the route's name once a request
	// is routed. Tests use it to make a route's handling fail.
	routeHook func(route string)
}

// DefaultOptions returns Options with every optional field at its default.
func DefaultOptions() Options {
	return Options{BindIP: "0.0.0.0", DrainTimeout: DefaultDrainTimeout}
}

// ErrInvalidOptions is wrapped by every Options.Validate error.
var ErrInvalidOptions = errors.New("invalid dataplane options")

// Validate reports the first invalid field by name.
func (o *Options) Validate() error {
	if o.Source == nil {
		return fmt.Errorf("%w: source: required", ErrInvalidOptions)
	}
	if o.BindIP != "" && net.ParseIP(o.BindIP) == nil {
		return fmt.Errorf("%w: bind_ip: %q is not an IP address", ErrInvalidOptions, o.BindIP)
	}
	if o.ListenShards < 0 || o.ListenShards > MaxListenShards {
		return fmt.Errorf("%w: listen_shards: %d is not within 0-%d", ErrInvalidOptions, o.ListenShards, MaxListenShards)
	}
	if o.DrainTimeout < 0 {
		return fmt.Errorf("%w: drain_timeout: must not be negative", ErrInvalidOptions)
	}
	return nil
}
