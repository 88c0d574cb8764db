package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/cluster"
)

// Cluster-wide views ask every member in parallel and wait at most this
// long (?timeout=D, at most maxFanOutTimeout) for the slowest.
const (
	defaultFanOutTimeout = 2 * time.Second
	maxFanOutTimeout     = 30 * time.Second
	// maxFanOutBody bounds one member's answer.
	maxFanOutBody = 32 << 20
)

// memberAnswer is one member's answer to a fan-out request.
type memberAnswer struct {
	member cluster.Member
	body   []byte
	index  uint64
	at     time.Time
	took   time.Duration
	err    error
}

// nodeAnswer is what every view records of a.
func (a *memberAnswer) nodeAnswer(now time.Time) api.NodeAnswer {
	na := api.NodeAnswer{Node: a.member.ID, Zone: a.member.Zone, AdminAddr: a.member.AdminAddr,
		Index: a.index, LatencyMS: msec(a.took)}
	if a.err != nil {
		na.Error = a.err.Error()
		return na
	}
	na.AnsweredAt = a.at
	na.AgeSeconds = now.Sub(a.at).Seconds()
	return na
}

func msec(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// fanOutTimeout reads ?timeout.
func fanOutTimeout(r *http.Request) (time.Duration, error) {
	q := r.URL.Query()
	if !q.Has("timeout") {
		return defaultFanOutTimeout, nil
	}
	d, err := time.ParseDuration(q.Get("timeout"))
	if err != nil || d <= 0 {
		return 0, invalidParam("timeout", "want a positive duration such as 2s, got %q", q.Get("timeout"))
	}
	if d > maxFanOutTimeout {
		return 0, invalidParam("timeout", "at most %v, got %v", maxFanOutTimeout, d)
	}
	return d, nil
}

// fanOut sends GET path to every member's admin API with the caller's
// credentials and returns one answer per member, in member order, each
// within timeout. A member that does not answer in time, cannot be
// reached or answers with an error status has err set.
func (s *server) fanOut(ctx context.Context, auth, path string, timeout time.Duration) []memberAnswer {
	members := s.store.Status().Members
	out := make([]memberAnswer, len(members))
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var wg sync.WaitGroup
	for i, m := range members {
		out[i].member = m
		if m.AdminAddr == "" {
			out[i].err = errors.New("admin address unknown: the node has not recorded itself yet")
			continue
		}
		wg.Go(func() { s.askMember(ctx, auth, path, &out[i]) })
	}
	wg.Wait()
	return out
}

func (s *server) askMember(ctx context.Context, auth, path string, a *memberAnswer) {
	start := time.Now()
	defer func() { a.took = time.Since(start) }()
	url := s.cfg.ForwardScheme + "://" + a.member.AdminAddr + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		a.err = err
		return
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			a.err = fmt.Errorf("no answer within the deadline: %w", err)
		} else {
			a.err = err
		}
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxFanOutBody))
	if err != nil {
		a.err = fmt.Errorf("reading the answer: %w", err)
		return
	}
	if resp.StatusCode != http.StatusOK {
		var eb api.ErrorBody
		if json.Unmarshal(body, &eb) == nil && eb.Error.Message != "" {
			a.err = fmt.Errorf("answered %d: %s", resp.StatusCode, eb.Error.Message)
		} else {
			a.err = fmt.Errorf("answered %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
		}
		return
	}
	a.body, a.at = body, time.Now()
	a.index, _ = strconv.ParseUint(resp.Header.Get(HeaderIndex), 10, 64)
}

func (s *server) fanOutRoutes() []route {
	return []route{
		{"GET", "/v1/auth", accessRead, s.handleAuth},
		{"GET", "/v1/health/cluster", accessRead, s.handleHealthCluster},
		{"GET", "/v1/status/cluster", accessRead, s.handleStatusCluster},
		{"GET", "/v1/stats/cluster", accessRead, s.handleStatsCluster},
		{"GET", "/v1/history", accessRead, s.handleHistory},
		{"GET", "/v1/events", accessRead, s.handleEvents},
	}
}

// handleAuth says what the caller's token may do.
func (s *server) handleAuth(w http.ResponseWriter, r *http.Request) error {
	info := api.TokenInfo{Auth: s.auth.enabled(), Write: true, Node: s.cfg.NodeID}
	if info.Auth {
		token, _ := bearerToken(r)
		_, info.Write = s.auth.check(token)
	}
	return s.answer(w, http.StatusOK, 0, info)
}

func (s *server) handleHealthCluster(w http.ResponseWriter, r *http.Request) error {
	timeout, err := fanOutTimeout(r)
	if err != nil {
		return err
	}
	return s.answer(w, http.StatusOK, 0, s.healthCluster(r.Context(), r.Header.Get("Authorization"), timeout))
}

