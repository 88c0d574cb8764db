package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/fsm"
)

// DefaultAddr is the admin API a client talks to when none is given.
const DefaultAddr = "http://127.0.0.1:7700"

// maxResponse bounds what the client reads from one answer.
const maxResponse = 64 << 20

// MaxSnapshotBytes bounds a snapshot Snapshot reads; it matches the
// server's default limit for POST /v1/restore, so whatever is saved can
// be restored.
const MaxSnapshotBytes = 256 << 20

// ContentTypeSnapshot is the media type of snapshots on the wire.
const ContentTypeSnapshot = "application/octet-stream"

// ErrTooLarge: an answer exceeded what the client reads.
var ErrTooLarge = errors.New("answer too large")

// Client calls one node's admin API. Writes sent to a follower are
// forwarded by that node, so any node will do. A Client is safe for
// concurrent use.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// New returns a client of the API at addr ("http://host:port",
// "https://host:port" or a bare "host:port", taken as http unless tlsConf
// is set). token, when not empty, is sent as a bearer token; tlsConf
// configures HTTPS (CA, client certificate).
func New(addr, token string, tlsConf *tls.Config) *Client {
	if addr == "" {
		addr = DefaultAddr
	}
	if !strings.Contains(addr, "://") {
		if tlsConf != nil {
			addr = "https://" + addr
		} else {
			addr = "http://" + addr
		}
	}
	u, err := url.Parse(addr)
	if err != nil {
		// Surface the bad address on the first call rather than panicking.
		u = &url.URL{Scheme: "invalid", Host: addr}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConf
	tr.Proxy = nil
	return &Client{
		base:  u,
		token: token,
		http:  &http.Client{Transport: tr},
	}
}

// Addr is the base address the client talks to.
func (c *Client) Addr() string { return c.base.String() }

// APIError is an error answered by the API, decoded from
// {"error": {"code", "message", "field"}}.
type APIError struct {
	Status     int    // HTTP status
	Code       string // e.g. "invalid", "not_found", "conflict", "no_leader"
	Message    string
	Field      string        // offending field path for validation errors
	RetryAfter time.Duration // from Retry-After on 503
}

// Error reads as one line: "400 invalid: spec.port: must be 1..65535".
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(e.Status))
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	msg := e.Message
	if e.Field != "" && !strings.HasPrefix(msg, e.Field) {
		msg = e.Field + ": " + msg
	}
	if msg != "" {
		b.WriteString(": " + msg)
	}
	return b.String()
}

// IsStatus reports whether err is an *APIError with the given status.
func IsStatus(err error, status int) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == status
}

// Meta is what every answer carries in its headers.
type Meta struct {
	Index  uint64 // X-Rafter-Index: the state index the answer reflects
	Leader string // X-Rafter-Leader
}

// The wire types of the API, as the client answers them.
type (
	Status   = api.Status
	Member   = api.Member
	PeerInfo = api.PeerInfo
)

// ApplyResult is the answer of POST /v1/apply (or /v1/restore), and
// whether it was a dry run.
type ApplyResult struct {
	api.ApplyResult
	DryRun bool
}

// KindPath is the collection path segment of a kind: "route" -> "routes".
func KindPath(k fsm.Kind) string { return string(k) + "s" }

// Status answers GET /v1/status of the node the client talks to.
func (c *Client) Status(ctx context.Context) (Status, Meta, error) {
	var st Status
	m, err := c.do(ctx, http.MethodGet, "/v1/status", nil, nil, "", &st)
	return st, m, err
}

// Get answers one object. A missing object is an *APIError with Status 404.
func (c *Client) Get(ctx context.Context, kind fsm.Kind, name string) (fsm.Object, Meta, error) {
	var obj fsm.Object
	m, err := c.do(ctx, http.MethodGet, objPath(kind, name), nil, nil, "", &obj)
	return obj, m, err
}

// List answers every object of a kind, sorted by name, and the index of
// the state they were read from.
func (c *Client) List(ctx context.Context, kind fsm.Kind) ([]fsm.Object, Meta, error) {
	return list[fsm.Object](ctx, c, "/v1/"+KindPath(kind))
}

// list answers the items of a list endpoint (GET path), with the index of
// the state they were read from.
func list[T any](ctx context.Context, c *Client, path string) ([]T, Meta, error) {
	var out struct {
		Items []T    `json:"items"`
		Index uint64 `json:"index"`
	}
	m, err := c.do(ctx, http.MethodGet, path, nil, nil, "", &out)
	if err == nil && m.Index == 0 {
		m.Index = out.Index
	}
	return out.Items, m, err
}

