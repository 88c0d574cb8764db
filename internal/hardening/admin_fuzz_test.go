package hardening

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/cluster/clustertest"
	"github.com/rafterlb/rafter/cluster/httpapi"
	"github.com/rafterlb/rafter/fsm"
)

// Bounds of TestAdminInputFuzz: it stops after adminFuzzOps operations or
// adminFuzzBudget, whichever comes first, but not before it has had
// adminFuzzMinAccepted accepted and as many refused writes (on a machine
// slowed by other work), and never later than adminFuzzHardLimit.
const (
	adminFuzzOps         = 400
	adminFuzzBudget      = 4 * time.Second
	adminFuzzMinAccepted = 10
	adminFuzzHardLimit   = 60 * time.Second
)

// inmemForward is the admin API's forwarding client for an in-memory
// cluster: it serves a request with the handler of the node whose admin
// address the request names, without a network.
type inmemForward map[string]http.Handler

func (f inmemForward) RoundTrip(req *http.Request) (*http.Response, error) {
	h, ok := f[req.URL.Host]
	if !ok {
		return nil, fmt.Errorf("no node has admin address %s", req.URL.Host)
	}
	in := req.Clone(req.Context())
	in.RequestURI = req.URL.RequestURI()
	in.Host = req.URL.Host
	if in.Body == nil {
		in.Body = http.NoBody
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, in)
	return rec.Result(), nil
}