// healthCluster asks every member for GET /v1/health.
func (s *server) healthCluster(ctx context.Context, auth string, timeout time.Duration) api.ClusterHealth {
	answers := s.fanOut(ctx, auth, "/v1/health", timeout)
	now := time.Now()
	out := api.ClusterHealth{Node: s.cfg.NodeID, Nodes: make([]api.NodeHealth, 0, len(answers))}
	for i := range answers {
		a := &answers[i]
		nh := api.NodeHealth{Targets: []api.TargetHealth{}}
		if a.err == nil {
			var view struct {
				Targets   []api.TargetHealth `json:"targets"`
				Listeners json.RawMessage    `json:"listeners"`
			}
			if err := json.Unmarshal(a.body, &view); err != nil {
				a.err = fmt.Errorf("decoding its health view: %w", err)
			} else {
				if view.Targets != nil {
					nh.Targets = view.Targets
				}
				nh.Listeners = view.Listeners
			}
		}
		nh.NodeAnswer = a.nodeAnswer(now)
		out.Nodes = append(out.Nodes, nh)
	}
	return out
}

func (s *server) handleStatusCluster(w http.ResponseWriter, r *http.Request) error {
	timeout, err := fanOutTimeout(r)
	if err != nil {
		return err
	}
	return s.answer(w, http.StatusOK, 0, s.statusCluster(r.Context(), r.Header.Get("Authorization"), timeout))
}

// statusCluster asks every member for GET /v1/status. A member's health
// is the leader's view of it when the leader answered (only the leader
// hears from every member); its state and indexes are its own.
func (s *server) statusCluster(ctx context.Context, auth string, timeout time.Duration) api.ClusterStatus {
	own := s.store.Status()
	answers := s.fanOut(ctx, auth, "/v1/status", timeout)
	statuses := make([]*api.Status, len(answers))
	view, viewFrom := own, own.NodeID
	for i := range answers {
		if answers[i].err != nil {
			continue
		}
		var st api.Status
		if err := json.Unmarshal(answers[i].body, &st); err != nil {
			answers[i].err = fmt.Errorf("decoding its status: %w", err)
			continue
		}
		statuses[i] = &st
		if st.State == "Leader" {
			view, viewFrom = st, st.NodeID
		}
	}
	out := api.ClusterStatus{Node: own.NodeID, Leader: view.Leader, Term: view.Term, CommitIndex: view.CommitIndex,
		Members: make([]api.MemberStatus, 0, len(answers))}
	seen := map[string]api.Member{}
	for _, m := range view.Members {
		seen[m.ID] = m
	}
	for i, a := range answers {
		m, ok := seen[a.member.ID]
		if !ok {
			m = a.member
		}
		ms := api.MemberStatus{Member: m, LatencyMS: msec(a.took), HealthFrom: viewFrom}
		if st := statuses[i]; st != nil {
			ms.State, ms.Term, ms.CommitIndex, ms.AppliedIndex = st.State, st.Term, st.CommitIndex, st.AppliedIndex
			if out.CommitIndex > st.AppliedIndex {
				ms.Lag = out.CommitIndex - st.AppliedIndex
			}
		} else {
			ms.Error = a.err.Error()
			// A member that does not answer its admin API is not healthy
			// whatever Raft last heard from it.
			ms.Healthy, ms.Health = false, "unhealthy"
		}
		out.Members = append(out.Members, ms)
	}
	return out
}

func (s *server) handleStatsCluster(w http.ResponseWriter, r *http.Request) error {
	timeout, err := fanOutTimeout(r)
	if err != nil {
		return err
	}
	return s.answer(w, http.StatusOK, 0, s.statsCluster(r.Context(), r.Header.Get("Authorization"), timeout))
}

// statsCluster asks every member for GET /v1/stats and sums the counters
// of those that answered.
func (s *server) statsCluster(ctx context.Context, auth string, timeout time.Duration) api.ClusterStats {
	answers := s.fanOut(ctx, auth, "/v1/stats", timeout)
	now := time.Now()
	out := api.ClusterStats{Node: s.cfg.NodeID, Nodes: make([]api.NodeStatsAnswer, 0, len(answers))}
	var all []*api.NodeStats
	for i := range answers {
		a := &answers[i]
		na := api.NodeStatsAnswer{}
		if a.err == nil {
			var st api.NodeStats
			if err := json.Unmarshal(a.body, &st); err != nil {
				a.err = fmt.Errorf("decoding its stats: %w", err)
			} else {
				na.Stats = &st
				all = append(all, &st)
			}
		}
		na.NodeAnswer = a.nodeAnswer(now)
		out.Nodes = append(out.Nodes, na)
	}
	out.Routes = sumStats(all, func(n *api.NodeStats) []api.RequestStats { return n.Routes })
	out.Pools = sumStats(all, func(n *api.NodeStats) []api.RequestStats { return n.Pools })
	out.Backends = sumStats(all, func(n *api.NodeStats) []api.RequestStats { return n.Backends })
	return out
}
