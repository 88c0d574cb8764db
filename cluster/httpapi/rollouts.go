package httpapi

import (
	"fmt"
	"net/http"
	"time"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/cluster/rollout"
	"github.com/rafterlb/rafter/fsm"
)

// RolloutReports takes the nodes' rollout counts on the leader
// (*rollout.Collector).
type RolloutReports interface {
	Add(rollout.Report)
}

func (s *server) rolloutRoutes() []route {
	rs := []route{
		// Reports come from the nodes themselves, with the cluster's token.
		{"POST", rollout.Path, accessWrite, s.handleRolloutReport},
	}
	for _, action := range []string{fsm.RolloutPause, fsm.RolloutResume, fsm.RolloutPromote, fsm.RolloutAbort} {
		rs = append(rs, route{"POST", "/v1/rollouts/{name}/" + action, accessWrite, s.handleRolloutControl(action)})
	}
	return rs
}

// handleRolloutControl commits an operator's action on a rollout; the
// state machine refuses one that does not fit the rollout's state (409).
func (s *server) handleRolloutControl(action string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		name := r.PathValue("name")
		cmd := fsm.NewCommand(&fsm.RolloutControl{Name: name, Action: action, Time: time.Now().UTC()})
		idx, err := s.store.Apply(r.Context(), cmd)
		if err != nil {
			return s.forwardOrFail(w, r, nil, err)
		}
		s.log.Info("rollout changed by an operator", "rollout", name, "action", action, "index", idx)
		res := api.RolloutActionResult{Index: idx}
		if st, ok := s.store.Config().RolloutStatus[name]; ok && st.Token == idx {
			res.Status = st
		}
		return s.answer(w, http.StatusOK, idx, res)
	}
}

// handleRolloutReport keeps a node's counts for the rollout controller.
// It is never forwarded: the reporter sends to whoever it believes leads,
// and a report kept by a follower is only unused.
func (s *server) handleRolloutReport(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Rollouts == nil {
		return fmt.Errorf("rollout reports: %w", errNoRoute)
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	var rep rollout.Report
	if err := decodeStrict(body, &rep); err != nil {
		return jsonProblem("", body, err)
	}
	if err := rep.Check(); err != nil {
		return invalidParam("", "%v", err)
	}
	s.cfg.Rollouts.Add(rep)
	return s.answer(w, http.StatusOK, 0, struct{}{})
}
