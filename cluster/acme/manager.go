package acme

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/challenge"

	"github.com/rafterlb/rafter/cluster/leading"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/conf"
	"github.com/rafterlb/rafter/secrets"
)

// Store is what the Manager needs of the cluster node; *cluster.Node
// satisfies it.
type Store interface {
	Config() *fsm.Config
	Apply(ctx context.Context, cmd *fsm.Command) (uint64, error)
	VerifyLeader(ctx context.Context) error
}

// Sealer seals private keys with the cluster's secrets key before they go
// into a command, and opens them again; aad binds a sealed value to what
// it is. *secrets.Keyring satisfies it.
type Sealer interface {
	Seal(plaintext, aad []byte) (string, error)
	Open(sealed string, aad []byte) ([]byte, error)
}

// Propagation reports when the entry at index is applied on the nodes
// that answer the CA: every node, or a majority once a deadline passed.
type Propagation interface {
	WaitApplied(ctx context.Context, index uint64) error
}

// Request is a certificate the configuration asks ACME for.
type Request struct {
	Certificate string
	SpecIndex   uint64 // the certificate's modify_index
	Issuer      string
	Domains     []string
}

// Requests lists the certificates with spec.acme of cfg, by name.
func Requests(cfg *fsm.Config) []Request {
	var out []Request
	for name, c := range cfg.Certificates {
		if c == nil || c.Spec.ACME == nil {
			continue
		}
		out = append(out, Request{Certificate: name, SpecIndex: c.ModifyIndex, Issuer: c.Spec.ACME.Issuer,
			Domains: slices.Clone(c.Spec.ACME.Domains)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Certificate < out[j].Certificate })
	return out
}

// Config configures a Manager.
type Config struct {
	Store       Store
	Sealer      Sealer
	Propagation Propagation
	// Tick is how often the leader looks for due orders (default 1s).
	Tick time.Duration
	// OrderTimeout bounds one order from claim to result (default 3m).
	OrderTimeout time.Duration
	// RequestTimeout bounds one request to the CA (default 30s).
	RequestTimeout time.Duration
	// RetryMin and RetryMax bound the back-off after a failed order
	// (defaults 1m and 6h); each attempt doubles it, with ±20 % jitter.
	RetryMin, RetryMax time.Duration
	// RenewAt is when a certificate valid from notBefore to notAfter is
	// renewed (default: at two thirds of its lifetime).
	RenewAt func(notBefore, notAfter time.Time) time.Time
	Now     func() time.Time
	Logger  *slog.Logger
}

// Manager orders and renews ACME certificates while this node leads.
type Manager struct {
	cfg Config
}

// New checks cfg and returns a Manager; Run drives it.
func New(cfg Config) (*Manager, error) {
	if cfg.Store == nil || cfg.Sealer == nil || cfg.Propagation == nil {
		return nil, errors.New("acme: store, sealer and propagation are required")
	}
	if err := conf.NotNegative(
		conf.Field("acme: tick", cfg.Tick),
		conf.Field("acme: order_timeout", cfg.OrderTimeout),
		conf.Field("acme: request_timeout", cfg.RequestTimeout),
		conf.Field("acme: retry_min", cfg.RetryMin),
		conf.Field("acme: retry_max", cfg.RetryMax),
	); err != nil {
		return nil, err
	}
	conf.Default(&cfg.Tick, time.Second)
	conf.Default(&cfg.OrderTimeout, 3*time.Minute)
	conf.Default(&cfg.RequestTimeout, 30*time.Second)
	conf.Default(&cfg.RetryMin, time.Minute)
	conf.Default(&cfg.RetryMax, 6*time.Hour)
	if cfg.RetryMax < cfg.RetryMin {
		return nil, fmt.Errorf("acme: retry_max %v is below retry_min %v", cfg.RetryMax, cfg.RetryMin)
	}
	if cfg.RenewAt == nil {
		cfg.RenewAt = TwoThirds
	}
	conf.Now(&cfg.Now)
	conf.Logger(&cfg.Logger)
	return &Manager{cfg: cfg}, nil
}

// TwoThirds is the default renewal time: two thirds into the lifetime.
func TwoThirds(notBefore, notAfter time.Time) time.Time {
	return notBefore.Add(notAfter.Sub(notBefore) * 2 / 3)
}

// Run follows leadership reports and drives orders during each term this
// node leads, until ctx ends.
func (m *Manager) Run(ctx context.Context, leadership <-chan leading.Leadership) error {
	return leading.Follow(ctx, leadership, m.startTerm, nil)
}

func (m *Manager) startTerm(ctx context.Context, termNo uint64) func() {
	ctx, cancel := context.WithCancel(ctx)
	t := &term{m: m, term: termNo, clients: map[string]*client{}, log: m.cfg.Logger.With("term", termNo)}
	var wg sync.WaitGroup
	wg.Go(func() { t.run(ctx) })
	t.log.Info("acme manager active")
	return func() {
		cancel()
		wg.Wait()
	}
}

// term is one leadership term's work; orders run one at a time.
type term struct {
	m       *Manager
	term    uint64
	clients map[string]*client
	log     *slog.Logger
}

func (t *term) run(ctx context.Context) { leading.Every(ctx, t.m.cfg.Tick, t.step) }

// step runs the order of every certificate that is due, in name order.
func (t *term) step(ctx context.Context) {
	cfg := t.m.cfg.Store.Config()
	if cfg == nil {
		return
	}
	now := t.m.cfg.Now()
	for _, r := range Requests(cfg) {
		if ctx.Err() != nil {
			return
		}
		st := cfg.ACMEStatus[r.Certificate]
		if !Due(st, r, now) {
			continue
		}
		if _, ok := cfg.ACMEIssuers[r.Issuer]; !ok {
			// Nothing to order from (the order command would be refused);
			// the certificate waits until its issuer is applied.
			continue
		}
		t.order(ctx, r, st)
		cfg = t.m.cfg.Store.Config()
		now = t.m.cfg.Now()
	}
}

// Due reports whether the certificate of r, whose order status is st,
// needs an order at now: it has none, its spec changed since the last
// order, an order was left running by an earlier leader, its renewal time
// has come, or its retry time after a failure has.
func Due(st *fsm.ACMEStatus, r Request, now time.Time) bool {
	switch {
	case st == nil:
		return true
	case st.SpecIndex != r.SpecIndex:
		return true
	case st.State == fsm.ACMEOrdering:
		return true // this term runs orders to their end, so it is a predecessor's
	case st.State == fsm.ACMEValid:
		return !now.Before(st.RenewAt)
	case st.State == fsm.ACMEFailed:
		return !now.Before(st.NextAttempt)
	}
	return true
}

// errDeposed means a fenced command was refused: another leader owns the
// order now.
var errDeposed = errors.New("acme: order taken over by another leader")

// apply commits one fenced command after confirming leadership.
func (t *term) apply(ctx context.Context, p fsm.Payload) (uint64, error) {
	if err := t.m.cfg.Store.VerifyLeader(ctx); err != nil {
		if ctx.Err() != nil {
			return 0, context.Cause(ctx)
		}
		return 0, fmt.Errorf("%w: %v", errDeposed, err)
	}
	idx, err := t.m.cfg.Store.Apply(ctx, fsm.NewCommand(p))
	if errors.Is(err, fsm.ErrConflict) {
		return 0, fmt.Errorf("%w: %v", errDeposed, err)
	}
	return idx, err
}

// order runs one order for r from claim to result.
func (t *term) order(ctx context.Context, r Request, st *fsm.ACMEStatus) {
	ctx, cancel := context.WithTimeout(ctx, t.m.cfg.OrderTimeout)
	defer cancel()
	log := t.log.With("certificate", r.Certificate, "issuer", r.Issuer, "domains", r.Domains)
	var prevToken uint64
	failures := 0
	if st != nil {
		prevToken, failures = st.Token, st.Failures
	}
	if st != nil && st.SpecIndex != r.SpecIndex {
		failures = 0 // a new spec starts its back-off afresh
	}
	token, err := t.apply(ctx, &fsm.ACMEOrder{Certificate: r.Certificate, SpecIndex: r.SpecIndex,
		Token: prevToken, Term: t.term, Time: t.m.cfg.Now().UTC()})
	if err != nil {
		log.Warn("acme order not begun", "err", err)
		return
	}
	log = log.With("token", token)
	log.Info("acme order begun")
	res, err := t.obtain(ctx, r, token)
	if errors.Is(err, errDeposed) || ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) {
		log.Warn("acme order abandoned", "err", err)
		return
	}
	now := t.m.cfg.Now().UTC()
	if err != nil {
		next := now.Add(t.m.backoff(failures + 1))
		msg := err.Error()
		if len(msg) > 1024 {
			msg = msg[:1024]
		}
		log.Warn("acme order failed", "err", err, "next_attempt", next)
		// A fresh context: the order's may have run out, the result must
		// still be recorded.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer rcancel()
		if _, err := t.apply(rctx, &fsm.ACMEResult{Certificate: r.Certificate, Token: token, Term: t.term,
			Error: msg, NextAttempt: next, Time: now}); err != nil {
			log.Warn("acme failure not recorded", "err", err)
		}
		return
	}
	res.Certificate, res.Token, res.Term, res.Time = r.Certificate, token, t.term, now
	if _, err := t.apply(ctx, res); err != nil {
		log.Warn("acme certificate not stored", "err", err)
		return
	}
	log.Info("acme certificate issued", "renew_at", res.RenewAt)
}