// Put creates or replaces an object from its spec (json.RawMessage, []byte
// of JSON, or any value marshalled to JSON). cas, when not nil, makes the
// write conditional on the object's modify_index (0: must not exist); a
// mismatch is an *APIError with Status 409. It returns the Raft index of
// the write.
func (c *Client) Put(ctx context.Context, kind fsm.Kind, name string, spec any, cas *uint64) (uint64, error) {
	var body []byte
	switch s := spec.(type) {
	case json.RawMessage:
		body = s
	case []byte:
		body = s
	default:
		b, err := json.Marshal(spec)
		if err != nil {
			return 0, fmt.Errorf("client: encode spec: %w", err)
		}
		body = b
	}
	return c.write(ctx, http.MethodPut, objPath(kind, name), casQuery(cas), body)
}

// Delete removes an object, conditionally when cas is not nil, and returns
// the Raft index of the write.
func (c *Client) Delete(ctx context.Context, kind fsm.Kind, name string, cas *uint64) (uint64, error) {
	return c.write(ctx, http.MethodDelete, objPath(kind, name), casQuery(cas), nil)
}

// Apply sends a manifest (YAML or JSON, as `rafter apply -f` reads it) to
// be applied as one Raft entry, all or nothing. With dryRun nothing is
// written and the result lists what would change.
func (c *Client) Apply(ctx context.Context, manifest []byte, dryRun bool) (ApplyResult, error) {
	var q url.Values
	if dryRun {
		q = url.Values{"dry_run": {"true"}}
	}
	ct := "application/yaml"
	if t := bytes.TrimSpace(manifest); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		ct = "application/json"
	}
	var res ApplyResult
	m, err := c.do(ctx, http.MethodPost, "/v1/apply", q, manifest, ct, &res.ApplyResult)
	if err == nil && res.Index == 0 && !dryRun {
		res.Index = m.Index
	}
	res.DryRun = dryRun
	return res, err
}

// Config answers the whole managed document in the apply format; format is
// "yaml" or "json" ("" lets the server choose).
func (c *Client) Config(ctx context.Context, format string) ([]byte, Meta, error) {
	var q url.Values
	if format != "" {
		q = url.Values{"format": {format}}
	}
	var raw rawBody
	m, err := c.do(ctx, http.MethodGet, "/v1/config", q, nil, "", &raw)
	return raw, m, err
}

// Snapshot answers the whole replicated document in the fsm snapshot
// format (versioned, compressed, checksummed; fsm.ReadSnapshot verifies
// and decodes it). With consistent, the node makes it a linearizable read
// through the leader. The bytes are returned as received: callers that
// keep them should verify them first.
func (c *Client) Snapshot(ctx context.Context, consistent bool) ([]byte, Meta, error) {
	var q url.Values
	if consistent {
		q = url.Values{"consistent": {"true"}}
	}
	var raw rawBody
	m, err := c.send(ctx, http.MethodGet, "/v1/snapshot", call{query: q, accept: ContentTypeSnapshot, limit: MaxSnapshotBytes}, &raw)
	if err != nil {
		return nil, m, err
	}
	return raw, m, nil
}

// Restore replaces the cluster's listeners, routes, pools and VIPs (with
// VIP assignments and zone states) by those of a snapshot, as one Raft
// entry: objects created after the snapshot are deleted; members are
// kept. The server verifies the snapshot before writing anything; a
// corrupt one is an *APIError with Status 400. With dryRun nothing is
// written and the result lists what would change.
func (c *Client) Restore(ctx context.Context, snapshot []byte, dryRun bool) (ApplyResult, error) {
	var q url.Values
	if dryRun {
		q = url.Values{"dry_run": {"true"}}
	}
	if snapshot == nil {
		// Send an empty body rather than none, so the server names the problem.
		snapshot = []byte{}
	}
	var res ApplyResult
	m, err := c.send(ctx, http.MethodPost, "/v1/restore", call{query: q, body: snapshot, contentType: ContentTypeSnapshot}, &res)
	if err == nil && res.Index == 0 && !dryRun {
		res.Index = m.Index
	}
	res.DryRun = dryRun
	return res, err
}

