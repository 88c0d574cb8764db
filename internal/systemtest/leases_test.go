package systemtest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafterlb/rafter/internal/testutil"
)

// owner is one self-registered backend: its lease and whether its
// keepalives still run.
type owner struct {
	addr    string
	lease   uint64
	stopped atomic.Bool
}

// commitIndex reads the Raft commit index a node reports.
func (c *Cluster) commitIndex(a *Agent) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := c.Do(ctx, a, "GET", "/v1/status", nil)
	if err != nil {
		return 0, err
	}
	var st struct {
		CommitIndex uint64 `json:"commit_index"`
	}
	if err := json.Unmarshal(r.Body, &st); err != nil {
		return 0, err
	}
	return st.CommitIndex, nil
}

// poolAddrs is the set of backend addresses a node's local copy of pool has.
func (c *Cluster) poolAddrs(a *Agent, pool string) (map[string]bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := c.Do(ctx, a, "GET", "/v1/pools/"+pool, nil)
	if err != nil {
		return nil, err
	}
	if r.Status != 200 {
		return nil, fmt.Errorf("GET pool %s on %s: %d %s", pool, a.ID, r.Status, r.Body)
	}
	var obj struct {
		Spec struct {
			Backends []struct {
				Addr string `json:"addr"`
			} `json:"backends"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(r.Body, &obj); err != nil {
		return nil, err
	}
	m := map[string]bool{}
	for _, b := range obj.Spec.Backends {
		m[b.Addr] = true
	}
	return m, nil
}

// TestRegisteredBackendsThroughEveryNode registers 500 backends with TTL
// leases by concurrent clients spread over the three nodes, then shows that
// keepalives write nothing to Raft, that backends whose keepalives stop
// leave within TTL plus a check interval, and that killing the leader
// expires no lease whose owner kept sending keepalives.
func TestRegisteredBackendsThroughEveryNode(t *testing.T) {
	c := StartCluster(t, bin, 3)
	leader := c.Leader(30 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	if r, err := c.Do(ctx, leader, "PUT", "/v1/pools/reg", []byte(`{}`)); err != nil || r.Status != 200 {
		t.Fatalf("creating pool: %v %+v", err, r)
	}

	const n, ttl = 500, 6 * time.Second
	owners := make([]*owner, n)
	for i := range owners {
		owners[i] = &owner{addr: fmt.Sprintf("127.1.%d.%d:80", i/250, i%250+1)}
	}
	// call sends one request through the nodes in turn, starting at
	// start, until one answers 200 or the try budget is spent.
	var dead atomic.Pointer[Agent]
	call := func(start int, method, path string, body []byte) ([]byte, bool) {
		for try := 0; try < 12 && ctx.Err() == nil; try++ {
			a := c.Agents[(start+try)%len(c.Agents)]
			if a == dead.Load() {
				continue
			}
			rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
			r, err := c.Do(rctx, a, method, path, body)
			rcancel()
			if err == nil && r.Status == 200 {
				return r.Body, true
			}
			time.Sleep(50 * time.Millisecond)
		}
		return nil, false
	}

	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := 0; w < 25; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 25 {
				o := owners[i]
				body, ok := call(i, "POST", "/v1/leases", []byte(fmt.Sprintf(`{"ttl":"%s"}`, ttl)))
				var grant struct {
					ID uint64 `json:"id"`
				}
				if !ok || json.Unmarshal(body, &grant) != nil || grant.ID == 0 {
					failed.Add(1)
					continue
				}
				o.lease = grant.ID
				reg := []byte(fmt.Sprintf(`{"lease":%d,"zone":"%c"}`, o.lease, 'a'+i%3))
				if _, ok := call(i+1, "PUT", "/v1/pools/reg/backends/"+o.addr, reg); !ok {
					failed.Add(1)
				}
			}
		}(w)
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d registrations failed", f, n)
	}
	want := func(keep func(*owner) bool) func() error {
		return func() error {
			for _, a := range c.Agents {
				if a == dead.Load() {
					continue
				}
				got, err := c.poolAddrs(a, "reg")
				if err != nil {
					return err
				}
				for _, o := range owners {
					if got[o.addr] != keep(o) {
						return fmt.Errorf("%s: %s present=%v, want %v (%d backends)", a.ID, o.addr, got[o.addr], keep(o), len(got))
					}
				}
			}
			return nil
		}
	}
	testutil.Eventually(t, 30*time.Second, "500 backends on every node", want(func(*owner) bool { return true }))

	// Keepalives at TTL/3 from 25 workers, each owner through its own node.
	kaCtx, kaStop := context.WithCancel(ctx)
	defer kaStop()
	var kaErrors atomic.Int64
	var kaWG sync.WaitGroup
	for w := 0; w < 25; w++ {
		kaWG.Add(1)
		go func(w int) {
			defer kaWG.Done()
			tick := time.NewTicker(ttl / 3)
			defer tick.Stop()
			for round := 0; round < 100; round++ {
				for i := w; i < n; i += 25 {
					if o := owners[i]; !o.stopped.Load() {
						if _, ok := call(i+round, "PUT", fmt.Sprintf("/v1/leases/%d/keepalive", o.lease), nil); !ok {
							kaErrors.Add(1)
						}
					}
				}
				select {
				case <-kaCtx.Done():
					return
				case <-tick.C:
				}
			}
		}(w)
	}

	before, err := c.commitIndex(leader)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl + ttl/2) // the window under test: keepalives for one and a half TTLs
	after, err := c.commitIndex(leader)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Fatalf("keepalives wrote to Raft: commit index %d -> %d", before, after)
	}

	// The first 100 owners stop; they must leave, the others stay.
	for _, o := range owners[:100] {
		o.stopped.Store(true)
	}
	stoppedAt := time.Now()
	testutil.Eventually(t, 3*ttl, "the 100 stopped backends to leave", want(func(o *owner) bool { return !o.stopped.Load() }))
	t.Logf("stopped backends left %s after their keepalives stopped (TTL %s)", time.Since(stoppedAt).Round(10*time.Millisecond), ttl)

	// Kill the leader: every lease still kept alive survives the change.
	c.Kill(leader)
	dead.Store(leader)
	c.Leader(30 * time.Second)
	time.Sleep(2 * ttl) // the window under test: two TTLs under the new leader
	if err := want(func(o *owner) bool { return !o.stopped.Load() })(); err != nil {
		t.Fatalf("after the leader was killed: %v", err)
	}
	kaStop()
	kaWG.Wait()
	t.Logf("%d keepalive calls failed over the run (retried on the next node or round)", kaErrors.Load())
}
