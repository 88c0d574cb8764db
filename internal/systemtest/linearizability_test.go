package systemtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/rafterlb/rafter/internal/linearize"
	"github.com/rafterlb/rafter/internal/testutil"
)

// TestLinearizableUnderLeaderLoss runs concurrent clients, each bound to a
// different node, doing put / consistent get / compare-and-set on a few
// keys while the leader is killed and restarted, and checks the history
// with porcupine.
func TestLinearizableUnderLeaderLoss(t *testing.T) {
	c := StartCluster(t, bin, 3)
	leader := c.Leader(30 * time.Second)
	rec := linearize.NewRecorder()
	keys := []string{"lin-0", "lin-1", "lin-2", "lin-3", "lin-4", "lin-5"}

	ctx, cancel := context.WithTimeout(context.Background(), 16*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i, a := range c.Agents {
		wg.Add(1)
		go func(client int, a *Agent) {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(client), 42))
			// Paced so the history stays small enough to check quickly.
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for seq := 0; seq < 3000 && ctx.Err() == nil; seq++ {
				<-tick.C
				key := keys[rnd.IntN(len(keys))]
				value := fmt.Sprintf("c%d-%d", client, seq)
				switch rnd.IntN(3) {
				case 0:
					c.linPut(rec, client, a, key, value)
				case 1:
					c.linGet(rec, client, a, key)
				default:
					if cur, idx, ok := c.linGet(rec, client, a, key); ok {
						c.linCAS(rec, client, a, key, cur, idx, value)
					}
				}
			}
		}(i, a)
	}

	// The history must hold acknowledged operations from before the fault
	// and from under the new leader, so that the check covers both.
	const enough = 100
	waitOps := func(what string, n int) {
		t.Helper()
		testutil.Eventually(t, 10*time.Second, what, func() error {
			if got := acknowledged(rec); got < n {
				return fmt.Errorf("%d acknowledged operations, want %d", got, n)
			}
			return nil
		})
	}
	waitOps("history to build up before the fault", enough)
	c.Kill(leader)
	c.Leader(10 * time.Second)
	waitOps("operations under the new leader", acknowledged(rec)+enough)
	c.Start(leader)
	wg.Wait()

	ops := rec.Operations()
	t.Logf("%d operations recorded", len(ops))
	if len(ops) < 50 {
		t.Fatalf("only %d operations completed; the cluster did not serve", len(ops))
	}
	unknown := 0
	for _, op := range ops {
		if op.Output.(linearize.Output).Outcome == linearize.Unknown {
			unknown++
		}
	}
	checkStart := time.Now()
	if err := linearize.Check(ops, 2*time.Minute); err != nil {
		t.Fatalf("%v (%d operations with unknown outcome)", err, unknown)
	}
	t.Logf("linearizable: %d operations, %d with unknown outcome, checked in %s", len(ops), unknown, time.Since(checkStart))

	// The checker must be able to fail on this history. Take the start of it
	// (everything that returned shortly after some key was overwritten,
	// long before the fault), check that it passes, then plant one stale
	// read of the overwritten value and expect "not linearizable".
	prefix, planted, ok := plantStaleRead(ops)
	if !ok {
		t.Fatal("history has no key written twice; cannot plant a stale read")
	}
	if err := linearize.Check(prefix, time.Minute); err != nil {
		t.Fatalf("prefix of %d operations: %v", len(prefix), err)
	}
	if err := linearize.Check(planted, time.Minute); err == nil {
		t.Fatal("the checker accepted a history with a planted stale read")
	}
}

// acknowledged counts the operations of the history so far whose outcome
// is known.
func acknowledged(rec *linearize.Recorder) int {
	n := 0
	for _, op := range rec.Operations() {
		if op.Output.(linearize.Output).Outcome != linearize.Unknown {
			n++
		}
	}
	return n
}

