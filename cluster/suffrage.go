package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rafterlb/rafter/fsm"
)

// Promote makes the proxies ids voters; Demote makes the voters ids
// proxies. Both are leader only and return the voters afterwards.
//
// The voter count must go from one odd number to another within
// 1..maxVoters: an even count tolerates no more failures than the odd
// count below it and loses quorum on an even split, so 3 becomes 5 by
// promoting two proxies in one call. Raft changes one server at a time,
// so the count is even for the moment between the two; a step that fails
// undoes the steps before it.
//
// Refused before anything changes: an id that is not a member (404), a
// member that already has the vote asked for, a count that would be even
// or out of range, a promoted proxy the leader has not heard from lately,
// and a change after which the voters the leader hears from would not be
// a majority (409).
func (n *Node) Promote(ctx context.Context, ids []string) ([]string, error) {
	return n.changeSuffrage(ctx, ids, true)
}

// Demote makes the voters ids proxies; see Promote.
func (n *Node) Demote(ctx context.Context, ids []string) ([]string, error) {
	return n.changeSuffrage(ctx, ids, false)
}

func (n *Node) changeSuffrage(ctx context.Context, ids []string, promote bool) ([]string, error) {
	servers, err := n.leaderServers(ctx)
	if err != nil {
		return nil, err
	}
	steps, err := n.checkSuffrage(ids, servers, promote, time.Now())
	if err != nil {
		return nil, err
	}
	var done []raft.Server
	for _, s := range steps {
		if err := n.setVote(ctx, s, promote); err != nil {
			undo := n.undoSuffrage(context.WithoutCancel(ctx), done, promote)
			return nil, errors.Join(err, undo)
		}
		done = append(done, s)
	}
	servers, err = n.servers(ctx)
	if err != nil {
		return nil, err
	}
	return voterIDs(servers), nil
}

