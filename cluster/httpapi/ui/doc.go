// Package ui is the dashboard every rafter node serves at /ui/ on its
// admin port: static HTML, CSS and ES modules embedded in the binary, no
// build step and nothing loaded from elsewhere. The page asks for a
// token (kept in the browser's session storage), asks GET /v1/auth what
// that token may do, and follows the cluster through the server-sent
// events of GET /v1/events; the actions it offers to a read-write token
// (evacuate or restore a zone, move a VIP, drain a backend) are ordinary
// admin API writes, each confirmed first.
//
// It imports nothing of rafter: the admin API (cluster/httpapi) mounts
// Handler without authentication, since the files hold no data.
package ui
