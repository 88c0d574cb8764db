//go:build linux

package netns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rafterlb/rafter/internal/linearize"
	"github.com/rafterlb/rafter/internal/testutil"
)

// The soak's workload: a client of the VIP, clients of the admin API
// recording a history for porcupine, a writer of never-overwritten pools
// whose acknowledgements are checked afterwards, and registered backends
// under leases (rafter register).

// event is one client request and whether it failed; kind says which
// client sent it.
type event struct {
	at   time.Time
	kind string // "vip", "api"
	ok   bool
}

// events collects the requests of every client. Safe for concurrent use.
type events struct {
	mu  sync.Mutex
	evs []event
}

func (e *events) add(at time.Time, kind string, ok bool) {
	e.mu.Lock()
	e.evs = append(e.evs, event{at, kind, ok})
	e.mu.Unlock()
}

func (e *events) all() []event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]event(nil), e.evs...)
}

// vipClient sends GET / to the VIP from the client namespace every
// interval, each on a new connection with a short timeout, until ctx ends
// or max requests were sent.
func vipClient(ctx context.Context, r *Rig, addr string, interval time.Duration, max int, ev *events) {
	c := &http.Client{
		Timeout:   300 * time.Millisecond,
		Transport: &http.Transport{DialContext: r.DialContext, DisableKeepAlives: true},
	}
	url := "http://" + net.JoinHostPort(addr, strconv.Itoa(vipPort)) + "/"
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for range max {
		at := time.Now()
		ok := false
		if req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil); err == nil {
			if resp, err := c.Do(req); err == nil {
				ok = resp.StatusCode == http.StatusOK
				resp.Body.Close()
			}
		}
		if ctx.Err() != nil {
			return
		}
		ev.add(at, "vip", ok)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// apiTimeout bounds one admin API request of the workload.
const apiTimeout = 2 * time.Second

// keyEpoch is how long the linearizability clients use one set of keys
// before moving to fresh ones: it keeps each key's history (and the
// operations of unknown outcome in it, which may take effect at any later
// point) small enough for porcupine, however long the soak runs.
const keyEpoch = 10 * time.Second

// linClient does put / consistent get / compare-and-set on a few keys,
// each through a node picked at random, and records the history.
type linClient struct {
	r     *Rig
	id    int
	rnd   *rand.Rand
	rec   *linearize.Recorder
	ev    *events
	start time.Time
}

func (c *linClient) run(ctx context.Context, every time.Duration, max int) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for seq := range max {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		epoch := int(time.Since(c.start) / keyEpoch)
		key := fmt.Sprintf("lin-%d-%d", epoch, c.rnd.IntN(3))
		value := fmt.Sprintf("c%d-%d", c.id, seq)
		n := c.r.Nodes[c.rnd.IntN(len(c.r.Nodes))]
		switch c.rnd.IntN(3) {
		case 0:
			c.put(n, key, value, "")
		case 1:
			c.get(n, key)
		default:
			if cur, idx, ok := c.get(n, key); ok {
				c.put(n, key, value, fmt.Sprintf("?cas=%d", idx), cur)
			}
		}
	}
}

// put writes key; with a cas query it is a compare-and-set expecting the
// value expect[0].
func (c *linClient) put(n *Node, key, value, query string, expect ...string) {
	in := linearize.Input{Key: key, Kind: linearize.Put, Value: value}
	if query != "" {
		in.Kind, in.Expect = linearize.CAS, expect[0]
	}
	done := c.rec.Begin(c.id, in)
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	at := time.Now()
	resp, err := c.r.API(ctx, n, http.MethodPut, "/v1/pools/"+key+query, poolSpec(value))
	out := writeOutcome(resp, err)
	c.ev.add(at, "api", out.Outcome == linearize.OK || out.Outcome == linearize.Failed)
	done(out)
}

// writeOutcome classifies a write's answer: acknowledged, refused by CAS,
// never sent (connection refused: no effect possible), or unknown.
func writeOutcome(r *testutil.Response, err error) linearize.Output {
	switch {
	case err == nil && r.Status == http.StatusOK:
		return linearize.Output{Outcome: linearize.OK}
	case err == nil && r.Status == http.StatusConflict:
		return linearize.Output{Outcome: linearize.Failed}
	case errors.Is(err, syscall.ECONNREFUSED):
		return linearize.Output{Outcome: linearize.Dropped}
	}
	return linearize.Output{Outcome: linearize.Unknown}
}