// TestAdminInputFuzz sends random, partly malformed specs (JSON mutations
// of valid ones: huge and negative numbers, deep nesting, long strings,
// costly regexes, truncated bytes) as puts, deletes and manifest applies
// to the admin API of every node of a 3-node in-memory cluster, each
// node with a data plane following its configuration. No request may
// answer 500 and no node may panic; afterwards every node agrees on one
// document at one index, and each data plane serves it without having
// skipped any object. RAFTER_FUZZ_SEED replays a run.
func TestAdminInputFuzz(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("RAFTER_FUZZ_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("RAFTER_FUZZ_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d (RAFTER_FUZZ_SEED=%d replays this run)", seed, seed)
	m := &mutator{r: rand.New(rand.NewPCG(seed, seed>>1|1))}

	c, byID, planes := startAdminCluster(t)
	ids := c.IDs()

	// The objects routes refer to, so that mutated routes have something
	// to be valid against.
	for _, put := range []struct{ path, body string }{
		{"/v1/listeners/web", `{"port":8080}`},
		{"/v1/pools/app", `{"backends":[{"addr":"10.0.0.1:80"}]}`},
		{"/v1/pools/other", `{}`},
	} {
		if code, body := serve(byID[ids[0]], "PUT", put.path, []byte(put.body)); code != http.StatusOK {
			t.Fatalf("PUT %s: %d %s", put.path, code, body)
		}
	}

	statuses := map[int]int{}
	start := time.Now()
	ops := 0
	enough := func() bool {
		return statuses[http.StatusOK] >= adminFuzzMinAccepted && statuses[http.StatusBadRequest] >= adminFuzzMinAccepted
	}
	for ; ops < adminFuzzOps && time.Since(start) < adminFuzzHardLimit && (time.Since(start) < adminFuzzBudget || !enough()); ops++ {
		method, target, body := m.op()
		id := ids[m.pick(len(ids))]
		opStart := time.Now()
		code, answer := serve(byID[id], method, target, body)
		if d := time.Since(opStart); d > 300*time.Millisecond {
			t.Logf("SLOW %v %s %s %d %d bytes: %.200s", d, method, target, code, len(body), answer)
		}
		statuses[code]++
		switch code {
		case http.StatusOK, http.StatusBadRequest, http.StatusNotFound, http.StatusConflict,
			http.StatusRequestEntityTooLarge:
		case http.StatusTemporaryRedirect, http.StatusMovedPermanently:
			// net/http's mux redirects a path it cleans ("/v1/routes/..").
		case http.StatusServiceUnavailable:
			// No leader for a moment: the cluster is slow under -race, not broken.
		default:
			t.Errorf("%s %s at %s answered %d: %s\nbody: %.512s", method, target, id, code, answer, body)
		}
	}
	t.Logf("%d operations in %v; statuses %v", ops, time.Since(start).Round(time.Millisecond), statuses)
	if !enough() {
		t.Errorf("too few accepted (%d) or refused (%d) writes for the run to mean anything", statuses[http.StatusOK], statuses[http.StatusBadRequest])
	}

	// Every node is alive and applies a last write.
	idx := c.Apply(t, fsm.NewCommand(&fsm.ZoneChange{Zone: &fsm.ZoneState{Zone: "fuzz-done", Evacuated: true}}))
	c.WaitForIndex(t, idx)
	// Every node holds the same document at the same index.
	var docs map[string][]byte
	var index uint64
	poll(t, "every node at the same document", func() bool {
		docs = map[string][]byte{}
		index = 0
		for _, id := range ids {
			n := c.Node(id)
			cfg := n.Config()
			if index == 0 {
				index = cfg.Index
			}
			if cfg.Index != index {
				return false
			}
			var b bytes.Buffer
			if err := fsm.WriteSnapshot(&b, cfg); err != nil {
				t.Fatalf("%s: snapshot: %v", id, err)
			}
			docs[id] = b.Bytes()
		}
		for _, id := range ids[1:] {
			if !bytes.Equal(docs[id], docs[ids[0]]) {
				return false
			}
		}
		return true
	})
	cfg := c.Node(ids[0]).Config()
	t.Logf("index %d: %d listeners, %d routes, %d pools, %d vips", cfg.Index, len(cfg.Listeners), len(cfg.Routes), len(cfg.Pools), len(cfg.VIPs))
	// Every node's data plane compiled it without skipping anything, and
	// serves every listener.
	for _, id := range sortedIDs(planes) {
		p := planes[id]
		p.waitIndex(t, index)
		p.check(t, c.Node(id).Config())
	}
	// The admin API still answers on every node.
	for _, id := range ids {
		if code, body := serve(byID[id], "GET", "/v1/status", nil); code != http.StatusOK {
			t.Errorf("%s: GET /v1/status: %d %s", id, code, body)
		}
	}
}

// startAdminCluster starts a 3-node in-memory cluster with the admin API
// of every node (forwarding to the leader in memory) and a data plane
// following every node's configuration.
func startAdminCluster(t *testing.T) (*clustertest.Cluster, map[string]http.Handler, map[string]*servingPlane) {
	t.Helper()
	c := clustertest.NewCluster(t, 3)
	c.Leader(t)
	handlers := inmemForward{}
	byID := map[string]http.Handler{}
	planes := map[string]*servingPlane{}
	for _, id := range c.IDs() {
		n := c.Node(id)
		cfg := httpapi.DefaultConfig()
		cfg.Store = n
		cfg.NodeID = id
		cfg.ForwardClient = &http.Client{Transport: handlers}
		cfg.Logger = slog.New(slog.DiscardHandler)
		h, err := httpapi.New(cfg)
		if err != nil {
			t.Fatalf("httpapi.New: %v", err)
		}
		handlers[n.PeerInfo().AdminAddr] = h
		byID[id] = h
		planes[id] = startPlane(t, nodeSource{n})
	}
	return c, byID, planes
}

// TestAdminRefusesWithField: the inputs of issue 10 answer 400 naming the
// field, from a follower as from the leader, and change nothing.
func TestAdminRefusesWithField(t *testing.T) {
	c, byID, _ := startAdminCluster(t)
	leader := c.Leader(t)
	var follower string
	for _, id := range c.IDs() {
		if id != c.ID(leader) {
			follower = id
		}
	}
	admin := leader.Config().Nodes[c.ID(leader)].AdminAddr
	_, adminPort, _ := strings.Cut(admin, ":")
	regex, _ := json.Marshal(strings.Repeat(`\pL{1,1000}`, 372))
	tests := []struct {
		name, path, body, field, msg string
	}{
		{"max_header_bytes", "/v1/listeners/x", `{"port":8081,"limits":{"max_header_bytes":4611686018427387904}}`,
			"spec.limits.max_header_bytes", "at most 1048576"},
		{"admin port", "/v1/listeners/x", `{"port":` + adminPort + `}`,
			"spec.port", adminPort + " is node " + c.ID(leader) + "'s admin port"},
		{"regex", "/v1/routes/x", `{"listener":"web","match":{"path":{"regex":` + string(regex) + `}},"action":{"respond":{"status":200}}}`,
			"spec.match.path.regex", "at most 1024"},
		{"regex program", "/v1/routes/x", `{"listener":"web","match":{"path":{"regex":"(?:[a-z]{1,100}){1,10}"}},"action":{"respond":{"status":200}}}`,
			"spec.match.path.regex", "instructions, at most 1000"},
	}
	if code, body := serve(byID[c.ID(leader)], "PUT", "/v1/listeners/web", []byte(`{"port":8080}`)); code != http.StatusOK {
		t.Fatalf("PUT listener web: %d %s", code, body)
	}
	before := leader.Config().Index
	for _, tt := range tests {
		for _, id := range []string{c.ID(leader), follower} {
			t.Run(tt.name+"@"+id, func(t *testing.T) {
				code, body := serve(byID[id], "PUT", tt.path, []byte(tt.body))
				var eb api.ErrorBody
				if err := json.Unmarshal([]byte(body), &eb); err != nil || code != http.StatusBadRequest {
					t.Fatalf("answered %d %s, want 400", code, body)
				}
				if eb.Error.Field != tt.field || !strings.Contains(eb.Error.Message, tt.msg) {
					t.Fatalf("error %+v, want field %s and a message with %q", eb.Error, tt.field, tt.msg)
				}
			})
		}
	}
	if got := leader.Config().Index; got != before {
		t.Fatalf("refused writes moved the index from %d to %d", before, got)
	}
}

// serve sends one request to an admin API handler.
func serve(h http.Handler, method, target string, body []byte) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func sortedIDs(m map[string]*servingPlane) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// nodeSource serves a node's configuration as a dataplane.ConfigSource, as
// the agent's watch loop does.
type nodeSource struct{ n *cluster.Node }

func (s nodeSource) Snapshot() *fsm.Config    { return s.n.Config() }
func (s nodeSource) Changed() <-chan struct{} { return s.n.Changed() }
