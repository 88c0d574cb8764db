package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

// RegistrarConfig says what a Registrar keeps registered and through
// which nodes.
type RegistrarConfig struct {
	// Clients talk to different nodes of one cluster; on an error the
	// Registrar moves on to the next.
	Clients []*Client
	Pool    string
	Addr    string // the backend, host:port
	Zone    string
	Weight  int           // default 1
	TTL     time.Duration // fsm.MinLeaseTTL..fsm.MaxLeaseTTL
	// Interval between keepalives; default TTL/3.
	Interval time.Duration
	// RevokeTimeout bounds the revoke when Run stops; default 5s.
	RevokeTimeout time.Duration
	Logger        *slog.Logger // default: discard
}

// Validate reports the first problem with c, naming the flag-like field.
func (c *RegistrarConfig) Validate() error {
	switch {
	case len(c.Clients) == 0:
		return errors.New("registrar: clients: at least one admin address required")
	case c.Pool == "":
		return errors.New("registrar: pool: required")
	case c.Addr == "":
		return errors.New("registrar: addr: required")
	case c.TTL < fsm.MinLeaseTTL || c.TTL > fsm.MaxLeaseTTL:
		return fmt.Errorf("registrar: ttl: %v is out of range %v..%v", c.TTL, fsm.MinLeaseTTL, fsm.MaxLeaseTTL)
	case c.Weight < 0:
		return fmt.Errorf("registrar: weight: must not be negative, got %d", c.Weight)
	case c.Interval < 0 || c.Interval >= c.TTL:
		return fmt.Errorf("registrar: interval: %v must be below the TTL %v", c.Interval, c.TTL)
	}
	return nil
}

// Registrar keeps one backend registered under a lease: it grants the
// lease, registers the backend, sends keepalives every Interval through
// any node (following leader changes, and moving to the next address on
// errors), registers again under a new lease when the lease was lost, and
// revokes the lease when Run's context ends.
type Registrar struct {
	cfg   RegistrarConfig
	log   *slog.Logger
	lease atomic.Uint64

	mu   sync.Mutex // guards next
	next int        // index of the client to use
}

// NewRegistrar checks cfg and fills its defaults.
func NewRegistrar(cfg RegistrarConfig) (*Registrar, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Weight == 0 {
		cfg.Weight = 1
	}
	if cfg.Interval == 0 {
		cfg.Interval = cfg.TTL / 3
	}
	if cfg.RevokeTimeout <= 0 {
		cfg.RevokeTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Registrar{cfg: cfg, log: cfg.Logger}, nil
}

// Lease is the lease the backend is registered under now (0 while none).
func (r *Registrar) Lease() uint64 { return r.lease.Load() }

// ErrRefused wraps an answer that retrying cannot change (bad input, an
// unknown pool, a rejected token): Run stops with it.
var ErrRefused = errors.New("registration refused")

// Run registers and keeps the registration alive until ctx ends, then
// revokes the lease and returns nil; it returns early only on an error
// wrapping ErrRefused.
func (r *Registrar) Run(ctx context.Context) error {
	defer r.revoke(ctx)
	backoff := r.retryDelay()
	for {
		if r.lease.Load() == 0 {
			err := r.register(ctx)
			switch {
			case err == nil:
				backoff = r.retryDelay()
			case errors.Is(err, ErrRefused):
				return err
			case ctx.Err() != nil:
				return nil
			default:
				r.log.Warn("registration failed; retrying through the next node", "err", err)
				if !sleep(ctx, backoff) {
					return nil
				}
				backoff = min(backoff*2, r.cfg.Interval)
				continue
			}
		}
		if !sleep(ctx, r.cfg.Interval) {
			return nil
		}
		r.keepAlive(ctx)
	}
}

// retryDelay is the first pause after a failed call: short against the
// TTL so that a few nodes can be tried before the lease runs out.
func (r *Registrar) retryDelay() time.Duration {
	return min(200*time.Millisecond, r.cfg.Interval/4)
}

// keepAlive renews the lease, trying every node once before giving up
// until the next interval; a lost lease makes Run register again.
func (r *Registrar) keepAlive(ctx context.Context) {
	id := r.lease.Load()
	delay := r.retryDelay()
	for range len(r.cfg.Clients) + 1 {
		c := r.client()
		cctx, cancel := context.WithTimeout(ctx, r.cfg.Interval)
		_, err := c.KeepAliveLease(cctx, id)
		cancel()
		switch {
		case err == nil:
			return
		case ctx.Err() != nil:
			return
		case IsStatus(err, http.StatusNotFound):
			r.log.Warn("lease lost; registering again", "lease", id, "err", err)
			r.lease.Store(0)
			return
		}
		r.log.Warn("keepalive failed; trying the next node", "node", c.Addr(), "lease", id, "err", err)
		r.rotate()
		if !sleep(ctx, delay) {
			return
		}
		delay = min(delay*2, r.cfg.Interval/2)
	}
}

func (r *Registrar) register(ctx context.Context) error {
	c := r.client()
	cctx, cancel := context.WithTimeout(ctx, r.cfg.TTL)
	defer cancel()
	l, err := c.GrantLease(cctx, r.cfg.TTL)
	if err != nil {
		r.rotate()
		return r.classify("grant lease", err)
	}
	w := r.cfg.Weight
	if _, err := c.RegisterBackend(cctx, r.cfg.Pool, r.cfg.Addr, BackendRegistration{Lease: l.ID, Weight: &w, Zone: r.cfg.Zone}); err != nil {
		// The lease is of no use without the backend; let it expire if the
		// revoke does not get through either.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.RevokeTimeout)
		_, _ = c.RevokeLease(rctx, l.ID)
		rcancel()
		r.rotate()
		return r.classify("register backend", err)
	}
	r.lease.Store(l.ID)
	r.log.Info("registered", "pool", r.cfg.Pool, "addr", r.cfg.Addr, "lease", l.ID, "ttl", r.cfg.TTL, "node", c.Addr())
	return nil
}

// classify marks answers that retrying cannot fix.
func (r *Registrar) classify(what string, err error) error {
	var ae *APIError
	if errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500 && ae.Status != http.StatusRequestTimeout && ae.Status != http.StatusTooManyRequests {
		return fmt.Errorf("%s: %w: %w", what, ErrRefused, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (r *Registrar) revoke(ctx context.Context) {
	id := r.lease.Swap(0)
	if id == 0 {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.RevokeTimeout)
	defer cancel()
	for range len(r.cfg.Clients) {
		c := r.client()
		_, err := c.RevokeLease(rctx, id)
		if err == nil || IsStatus(err, http.StatusNotFound) {
			r.log.Info("lease revoked", "lease", id, "pool", r.cfg.Pool, "addr", r.cfg.Addr)
			return
		}
		r.log.Warn("revoke failed; trying the next node", "node", c.Addr(), "lease", id, "err", err)
		r.rotate()
		if rctx.Err() != nil {
			break
		}
	}
	r.log.Warn("lease not revoked; it expires after its TTL", "lease", id, "ttl", r.cfg.TTL)
}

func (r *Registrar) client() *Client {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cfg.Clients[r.next%len(r.cfg.Clients)]
}

func (r *Registrar) rotate() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next = (r.next + 1) % len(r.cfg.Clients)
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
