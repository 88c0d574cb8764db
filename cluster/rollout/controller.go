package rollout

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/rafterlb/rafter/cluster/leading"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/conf"
)

// Store is what the Controller needs of the cluster node; *cluster.Node
// satisfies it.
type Store interface {
	Config() *fsm.Config
	Apply(ctx context.Context, cmd *fsm.Command) (uint64, error)
	VerifyLeader(ctx context.Context) error
}

// Config configures a Controller.
type Config struct {
	Store     Store
	Collector *Collector
	// LatencyBounds are the upper bounds of the reports' latency buckets.
	LatencyBounds []time.Duration
	// Tick is how often running rollouts are judged (default 200ms).
	Tick time.Duration
	// Settle is how long after a step begins its window starts: the
	// time every node needs to serve the new split and report (default
	// 500ms, at most a third of a rollout's interval).
	Settle time.Duration
	Now    func() time.Time
	Logger *slog.Logger
}

// Controller judges running rollouts while this node leads.
type Controller struct {
	cfg Config
}

// New checks cfg and returns a Controller; Run drives it.
func New(cfg Config) (*Controller, error) {
	if cfg.Store == nil || cfg.Collector == nil {
		return nil, errors.New("rollout: controller: store and collector are required")
	}
	if err := conf.NotNegative(
		conf.Field("rollout: controller.tick", cfg.Tick),
		conf.Field("rollout: controller.settle", cfg.Settle),
	); err != nil {
		return nil, err
	}
	conf.Default(&cfg.Tick, 200*time.Millisecond)
	conf.Default(&cfg.Settle, 500*time.Millisecond)
	conf.Now(&cfg.Now)
	conf.Logger(&cfg.Logger)
	return &Controller{cfg: cfg}, nil
}

// Run follows leadership reports and judges rollouts during each term this
// node leads, until ctx ends.
func (c *Controller) Run(ctx context.Context, leadership <-chan leading.Leadership) error {
	return leading.Follow(ctx, leadership, c.startTerm, nil)
}

func (c *Controller) startTerm(ctx context.Context, term uint64) func() {
	ctx, cancel := context.WithCancel(ctx)
	t := &termState{c: c, term: term, windows: map[string]*window{}}
	var wg sync.WaitGroup
	wg.Go(func() { t.run(ctx) })
	c.cfg.Logger.Info("rollout controller active", "term", term)
	return func() {
		cancel()
		wg.Wait()
	}
}

// termState is one term's windows; a new leader opens fresh ones on the
// steps the committed status names.
type termState struct {
	c       *Controller
	term    uint64
	windows map[string]*window
}

func (t *termState) run(ctx context.Context) { leading.Every(ctx, t.c.cfg.Tick, t.step) }

// step judges every progressing rollout once.
func (t *termState) step(ctx context.Context) {
	cfg := t.c.cfg.Store.Config()
	if cfg == nil {
		return
	}
	for name := range t.windows {
		if st := cfg.RolloutStatus[name]; st == nil || st.State != fsm.RolloutProgressing {
			delete(t.windows, name)
		}
	}
	now := t.c.cfg.Now()
	for _, name := range sortedNames(cfg.Rollouts) {
		st := cfg.RolloutStatus[name]
		if st == nil || st.State != fsm.RolloutProgressing {
			continue
		}
		spec := &cfg.Rollouts[name].Spec
		w := t.windows[name]
		if w == nil || w.token != st.Token {
			w = &window{token: st.Token, started: now}
			t.windows[name] = w
		}
		settle := min(t.c.cfg.Settle, spec.Interval.D()/3)
		if !w.based {
			if now.Sub(w.started) < settle {
				continue
			}
			w.base, w.based = t.c.cfg.Collector.read(spec.Route), true
			continue
		}
		f := w.figures(t.c.cfg.Collector.read(spec.Route), spec, t.c.cfg.LatencyBounds, now.Sub(w.started)-settle)
		verdict, reason := judge(spec, f, now.Sub(w.started))
		if verdict == "" {
			continue
		}
		t.decide(ctx, name, st, verdict, reason, f, now)
	}
}

// decide commits a verdict made on status st. The entry names st's token
// and this term: if another leader moved the rollout on meanwhile, the
// state machine refuses it.
func (t *termState) decide(ctx context.Context, name string, st *fsm.RolloutStatus, verdict, reason string, f *fsm.RolloutFigures, now time.Time) {
	log := t.c.cfg.Logger.With("rollout", name, "step", st.Step, "weight", st.Weight, "verdict", verdict)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := t.c.cfg.Store.VerifyLeader(ctx); err != nil {
		log.Info("rollout decision not made: leadership not confirmed", "err", err)
		return
	}
	cmd := fsm.NewCommand(&fsm.RolloutDecide{Name: name, Token: st.Token, Term: t.term, Verdict: verdict,
		Reason: reason, Figures: f, Time: now.UTC()})
	idx, err := t.c.cfg.Store.Apply(ctx, cmd)
	if err != nil {
		log.Warn("rollout decision not committed", "err", err)
		return
	}
	delete(t.windows, name)
	level := slog.LevelInfo
	if verdict == fsm.VerdictFail {
		level = slog.LevelWarn
	}
	log.Log(ctx, level, "rollout step decided", "reason", reason, "index", idx,
		"canary_requests", f.Requests, "errors", f.Errors, "share", f.Share)
}