// obtain drives the ACME order itself and returns the result to commit.
func (t *term) obtain(ctx context.Context, r Request, token uint64) (*fsm.ACMEResult, error) {
	c, err := t.account(ctx, r.Issuer)
	if err != nil {
		return nil, err
	}
	p := &provider{t: t, cert: r.Certificate, token: token, typ: c.iss.ChallengeType()}
	c.lego.Challenge.ResetSolvers()
	switch p.typ {
	case fsm.ChallengeTLSALPN01:
		err = c.lego.Challenge.SetTLSALPN01Provider(p)
	default:
		err = c.lego.Challenge.SetHTTP01Provider(p)
	}
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	res, err := c.lego.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: r.Domains, PrivateKey: key, Bundle: true})
	if err != nil {
		if p.deposed != nil {
			return nil, p.deposed
		}
		return nil, err
	}
	certs, err := fsm.ParseCertificatesPEM(string(res.Certificate))
	if err != nil {
		return nil, fmt.Errorf("the CA's certificate: %w", err)
	}
	leaf := certs[0]
	sealed, err := t.sealKey(key, secrets.CertificateKeyAAD(r.Certificate))
	if err != nil {
		return nil, err
	}
	return &fsm.ACMEResult{CertPEM: string(res.Certificate), SealedKey: sealed,
		RenewAt: t.m.cfg.RenewAt(leaf.NotBefore, leaf.NotAfter).UTC()}, nil
}