func (c *linClient) get(n *Node, key string) (string, uint64, bool) {
	done := c.rec.Begin(c.id, linearize.Input{Key: key, Kind: linearize.Get})
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	at := time.Now()
	resp, err := c.r.API(ctx, n, http.MethodGet, "/v1/pools/"+key+"?consistent", nil)
	switch {
	case err == nil && resp.Status == http.StatusNotFound:
		c.ev.add(at, "api", true)
		done(linearize.Output{Value: ""})
		return "", 0, true
	case err == nil && resp.Status == http.StatusOK:
		v, idx, err := poolValue(resp.Body)
		if err == nil {
			c.ev.add(at, "api", true)
			done(linearize.Output{Value: v})
			return v, idx, true
		}
	}
	// A failed read has no effect on the register: leave it out.
	c.ev.add(at, "api", false)
	done(linearize.Output{Outcome: linearize.Dropped})
	return "", 0, false
}

// poolValue is the value a pool written by poolSpec stands for, and the
// index that last changed it.
func poolValue(body []byte) (string, uint64, error) {
	var obj struct {
		Spec struct {
			Backends []struct {
				Addr string `json:"addr"`
			} `json:"backends"`
		} `json:"spec"`
		ModifyIndex uint64 `json:"modify_index"`
	}
	if err := json.Unmarshal(body, &obj); err != nil {
		return "", 0, err
	}
	if len(obj.Spec.Backends) != 1 {
		return "", 0, fmt.Errorf("pool has %d backends, want 1", len(obj.Spec.Backends))
	}
	return strings.TrimSuffix(obj.Spec.Backends[0].Addr, ".invalid:80"), obj.ModifyIndex, nil
}

// ledger writes pools that are never overwritten or deleted, each through
// a node picked at random, and keeps the names of those acknowledged:
// every one of them must be on every node once the faults are healed.
type ledger struct {
	mu    sync.Mutex
	acked []string
	sent  int
}

func (l *ledger) run(ctx context.Context, r *Rig, rnd *rand.Rand, ev *events, every time.Duration, max int) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for seq := range max {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		name := fmt.Sprintf("ack-%d", seq)
		n := r.Nodes[rnd.IntN(len(r.Nodes))]
		at := time.Now()
		ok, _ := put(r, n, name, apiTimeout)
		ev.add(at, "api", ok)
		l.mu.Lock()
		l.sent++
		if ok {
			l.acked = append(l.acked, name)
		}
		l.mu.Unlock()
	}
}

func (l *ledger) snapshot() (acked []string, sent int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.acked...), l.sent
}

// registrar is one `rafter register` process in the client namespace,
// keeping a backend in a pool under a lease through any node.
type registrar struct {
	addr string
	proc *testutil.Process
}

func startRegistrar(r *Rig, pool, addr string, ttl time.Duration, log string) (*registrar, error) {
	var apis []string
	for _, n := range r.Nodes {
		apis = append(apis, n.URL())
	}
	p, err := testutil.StartProcess(testutil.ProcessSpec{
		Name: "register " + addr, Path: "ip",
		Args: []string{"netns", "exec", r.NS(Client), r.opts.Bin, "register",
			"--pool", pool, "--addr", addr, "--ttl", ttl.String(),
			"--api", strings.Join(apis, ","), "--token", r.opts.Token},
		Log: log,
	})
	if err != nil {
		return nil, err
	}
	return &registrar{addr: addr, proc: p}, nil
}

