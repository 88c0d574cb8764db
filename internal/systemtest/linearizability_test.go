package systemtest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafterlb/rafter/internal/linearize"
)

// TestLinearizableUnderLeaderLoss runs concurrent clients, each bound to a
// different node, doing put / consistent get / compare-and-set on a few
// keys while the leader is killed and restarted, and checks the history
// with porcupine.
func TestLinearizableUnderLeaderLoss(t *testing.T) {
	c := StartCluster(t, bin, 3)
	leader := c.Leader(30 * time.Second)
	rec := linearize.NewRecorder()
	keys := []string{"lin-0", "lin-1", "lin-2"}

	ctx, cancel := context.WithTimeout(context.Background(), 16*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i, a := range c.Agents {
		wg.Add(1)
		go func(client int, a *Agent) {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(client), 42))
			for seq := 0; seq < 3000 && ctx.Err() == nil; seq++ {
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

	time.Sleep(4 * time.Second) // let history build up before the fault
	c.Kill(leader)
	time.Sleep(4 * time.Second)
	c.Start(leader)
	wg.Wait()

	ops := rec.Operations()
	t.Logf("%d operations recorded", len(ops))
	if len(ops) < 50 {
		t.Fatalf("only %d operations completed; the cluster did not serve", len(ops))
	}
	if err := linearize.Check(ops, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
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
	if err == nil && r.Status == 200 {
		done(linearize.Output{Outcome: linearize.OK})
		return
	}
	done(linearize.Output{Outcome: linearize.Unknown})
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
			done(linearize.Output{Outcome: linearize.Unknown})
			return "", 0, false
		}
		done(linearize.Output{Value: v})
		return v, idx, true
	}
	done(linearize.Output{Outcome: linearize.Unknown})
	return "", 0, false
}

func (c *Cluster) linCAS(rec *linearize.Recorder, client int, a *Agent, key, expect string, idx uint64, value string) {
	done := rec.Begin(client, linearize.Input{Key: key, Kind: linearize.CAS, Expect: expect, Value: value})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	r, err := c.Do(ctx, a, "PUT", fmt.Sprintf("/v1/pools/%s?cas=%d", key, idx), poolSpec(value))
	switch {
	case err == nil && r.Status == 200:
		done(linearize.Output{Outcome: linearize.OK})
	case err == nil && r.Status == 409:
		done(linearize.Output{Outcome: linearize.Failed})
	default:
		done(linearize.Output{Outcome: linearize.Unknown})
	}
}