// checkSuffrage validates a change of vote and returns its steps in the
// order to take them: by id, and a leader demoting itself last (it steps
// down once that change commits).
func (n *Node) checkSuffrage(ids []string, servers []raft.Server, promote bool, now time.Time) ([]raft.Server, error) {
	verb, want := "demote", raft.Nonvoter
	if promote {
		verb, want = "promote", raft.Voter
	}
	if len(ids) == 0 {
		return nil, &fsm.FieldError{Field: "ids", Err: fsm.ErrInvalid, Message: "name at least one node"}
	}
	if len(ids) > maxVoters {
		return nil, &fsm.FieldError{Field: "ids", Err: fsm.ErrInvalid, Message: fmt.Sprintf("at most %d nodes, got %d", maxVoters, len(ids))}
	}
	byID := make(map[string]raft.Server, len(servers))
	voters := 0
	for _, s := range servers {
		byID[string(s.ID)] = s
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	var steps []raft.Server
	seen := map[string]bool{}
	for i, id := range ids {
		field := fmt.Sprintf("ids[%d]", i)
		if err := fsm.CheckNodeID(id); err != nil {
			return nil, reFieldErr(field, err)
		}
		if seen[id] {
			return nil, &fsm.FieldError{Field: field, Err: fsm.ErrInvalid, Message: fmt.Sprintf("%s is named twice", id)}
		}
		seen[id] = true
		s, ok := byID[id]
		if !ok {
			return nil, &fsm.FieldError{Field: field, Err: fsm.ErrNotFound, Message: fmt.Sprintf("%s is not a member of the cluster", id)}
		}
		if s.Suffrage == want {
			return nil, &fsm.FieldError{Field: field, Err: fsm.ErrConflict, Message: fmt.Sprintf("%s is already a %s", id, roleOf(want))}
		}
		if s.Suffrage == raft.Staging {
			return nil, &fsm.FieldError{Field: field, Err: fsm.ErrConflict, Message: fmt.Sprintf("%s is being added; try again in a moment", id)}
		}
		steps = append(steps, s)
	}
	after := voters - len(steps)
	if promote {
		after = voters + len(steps)
	}
	if msg := voterCountProblem(voters, after, verb); msg != "" {
		return nil, &fsm.FieldError{Field: "ids", Err: fsm.ErrConflict, Message: msg}
	}

	// Whether peers answer is known only once heartbeats have had time to
	// fail; a leader just in office would take a dead peer for a live one.
	if since := n.health.leadingSince(); since.IsZero() || now.Sub(since) < healthyWithin {
		return nil, fmt.Errorf("%w: %w", ErrTooSoon, &fsm.FieldError{Field: "ids", Err: fsm.ErrConflict, Message: fmt.Sprintf(
			"this node took office %s ago and cannot yet tell which members answer it; try again in %s",
			now.Sub(since).Round(time.Millisecond), healthyWithin)})
	}
	// The leader must hear from a majority of the voters it leaves behind,
	// or the change itself could not commit and writes would stop.
	reached := func(id string) bool {
		return id == n.cfg.NodeID || now.Sub(n.health.lastContact(id, now)) < healthyWithin
	}
	live := 0
	for _, s := range servers {
		id := string(s.ID)
		voterAfter := (s.Suffrage == raft.Voter) != seen[id]
		if voterAfter && reached(id) {
			live++
		}
		if promote && seen[id] && !reached(id) {
			return nil, &fsm.FieldError{Field: "ids", Err: fsm.ErrConflict, Message: fmt.Sprintf(
				"%s has not answered the leader for %s; a voter that cannot vote costs the cluster a failure it could tolerate: start it (or promote another proxy)",
				id, now.Sub(n.health.lastContact(id, now)).Round(time.Second))}
		}
	}
	if live < after/2+1 {
		return nil, &fsm.FieldError{Field: "ids", Err: fsm.ErrConflict, Message: fmt.Sprintf(
			"after this change only %d of %d voters would answer the leader, short of the %d a quorum needs; bring the others back first", live, after, after/2+1)}
	}
	slices.SortFunc(steps, func(a, b raft.Server) int {
		switch {
		case string(a.ID) == n.cfg.NodeID:
			return 1
		case string(b.ID) == n.cfg.NodeID:
			return -1
		}
		return strings.Compare(string(a.ID), string(b.ID))
	})
	return steps, nil
}

// voterCountProblem says why going from before to after voters is
// refused, and what to do instead; "" when it is fine.
func voterCountProblem(before, after int, verb string) string {
	switch {
	case after > maxVoters:
		return fmt.Sprintf("that would make %d voters; rafter runs at most %d (each one more makes every write wait for more nodes): keep the others proxies",
			after, maxVoters)
	case after < 1:
		return "that would leave no voter; a cluster needs at least one"
	case after%2 == 0:
		next := before + 2
		if verb == "demote" {
			next = before - 2
		}
		return fmt.Sprintf("that would make %d voters, an even count that tolerates no more failures than %d and loses quorum on an even split; %s nodes in pairs so the count stays odd (rafter node %s ID ID takes %d voters to %d)",
			after, after-1, verb, verb, before, next)
	}
	return ""
}

// setVote changes one server's vote in Raft and its fsm record's role.
// The record of a leader demoting itself is written first: once the
// change commits, it can no longer write.
func (n *Node) setVote(ctx context.Context, s raft.Server, voter bool) error {
	id := string(s.ID)
	role := fsm.RoleProxy
	if voter {
		role = fsm.RoleVoter
	}
	self := id == n.cfg.NodeID
	if self {
		if err := n.recordRole(ctx, s, role); err != nil {
			return err
		}
	}
	var f raft.IndexFuture
	if voter {
		f = n.raft.AddVoter(s.ID, s.Address, 0, enqueueTimeout(ctx))
	} else {
		f = n.raft.DemoteVoter(s.ID, 0, enqueueTimeout(ctx))
	}
	if err := n.await(ctx, f); err != nil {
		return fmt.Errorf("cluster: make %s a %s: %w", id, role, err)
	}
	n.log.Info("changed vote", "node", id, "role", role)
	if self {
		return nil
	}
	return n.recordRole(ctx, s, role)
}

// recordRole writes role into s's node record (creating one from what is
// known when it is missing).
func (n *Node) recordRole(ctx context.Context, s raft.Server, role string) error {
	id := string(s.ID)
	var want fsm.Node
	if have, ok := n.fsm.Config().Nodes[id]; ok {
		want = *have
	} else {
		n.peersMu.Lock()
		p, ok := n.peers[id]
		n.peersMu.Unlock()
		if !ok || p.RaftAddr != string(s.Address) {
			p = PeerInfo{ID: id, RaftAddr: string(s.Address)}
		}
		want = *nodeFromPeer(p)
	}
	want.Role = role
	return n.upsertNode(ctx, &want)
}

// undoSuffrage reverses the steps already taken (newest first) after a
// later one failed.
func (n *Node) undoSuffrage(ctx context.Context, done []raft.Server, promoted bool) error {
	var errs []error
	for i := len(done) - 1; i >= 0; i-- {
		if err := n.setVote(ctx, done[i], !promoted); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("cluster: undoing the steps already taken also failed (check `rafter status`): %w", errors.Join(errs...))
	}
	return nil
}

func voterIDs(servers []raft.Server) []string {
	var out []string
	for _, s := range servers {
		if s.Suffrage == raft.Voter {
			out = append(out, string(s.ID))
		}
	}
	slices.Sort(out)
	return out
}

// reFieldErr names field on a *fsm.FieldError from a check.
func reFieldErr(field string, err error) error {
	var fe *fsm.FieldError
	if errors.As(err, &fe) {
		return &fsm.FieldError{Field: field, Message: fe.Message, Err: fe.Err}
	}
	return err
}
