package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/fsm"
)

// Lease answers a grant (with Index) or a keepalive; BackendRegistration
// is the body of PUT /v1/pools/{pool}/backends/{addr}.
type (
	Lease               = api.Lease
	BackendRegistration = api.BackendRegistration
)

// GrantLease grants a lease of ttl (POST /v1/leases); any node forwards it
// to the leader.
func (c *Client) GrantLease(ctx context.Context, ttl time.Duration) (Lease, error) {
	b, err := json.Marshal(api.LeaseGrant{TTL: fsm.Duration(ttl)})
	if err != nil {
		return Lease{}, fmt.Errorf("client: %w", err)
	}
	var l Lease
	_, err = c.do(ctx, http.MethodPost, "/v1/leases", nil, b, "application/json", &l)
	return l, err
}

// KeepAliveLease renews lease id for its full TTL
// (PUT /v1/leases/{id}/keepalive). A lease that expired or was revoked
// gives an *APIError with status 404.
func (c *Client) KeepAliveLease(ctx context.Context, id uint64) (Lease, error) {
	var l Lease
	_, err := c.do(ctx, http.MethodPut, leasePath(id)+"/keepalive", nil, nil, "", &l)
	return l, err
}

// RevokeLease ends lease id (DELETE /v1/leases/{id}); its backends drain,
// then leave their pools.
func (c *Client) RevokeLease(ctx context.Context, id uint64) (uint64, error) {
	return c.write(ctx, http.MethodDelete, leasePath(id), nil, nil)
}

// RegisterBackend adds addr to pool, attached to reg.Lease
// (PUT /v1/pools/{pool}/backends/{addr}).
func (c *Client) RegisterBackend(ctx context.Context, pool, addr string, reg BackendRegistration) (uint64, error) {
	b, err := json.Marshal(reg)
	if err != nil {
		return 0, fmt.Errorf("client: %w", err)
	}
	return c.write(ctx, http.MethodPut, backendPath(pool, addr), nil, b)
}

// DeregisterBackend removes the lease-attached backend addr from pool at
// once (DELETE /v1/pools/{pool}/backends/{addr}); lease, when not 0, must
// be the lease that holds it.
func (c *Client) DeregisterBackend(ctx context.Context, pool, addr string, lease uint64) (uint64, error) {
	var body []byte
	if lease != 0 {
		body = []byte(`{"lease":` + strconv.FormatUint(lease, 10) + `}`)
	}
	return c.write(ctx, http.MethodDelete, backendPath(pool, addr), nil, body)
}

func leasePath(id uint64) string { return "/v1/leases/" + strconv.FormatUint(id, 10) }

func backendPath(pool, addr string) string {
	return objPath(fsm.KindPool, pool) + "/backends/" + url.PathEscape(addr)
}
