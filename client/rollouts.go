package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/fsm"
)

// Rollout is one rollout as GET /v1/rollouts answers it: its spec and its
// progress.
type Rollout struct {
	Name        string             `json:"name"`
	Spec        fsm.RolloutSpec    `json:"spec"`
	ModifyIndex uint64             `json:"modify_index"`
	Status      *fsm.RolloutStatus `json:"status,omitempty"`
}

// RolloutActionResult answers RolloutAction.
type RolloutActionResult = api.RolloutActionResult

// Rollouts answers every rollout with its status, sorted by name.
func (c *Client) Rollouts(ctx context.Context) ([]Rollout, Meta, error) {
	return list[Rollout](ctx, c, "/v1/rollouts")
}

// Rollout answers one rollout with its status; a missing one is an
// *APIError with Status 404.
func (c *Client) Rollout(ctx context.Context, name string) (Rollout, Meta, error) {
	var r Rollout
	m, err := c.do(ctx, http.MethodGet, objPath(fsm.KindRollout, name), nil, nil, "", &r)
	return r, m, err
}

// StartRollout creates (or replaces) rollout name, which starts it at its
// first step; it returns the Raft index of the write.
func (c *Client) StartRollout(ctx context.Context, name string, spec fsm.RolloutSpec) (uint64, error) {
	return c.Put(ctx, fsm.KindRollout, name, spec, nil)
}

// RolloutAction pauses, resumes, promotes or aborts rollout name
// (fsm.RolloutPause ...). An action that does not fit the rollout's state
// is an *APIError with Status 409.
func (c *Client) RolloutAction(ctx context.Context, name, action string) (RolloutActionResult, error) {
	var res RolloutActionResult
	_, err := c.do(ctx, http.MethodPost, "/v1/rollouts/"+url.PathEscape(name)+"/"+url.PathEscape(action), nil, nil, "", &res)
	return res, err
}
