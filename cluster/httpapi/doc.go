// Package httpapi is the admin HTTP API of a rafter node (/v1): it
// translates HTTP requests into calls on the Store interface it declares
// (implemented by *cluster.Node), authenticates bearer tokens, forwards
// writes that reach a follower to the leader (one hop, with the caller's
// Authorization header), serves blocking and consistent reads, and maps
// every error to a status in one function (errorStatus).
//
// It owns the wire format of the API; its OpenAPI 3 description is
// openapi.json, served at GET /v1/openapi.json and checked against the
// registered routes by the package's tests.
//
// It imports api, fsm, cluster/probe, internal/conf, and cluster for its
// types and sentinel errors only. It
// must not import dataplane, hashicorp/raft or any cloud SDK: it never
// touches Raft itself, everything goes through Store.
package httpapi
