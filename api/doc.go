// Package api holds the JSON wire types of rafter's admin API (/v1): what
// requests carry and answers hold. The server (cluster/httpapi) and the Go
// client (client/) both use these types, so the two cannot drift apart.
//
// It imports fsm (the resource types an answer embeds) and nothing else
// from rafter.
package api
