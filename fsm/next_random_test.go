package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// TestNextNeverModifiesInputRandom: the leader runs Next on its live
// document to validate every write before proposing it, including writes
// that then never commit (a full disk, a lost election). If Next changed
// the document it was given, the leader's state would drift from its
// followers' without a log entry. A seeded mix of the commands the chaos
// soak's load and the leader's controllers send, many of them refused
// (stale compare-and-set, unknown leases, static backends on a leased
// address), must leave every input document as it was.
func TestNextNeverModifiesInputRandom(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	c := Empty()
	index := uint64(0)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var leases []uint64
	refused := 0
	step := func(cmd *Command) {
		t.Helper()
		index++
		before := snapshotBytes(t, c)
		next, err := Next(c, index, cmd)
		if !bytes.Equal(before, snapshotBytes(t, c)) {
			t.Fatalf("step %d: Next(%s) changed its input (err %v)", index, cmd.Type, err)
		}
		if err != nil {
			refused++
			return
		}
		c = next
	}
	put := func(kind Kind, name, spec string, cas *uint64) *Command {
		return PutCommand(Object{Kind: kind, Name: name, Spec: json.RawMessage(spec)}, cas)
	}
	step(put(KindListener, "web", `{"port": 8080}`, nil))
	step(put(KindRoute, "ok", `{"listener": "web", "action": {"respond": {"status": 200, "body": "ok"}}}`, nil))
	step(put(KindPool, "reg", `{}`, nil))
	step(NewCommand(&NodeUpsert{Node: &Node{ID: "n1", Zone: "a", RaftAddr: "10.0.0.1:7701", AdminAddr: "10.0.0.1:7700"}}))
	step(NewCommand(&NodeUpsert{Node: &Node{ID: "n2", Zone: "b", RaftAddr: "10.0.0.2:7701", AdminAddr: "10.0.0.2:7700"}}))
	step(put(KindVIP, "vip0", `{"provider": "linux", "address": "10.99.0.200/24", "home_node": "n1", "candidates": ["n1", "n2"]}`, nil))
	pools := []string{"reg", "p0", "p1"}
	for range 400 {
		now = now.Add(time.Second)
		switch rnd.IntN(8) {
		case 0:
			step(NewCommand(&LeaseGrant{TTL: Duration(10 * time.Second), Time: now}))
			leases = append(leases, index)
		case 1:
			if len(leases) > 0 {
				step(NewCommand(&BackendRegister{Pool: pools[rnd.IntN(len(pools))],
					Backend: &Backend{Addr: fmt.Sprintf("10.99.0.%d:80", 150+rnd.IntN(4)), Zone: "a", Lease: leases[rnd.IntN(len(leases))]}}))
			}
		case 2:
			if len(leases) > 0 {
				id := leases[rnd.IntN(len(leases))]
				if rnd.IntN(2) == 0 {
					step(NewCommand(&LeaseExpire{IDs: []uint64{id}, Time: now}))
				} else {
					step(NewCommand(&LeaseRevoke{ID: id, Drain: rnd.IntN(2) == 0, Time: now}))
				}
			}
		case 3, 4:
			name := pools[rnd.IntN(len(pools))]
			var cas *uint64
			if rnd.IntN(2) == 0 {
				v := uint64(rnd.IntN(int(index) + 1))
				if o, ok := c.Get(KindPool, name); ok && rnd.IntN(2) == 0 {
					v = o.ModifyIndex
				}
				cas = &v
			}
			spec := fmt.Sprintf(`{"backends": [{"addr": "10.1.0.%d:80"}]}`, rnd.IntN(5))
			if rnd.IntN(3) == 0 {
				spec = fmt.Sprintf(`{"backends": [{"addr": "10.99.0.%d:80"}]}`, 150+rnd.IntN(4))
			}
			step(put(KindPool, name, spec, cas))
		case 5:
			var cas *uint64
			if a, ok := c.Assignments["vip0"]; ok && rnd.IntN(2) == 0 {
				v := a.Token
				cas = &v
			}
			step(NewCommand(&Assign{Assignment: &Assignment{VIP: "vip0", Holder: []string{"n1", "n2"}[rnd.IntN(2)], Reason: "test"}, CAS: cas, Time: now}))
		case 6:
			if a, ok := c.Assignments["vip0"]; ok {
				settled := *a
				step(NewCommand(&Settle{Assignment: &settled}))
			}
		case 7:
			step(DeleteCommand(KindPool, pools[1+rnd.IntN(len(pools)-1)], nil))
		}
	}
	if refused == 0 || refused == int(index) {
		t.Fatalf("%d of %d commands refused: the mix must have both kinds", refused, index)
	}
}