// poolBackends is the set of backend addresses node n's local copy of
// pool has.
func poolBackends(ctx context.Context, r *Rig, n *Node, pool string) (map[string]bool, error) {
	resp, err := r.API(ctx, n, http.MethodGet, "/v1/pools/"+pool, nil)
	if err != nil {
		return nil, err
	}
	if resp.Status != http.StatusOK {
		return nil, fmt.Errorf("GET pool %s on %s: %d %s", pool, n.Name, resp.Status, resp.Body)
	}
	var obj struct {
		Spec struct {
			Backends []struct {
				Addr string `json:"addr"`
			} `json:"backends"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(resp.Body, &obj); err != nil {
		return nil, err
	}
	got := map[string]bool{}
	for _, b := range obj.Spec.Backends {
		got[b.Addr] = true
	}
	return got, nil
}

// nodeState is what convergence compares: a node's applied index and its
// whole document.
type nodeState struct {
	applied uint64
	config  string
	// assignments: each VIP's holder and token, which the document (specs
	// only) leaves out.
	assignments string
}

func readState(ctx context.Context, r *Rig, n *Node) (nodeState, error) {
	// The applied index read before and after the document: equal, the
	// document is the state at that index. (The export's X-Rafter-Index
	// is the node's index when the answer is sent, which may be past the
	// document's.)
	before, err := appliedIndex(ctx, r, n)
	if err != nil {
		return nodeState{}, err
	}
	cfg, err := r.API(ctx, n, http.MethodGet, "/v1/config?format=json", nil)
	if err != nil {
		return nodeState{}, err
	}
	if cfg.Status != http.StatusOK {
		return nodeState{}, fmt.Errorf("config of %s: %d %s", n.Name, cfg.Status, cfg.Body)
	}
	assignments, err := readAssignments(ctx, r, n)
	if err != nil {
		return nodeState{}, err
	}
	after, err := appliedIndex(ctx, r, n)
	if err != nil {
		return nodeState{}, err
	}
	if before != after {
		return nodeState{}, fmt.Errorf("%s applied %d..%d while its document was read", n.Name, before, after)
	}
	return nodeState{applied: after, config: string(cfg.Body), assignments: assignments}, nil
}

// readAssignments lists the node's own VIP assignments (a local read), one
// "vip holder token settled" line each, in name order.
func readAssignments(ctx context.Context, r *Rig, n *Node) (string, error) {
	list, err := listVIPs(ctx, r, n, "")
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, v := range list {
		if a := v.Assignment; a != nil {
			fmt.Fprintf(&b, "%s %s %d %t\n", v.Name, a.Holder, a.Token, a.Settled)
		} else {
			fmt.Fprintf(&b, "%s unassigned\n", v.Name)
		}
	}
	return b.String(), nil
}

func appliedIndex(ctx context.Context, r *Rig, n *Node) (uint64, error) {
	resp, err := r.API(ctx, n, http.MethodGet, "/v1/status", nil)
	if err != nil {
		return 0, err
	}
	var st struct {
		AppliedIndex uint64 `json:"applied_index"`
	}
	if err := json.Unmarshal(resp.Body, &st); err != nil {
		return 0, fmt.Errorf("status of %s: %w", n.Name, err)
	}
	return st.AppliedIndex, nil
}

// converged reports nil once every node has applied the same index and
// holds the same document and VIP assignments.
func converged(r *Rig) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var first nodeState
	for i, n := range r.Nodes {
		s, err := readState(ctx, r, n)
		if err != nil {
			return err
		}
		if i == 0 {
			first = s
			continue
		}
		if s.applied != first.applied {
			return fmt.Errorf("%s applied index %d, %s %d", r.Nodes[0].Name, first.applied, n.Name, s.applied)
		}
		if s.config != first.config {
			return fmt.Errorf("%s and %s hold different documents at index %d: %s",
				r.Nodes[0].Name, n.Name, s.applied, docDiff(first.config, s.config))
		}
		if s.assignments != first.assignments {
			return fmt.Errorf("%s and %s hold different vip assignments at index %d:\n%s\n%s",
				r.Nodes[0].Name, n.Name, s.applied, first.assignments, s.assignments)
		}
	}
	return nil
}

// docDiff names the first object in which two exported documents differ,
// with both versions, for the report of a divergence.
func docDiff(a, b string) string {
	type obj struct {
		Kind string          `json:"kind"`
		Name string          `json:"name"`
		Spec json.RawMessage `json:"spec"`
	}
	var oa, ob []obj
	if json.Unmarshal([]byte(a), &oa) != nil || json.Unmarshal([]byte(b), &ob) != nil {
		return "(documents do not decode)"
	}
	index := func(os []obj) map[string]string {
		m := map[string]string{}
		for _, o := range os {
			m[o.Kind+"/"+o.Name] = string(o.Spec)
		}
		return m
	}
	ma, mb := index(oa), index(ob)
	cut := func(s string) string {
		if len(s) > 400 {
			return s[:400] + "..."
		}
		return s
	}
	for k, va := range ma {
		if vb, ok := mb[k]; !ok {
			return k + " only in the first"
		} else if va != vb {
			return fmt.Sprintf("%s differs:\n    %s\n    %s", k, cut(va), cut(vb))
		}
	}
	for k := range mb {
		if _, ok := ma[k]; !ok {
			return k + " only in the second"
		}
	}
	return "(same objects, different encoding)"
}
