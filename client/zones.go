package client

import (
	"context"
	"net/http"
	"net/url"
)

// Zone is one availability zone as GET /v1/zones answers it.
type Zone struct {
	Zone        string   `json:"zone"`
	Evacuated   bool     `json:"evacuated"`
	ModifyIndex uint64   `json:"modify_index"` // 0: never evacuated nor restored
	Nodes       []string `json:"nodes"`        // members in the zone
	Backends    int      `json:"backends"`     // pool backends in the zone, over every pool
}

// ZoneResult answers an evacuate or restore. Warning is set when the
// change may not do what was meant (a pool left with no backend outside
// evacuated zones, listed in StrandedPools; or a zone nothing is in): the
// server never refuses an evacuation, so the caller should show it.
type ZoneResult struct {
	Index         uint64   `json:"index"`
	Zone          string   `json:"zone"`
	Evacuated     bool     `json:"evacuated"`
	Warning       string   `json:"warning,omitempty"`
	StrandedPools []string `json:"stranded_pools,omitempty"`
}

// Zones answers every zone the cluster knows (from members, pool
// backends and zone states), sorted by name.
func (c *Client) Zones(ctx context.Context) ([]Zone, Meta, error) {
	var out struct {
		Items []Zone `json:"items"`
		Index uint64 `json:"index"`
	}
	m, err := c.do(ctx, http.MethodGet, "/v1/zones", nil, nil, "", &out)
	if err == nil && m.Index == 0 {
		m.Index = out.Index
	}
	return out.Items, m, err
}

// EvacuateZone stops every node from sending requests to the backends in
// zone (POST /v1/zones/{zone}/evacuate). An invalid name is an *APIError
// with Status 400 and Field "zone".
func (c *Client) EvacuateZone(ctx context.Context, zone string) (ZoneResult, error) {
	return c.zoneWrite(ctx, http.MethodPost, zone)
}

// RestoreZone lets the backends in zone get traffic again
// (DELETE /v1/zones/{zone}/evacuate).
func (c *Client) RestoreZone(ctx context.Context, zone string) (ZoneResult, error) {
	return c.zoneWrite(ctx, http.MethodDelete, zone)
}

func (c *Client) zoneWrite(ctx context.Context, method, zone string) (ZoneResult, error) {
	var res ZoneResult
	m, err := c.do(ctx, method, "/v1/zones/"+url.PathEscape(zone)+"/evacuate", nil, nil, "", &res)
	if err == nil && res.Index == 0 {
		res.Index = m.Index
	}
	return res, err
}
