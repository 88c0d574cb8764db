package client

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/fsm"
)

// Certificates answers every certificate with its view (source, domains,
// validity, listeners), sorted by name. No answer holds a private key.
func (c *Client) Certificates(ctx context.Context) ([]api.Item, Meta, error) {
	return list[api.Item](ctx, c, "/v1/"+KindPath(fsm.KindCertificate))
}

// Certificate answers one certificate with its view.
func (c *Client) Certificate(ctx context.Context, name string) (api.Item, Meta, error) {
	var it api.Item
	m, err := c.do(ctx, http.MethodGet, objPath(fsm.KindCertificate, name), nil, nil, "", &it)
	return it, m, err
}

// PutCertificate stores a PEM chain (leaf first) and its PEM private key
// as certificate name; the node that takes the write seals the key with
// the cluster's secrets key. cas as for Put.
func (c *Client) PutCertificate(ctx context.Context, name, certPEM, keyPEM string, cas *uint64) (uint64, error) {
	spec, err := json.Marshal(fsm.CertificateSpec{Cert: certPEM, Key: keyPEM})
	if err != nil {
		return 0, err
	}
	return c.Put(ctx, fsm.KindCertificate, name, spec, cas)
}