// Join asks the cluster to add a voter (POST /v1/nodes; the leader runs it).
func (c *Client) Join(ctx context.Context, p PeerInfo) error {
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	_, err = c.do(ctx, http.MethodPost, "/v1/nodes", nil, b, "application/json", nil)
	return err
}

// Remove asks the cluster to remove a server (DELETE /v1/nodes/{id}).
func (c *Client) Remove(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/nodes/"+url.PathEscape(id), nil, nil, "", nil)
	return err
}

func objPath(kind fsm.Kind, name string) string {
	return "/v1/" + KindPath(kind) + "/" + url.PathEscape(name)
}

func casQuery(cas *uint64) url.Values {
	if cas == nil {
		return nil
	}
	return url.Values{"cas": {strconv.FormatUint(*cas, 10)}}
}

func (c *Client) write(ctx context.Context, method, path string, q url.Values, body []byte) (uint64, error) {
	var out struct {
		Index uint64 `json:"index"`
	}
	m, err := c.do(ctx, method, path, q, body, "application/json", &out)
	if err != nil {
		return 0, err
	}
	if out.Index == 0 {
		out.Index = m.Index
	}
	return out.Index, nil
}

// rawBody receives an answer as bytes instead of decoding JSON.
type rawBody []byte

// call is one request's parameters beyond method and path.
type call struct {
	query       url.Values
	body        []byte
	contentType string // of body
	accept      string // default application/json
	limit       int64  // largest answer read; default maxResponse
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body []byte, contentType string, out any) (Meta, error) {
	return c.send(ctx, method, path, call{query: q, body: body, contentType: contentType}, out)
}

func (c *Client) send(ctx context.Context, method, path string, cl call, out any) (Meta, error) {
	if cl.accept == "" {
		cl.accept = "application/json"
	}
	if cl.limit <= 0 {
		cl.limit = maxResponse
	}
	if c.base.Scheme != "http" && c.base.Scheme != "https" {
		return Meta{}, fmt.Errorf("client: address %q: want http://host:port or https://host:port", c.base.Host)
	}
	// path is already escaped (names go through url.PathEscape), so the
	// URL is assembled as text rather than through url.URL.Path.
	base := *c.base
	base.RawQuery, base.Fragment = "", ""
	target := strings.TrimSuffix(base.String(), "/") + path
	if cl.query != nil {
		target += "?" + cl.query.Encode()
	}
	var rd io.Reader
	if cl.body != nil {
		rd = bytes.NewReader(cl.body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return Meta{}, fmt.Errorf("client: %w", err)
	}
	if cl.body != nil && cl.contentType != "" {
		req.Header.Set("Content-Type", cl.contentType)
	}
	req.Header.Set("Accept", cl.accept)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return Meta{}, fmt.Errorf("%s %s: %w", method, c.base.Host, err)
	}
	defer resp.Body.Close()
	// One byte past the limit tells an oversized answer from one that
	// is exactly at it, so a cut answer is never taken for a whole one.
	data, err := io.ReadAll(io.LimitReader(resp.Body, cl.limit+1))
	if err != nil {
		return Meta{}, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if int64(len(data)) > cl.limit {
		return Meta{}, fmt.Errorf("%s %s: answer larger than %d bytes: %w", method, path, cl.limit, ErrTooLarge)
	}
	m := Meta{Leader: resp.Header.Get("X-Rafter-Leader")}
	if v := resp.Header.Get("X-Rafter-Index"); v != "" {
		m.Index, _ = strconv.ParseUint(v, 10, 64)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return m, decodeError(resp, data)
	}
	switch o := out.(type) {
	case nil:
	case *rawBody:
		*o = data
	default:
		if len(bytes.TrimSpace(data)) == 0 {
			return m, nil
		}
		if err := json.Unmarshal(data, out); err != nil {
			return m, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return m, nil
}

func decodeError(resp *http.Response, data []byte) error {
	ae := &APIError{Status: resp.StatusCode}
	var env struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Field   string `json:"field"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &env) == nil && env.Error != nil {
		ae.Code, ae.Message, ae.Field = env.Error.Code, env.Error.Message, env.Error.Field
	} else {
		ae.Code = strings.ReplaceAll(strings.ToLower(http.StatusText(resp.StatusCode)), " ", "_")
		msg := strings.TrimSpace(string(data))
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		ae.Message = msg
	}
	if v := resp.Header.Get("Retry-After"); v != "" {
		if s, err := strconv.Atoi(v); err == nil {
			ae.RetryAfter = time.Duration(s) * time.Second
		}
	}
	return ae
}
