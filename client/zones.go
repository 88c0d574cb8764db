package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/rafterlb/rafter/api"
)

// Zone and ZoneResult are GET /v1/zones's items and what evacuating or
// restoring a zone answers.
type (
	Zone       = api.Zone
	ZoneResult = api.ZoneResult
)

// Zones answers every zone the cluster knows (from members, pool
// backends and zone states), sorted by name.
func (c *Client) Zones(ctx context.Context) ([]Zone, Meta, error) {
	return list[Zone](ctx, c, "/v1/zones")
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
