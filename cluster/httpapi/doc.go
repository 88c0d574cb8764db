// Package httpapi is the admin HTTP API of a rafter node (/v1): it
// translates HTTP requests into calls on the Store interface it declares
// (implemented by *cluster.Node), authenticates bearer tokens, forwards
// writes that reach a follower to the leader (one hop, with the caller's
// Authorization header), serves blocking and consistent reads, and maps
// every error to a status in one function (errorStatus).
//
// It also gathers the cluster-wide views (GET /v1/health/cluster,
// /v1/status/cluster, /v1/stats/cluster): the asked node sends the request
// to every member's admin API at once, with the caller's credentials and a
// deadline, and puts an error entry in place of a member that did not
// answer. GET /v1/events streams them, with the configuration and its
// History, to the dashboard (package ui, mounted at /ui/ by the caller).
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
