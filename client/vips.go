package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/fsm"
)

// VIP is one VIP as GET /v1/vips answers it: its spec and, once assigned,
// which node holds it.
type VIP struct {
	Name        string             `json:"name"`
	Spec        fsm.VIPSpec        `json:"spec"`
	ModifyIndex uint64             `json:"modify_index"`
	Assignment  *api.VIPAssignment `json:"assignment,omitempty"`
}

// MoveResult answers MoveVIP: the new assignment.
type MoveResult = api.MoveResult

// VIPs answers every VIP with its assignment, sorted by name.
func (c *Client) VIPs(ctx context.Context) ([]VIP, Meta, error) {
	return list[VIP](ctx, c, "/v1/vips")
}

// MoveVIP assigns VIP name to node to (POST /v1/vips/{name}/move); the
// leader then moves the address. No failback undoes it. A node that is not
// a member or candidate, or is in an evacuated zone, is an *APIError with
// Status 400 and Field "to".
func (c *Client) MoveVIP(ctx context.Context, name, to string) (MoveResult, error) {
	body, err := json.Marshal(map[string]string{"to": to})
	if err != nil {
		return MoveResult{}, err
	}
	var res MoveResult
	_, err = c.do(ctx, http.MethodPost, "/v1/vips/"+url.PathEscape(name)+"/move", nil, body, "application/json", &res)
	return res, err
}