// backoff is the wait before attempt n (n ≥ 1) after failures: RetryMin
// doubled per failure up to RetryMax, ±20 % jitter so that many
// certificates failing together do not retry together.
func (m *Manager) backoff(n int) time.Duration {
	d := m.cfg.RetryMin
	for i := 1; i < n && d < m.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, m.cfg.RetryMax)
	span := int64(d) * 2 / 5
	if span > 0 {
		j, err := rand.Int(rand.Reader, big.NewInt(span))
		if err == nil {
			d += time.Duration(j.Int64() - span/2)
		}
	}
	return d
}

// provider publishes challenges through Raft: Present commits the key
// authorization and returns once the nodes serve it; CleanUp removes it.
type provider struct {
	t       *term
	cert    string
	token   uint64
	typ     string
	deposed error
}

var _ challenge.Provider = (*provider)(nil)

func (p *provider) Present(ctx context.Context, domain, token, keyAuth string) error {
	idx, err := p.t.apply(ctx, &fsm.ACMEChallenges{Certificate: p.cert, Token: p.token, Term: p.t.term,
		Add: []fsm.ACMEChallenge{{Certificate: p.cert, Type: p.typ, Domain: domain, Token: token, KeyAuth: keyAuth}}})
	if err != nil {
		if errors.Is(err, errDeposed) {
			p.deposed = err
		}
		return err
	}
	start := time.Now()
	if err := p.t.m.cfg.Propagation.WaitApplied(ctx, idx); err != nil {
		return fmt.Errorf("challenge not applied on the nodes: %w", err)
	}
	p.t.log.Debug("acme challenge published", "certificate", p.cert, "domain", domain, "index", idx,
		"wait", time.Since(start).Round(time.Millisecond))
	return nil
}

func (p *provider) CleanUp(ctx context.Context, domain, token, keyAuth string) error {
	_, err := p.t.apply(ctx, &fsm.ACMEChallenges{Certificate: p.cert, Token: p.token, Term: p.t.term, Remove: []string{token}})
	if errors.Is(err, errDeposed) {
		p.deposed = err
	}
	return err
}
