package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/cluster/probe"
	"github.com/rafterlb/rafter/fsm"
)

// Prober answers node probes (*probe.Tracker).
type Prober interface {
	Handle(ctx context.Context, req probe.Request) (probe.Response, error)
}

func (s *server) vipRoutes() []route {
	return []route{
		{"POST", "/v1/vips/{name}/move", accessWrite, s.handleVIPMove},
		// Probes come from the nodes themselves, with the cluster's token.
		{"POST", probe.Path, accessWrite, s.handleProbe},
	}
}

// handleVIPMove assigns a VIP to the node an operator names, through the
// same Raft write and token fencing as the leader's own moves; the leader's
// controller then moves the address. The assignment records reason
// "operator", and no failback undoes it.
func (s *server) handleVIPMove(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	var req api.MoveRequest
	if err := decodeFields(body, map[string]any{"to": &req.To}); err != nil {
		return err
	}
	cfg := s.store.Config()
	if cfg == nil {
		cfg = fsm.Empty()
	}
	v, ok := cfg.VIPs[name]
	if !ok {
		return fmt.Errorf("vip %q: %w", name, fsm.ErrNotFound)
	}
	if err := moveTargetProblem(cfg, v, req.To); err != nil {
		return err
	}
	var cas uint64
	if a, ok := cfg.Assignments[name]; ok {
		cas = a.Token
		if a.Holder == req.To {
			return s.answer(w, http.StatusOK, cfg.Index, api.MoveResult{Assignment: *a, Index: cfg.Index})
		}
	}
	assign := &fsm.Assign{
		Assignment: &fsm.Assignment{VIP: name, Holder: req.To, Reason: "operator"},
		CAS:        &cas,
		Time:       time.Now().UTC(),
	}
	idx, err := s.store.Apply(r.Context(), fsm.NewCommand(assign))
	if err != nil {
		return s.forwardOrFail(w, r, body, err)
	}
	a := fsm.Assignment{VIP: name, Holder: req.To, Token: idx, Since: assign.Time, Reason: assign.Assignment.Reason}
	if cur, ok := s.store.Config().Assignments[name]; ok && cur.Token == idx {
		a = *cur
	}
	s.log.Info("vip moved by an operator", "vip", name, "to", req.To, "token", idx)
	return s.answer(w, http.StatusOK, idx, api.MoveResult{Assignment: a, Index: idx})
}

// moveTargetProblem names what makes node unfit to hold v.
func moveTargetProblem(cfg *fsm.Config, v *fsm.VIP, node string) error {
	switch {
	case node == "":
		return invalidParam("to", "required: the node to move vip %q to", v.Name)
	case cfg.Nodes[node] == nil:
		return invalidParam("to", "node %q is not a cluster member", node)
	case !v.Spec.MayHold(node):
		return invalidParam("to", "node %q is not a candidate of vip %q (candidates: %v)", node, v.Name, v.Spec.Candidates)
	}
	if z := cfg.Nodes[node].Zone; z != "" {
		if st, ok := cfg.Zones[z]; ok && st.Evacuated {
			return invalidParam("to", "node %q is in zone %q, which is evacuated", node, z)
		}
	}
	return nil
}

// handleProbe answers a node's liveness probe; only the leader answers,
// and it is never forwarded: the prober asks whoever it believes leads.
func (s *server) handleProbe(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Probe == nil {
		return fmt.Errorf("probes: %w", errNoRoute)
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	var req probe.Request
	if err := decodeStrict(body, &req); err != nil {
		return jsonProblem("", body, err)
	}
	if req.Node == "" {
		return invalidParam("node", "required")
	}
	if req.Seq, err = probeHeader(r, probe.HeaderSeq); err != nil {
		return err
	}
	if req.Incarnation, err = probeHeader(r, probe.HeaderIncarnation); err != nil {
		return err
	}
	if v := r.Header.Get(probe.HeaderPrior); v != "" {
		var p probe.Prior
		var ago int64
		if _, err := fmt.Sscanf(v, "%s %d %d", &p.Leader, &p.Term, &ago); err != nil || ago < 0 {
			return invalidParam(probe.HeaderPrior, "want \"LEADER TERM AGO_NS\", got %q", v)
		}
		p.Ago = time.Duration(ago)
		req.Prior = &p
	}
	resp, err := s.cfg.Probe.Handle(r.Context(), req)
	if errors.Is(err, probe.ErrNotLeader) {
		return fmt.Errorf("%w: %w", errNotLeaderProbe, err)
	}
	if errors.Is(err, probe.ErrStale) {
		// Nobody waits for this answer any more.
		return fmt.Errorf("%w: %w", fsm.ErrConflict, err)
	}
	if err != nil {
		return err
	}
	return s.answer(w, http.StatusOK, s.store.Config().Index, resp)
}

// probeHeader reads one of the probe's numeric headers; absent: 0.
func probeHeader(r *http.Request, name string) (uint64, error) {
	v := r.Header.Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, invalidParam(name, "want a decimal number, got %q", v)
	}
	return n, nil
}
