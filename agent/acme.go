package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/cluster/acme"
	"github.com/rafterlb/rafter/secrets"
)

// ACMETuning shortens the ACME manager's timers; zero values keep the
// defaults (see acme.Config). Only programs that run agents in-process set
// it.
type ACMETuning struct {
	Tick               time.Duration
	RetryMin, RetryMax time.Duration
	RenewAt            func(notBefore, notAfter time.Time) time.Time
}

type acmeDeps struct {
	Node      *cluster.Node
	Keyring   *secrets.Keyring
	Transport http.RoundTripper
	Scheme    string
	Token     string
	Tuning    ACMETuning
	Logger    *slog.Logger
}

// startACME runs the ACME manager, which orders certificates while this
// node leads. A node without a secrets key cannot seal keys and never
// orders; it still answers challenges like every node.
func startACME(ctx context.Context, wg *sync.WaitGroup, d acmeDeps) error {
	log := d.Logger.With("component", "acme")
	if d.Keyring == nil {
		log.Info("ACME orders disabled on this node: no --secrets-key-file")
		return nil
	}
	m, err := acme.New(acme.Config{
		Store:   d.Node,
		Sealer:  d.Keyring,
		Tick:    d.Tuning.Tick,
		RenewAt: d.Tuning.RenewAt,
		Propagation: &appliedOnMembers{node: d.Node, scheme: d.Scheme, token: d.Token,
			client: &http.Client{Transport: d.Transport, Timeout: 2 * time.Second}},
		RetryMin: d.Tuning.RetryMin,
		RetryMax: d.Tuning.RetryMax,
		Logger:   log,
	})
	if err != nil {
		return err
	}
	leads, cancel := d.Node.WatchLeadership()
	wg.Go(func() {
		defer cancel()
		_ = m.Run(ctx, leads)
	})
	return nil
}

// appliedOnMembers waits until the members of the cluster report an
// applied index at or past an entry's, by asking each member's admin API
// for its status: all of them within allWithin, else a majority within
// majorityWithin. The data plane follows the applied state within ~100 ms;
// settle covers that.
type appliedOnMembers struct {
	node   *cluster.Node
	client *http.Client
	scheme string
	token  string

	allWithin, majorityWithin, settle time.Duration
}

func (a *appliedOnMembers) WaitApplied(ctx context.Context, index uint64) error {
	allWithin, majorityWithin, settle := a.allWithin, a.majorityWithin, a.settle
	if allWithin == 0 {
		allWithin = 5 * time.Second
	}
	if majorityWithin == 0 {
		majorityWithin = 15 * time.Second
	}
	if settle == 0 {
		settle = 200 * time.Millisecond
	}
	start := time.Now()
	for attempt := 0; ; attempt++ {
		addrs := a.members()
		done := 0
		for _, addr := range addrs {
			if a.applied(ctx, addr) >= index {
				done++
			}
		}
		elapsed := time.Since(start)
		switch {
		case len(addrs) > 0 && done == len(addrs),
			elapsed >= allWithin && done > len(addrs)/2:
			return sleepCtx(ctx, settle)
		case elapsed >= majorityWithin:
			return fmt.Errorf("index %d applied on %d of %d members after %v", index, done, len(addrs), elapsed.Round(time.Millisecond))
		}
		if err := sleepCtx(ctx, min(50*time.Millisecond<<min(attempt, 3), 400*time.Millisecond)); err != nil {
			return err
		}
	}
}

// members are the admin addresses of every member, this node included.
func (a *appliedOnMembers) members() []string {
	cfg := a.node.Config()
	var out []string
	for _, n := range cfg.Nodes {
		if n != nil && n.AdminAddr != "" {
			out = append(out, n.AdminAddr)
		}
	}
	sort.Strings(out)
	return out
}

// applied is the applied index addr reports, 0 when it does not answer.
func (a *appliedOnMembers) applied(ctx context.Context, addr string) uint64 {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.scheme+"://"+addr+"/v1/status", nil)
	if err != nil {
		return 0
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0
	}
	var st api.Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return 0
	}
	return st.AppliedIndex
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