// plantStaleRead finds the first key whose first acknowledged write was
// replaced by a later acknowledged one, and returns the history of
// everything that completed up to just after the replacement, alone and
// with a read appended that returns the replaced value.
func plantStaleRead(ops []porcupine.Operation) (prefix, planted []porcupine.Operation, ok bool) {
	sorted := append([]porcupine.Operation(nil), ops...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Call < sorted[j].Call })
	first := map[string]porcupine.Operation{}
	for _, op := range sorted {
		in, out := op.Input.(linearize.Input), op.Output.(linearize.Output)
		if in.Kind == linearize.Get || out.Outcome != linearize.OK {
			continue
		}
		f, seen := first[in.Key]
		if !seen {
			first[in.Key] = op
			continue
		}
		if op.Call <= f.Return {
			continue
		}
		cut := op.Return + int64(50*time.Millisecond)
		for _, o := range ops {
			if o.Return <= cut {
				prefix = append(prefix, o)
			}
		}
		stale := porcupine.Operation{ClientId: 99, Call: cut + 1, Return: cut + 2,
			Input:  linearize.Input{Key: in.Key, Kind: linearize.Get},
			Output: linearize.Output{Value: f.Input.(linearize.Input).Value}}
		return prefix, append(append([]porcupine.Operation(nil), prefix...), stale), true
	}
	return nil, nil, false
}

func valueOf(body []byte) (string, uint64, error) {
	var obj struct {
		Spec        json.RawMessage `json:"spec"`
		ModifyIndex uint64          `json:"modify_index"`
	}
	if err := json.Unmarshal(body, &obj); err != nil {
		return "", 0, err
	}
	return strings.TrimSuffix(backendOf(obj.Spec), ".invalid:80"), obj.ModifyIndex, nil
}

func (c *Cluster) linPut(rec *linearize.Recorder, client int, a *Agent, key, value string) {
	done := rec.Begin(client, linearize.Input{Key: key, Kind: linearize.Put, Value: value})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	r, err := c.Do(ctx, a, "PUT", "/v1/pools/"+key, poolSpec(value))
	done(writeOutcome(r, err))
}

// writeOutcome classifies a write's answer: acknowledged, refused by CAS,
// never sent (connection refused: no effect possible), or unknown.
func writeOutcome(r *testutil.Response, err error) linearize.Output {
	switch {
	case err == nil && r.Status == 200:
		return linearize.Output{Outcome: linearize.OK}
	case err == nil && r.Status == 409:
		return linearize.Output{Outcome: linearize.Failed}
	case errors.Is(err, syscall.ECONNREFUSED):
		return linearize.Output{Outcome: linearize.Dropped}
	}
	return linearize.Output{Outcome: linearize.Unknown}
}

func (c *Cluster) linGet(rec *linearize.Recorder, client int, a *Agent, key string) (string, uint64, bool) {
	done := rec.Begin(client, linearize.Input{Key: key, Kind: linearize.Get})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	r, err := c.Do(ctx, a, "GET", "/v1/pools/"+key+"?consistent", nil)
	switch {
	case err == nil && r.Status == 404:
		done(linearize.Output{Value: ""})
		return "", 0, true
	case err == nil && r.Status == 200:
		v, idx, err := valueOf(r.Body)
		if err != nil {
			done(linearize.Output{Outcome: linearize.Dropped})
			return "", 0, false
		}
		done(linearize.Output{Value: v})
		return v, idx, true
	}
	// A failed read has no effect on the register: leave it out.
	done(linearize.Output{Outcome: linearize.Dropped})
	return "", 0, false
}

func (c *Cluster) linCAS(rec *linearize.Recorder, client int, a *Agent, key, expect string, idx uint64, value string) {
	done := rec.Begin(client, linearize.Input{Key: key, Kind: linearize.CAS, Expect: expect, Value: value})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	r, err := c.Do(ctx, a, "PUT", fmt.Sprintf("/v1/pools/%s?cas=%d", key, idx), poolSpec(value))
	done(writeOutcome(r, err))
}
