package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/rafterlb/rafter/api"
)

// SuffrageResult answers Promote and Demote: the voters afterwards.
type SuffrageResult = api.SuffrageResult

// Promote makes proxies voters (POST /v1/nodes/{id}/promote for one,
// POST /v1/nodes/promote for several). The voter count must stay odd:
// promote in pairs.
func (c *Client) Promote(ctx context.Context, ids ...string) (SuffrageResult, error) {
	return c.changeSuffrage(ctx, "promote", ids)
}

// Demote makes voters proxies; see Promote.
func (c *Client) Demote(ctx context.Context, ids ...string) (SuffrageResult, error) {
	return c.changeSuffrage(ctx, "demote", ids)
}

func (c *Client) changeSuffrage(ctx context.Context, verb string, ids []string) (SuffrageResult, error) {
	var out SuffrageResult
	if len(ids) == 1 {
		_, err := c.do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(ids[0])+"/"+verb, nil, nil, "", &out)
		return out, err
	}
	b, err := json.Marshal(api.SuffrageChange{IDs: ids})
	if err != nil {
		return out, fmt.Errorf("client: %w", err)
	}
	_, err = c.do(ctx, http.MethodPost, "/v1/nodes/"+verb, nil, b, "application/json", &out)
	return out, err
}
