package linearize

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

func op(client int, call, ret int64, in Input, out Output) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
}

func TestModel(t *testing.T) {
	tests := []struct {
		name string
		ops  []porcupine.Operation
		ok   bool
	}{
		{"sequential put get", []porcupine.Operation{
			op(0, 0, 1, Input{Key: "k", Kind: Put, Value: "a"}, Output{}),
			op(1, 2, 3, Input{Key: "k", Kind: Get}, Output{Value: "a"}),
		}, true},
		{"planted stale read: get after a completed put returns the old value", []porcupine.Operation{
			op(0, 0, 1, Input{Key: "k", Kind: Put, Value: "a"}, Output{}),
			op(0, 2, 3, Input{Key: "k", Kind: Put, Value: "b"}, Output{}),
			op(1, 4, 5, Input{Key: "k", Kind: Get}, Output{Value: "a"}),
		}, false},
		{"concurrent read may see either value", []porcupine.Operation{
			op(0, 0, 1, Input{Key: "k", Kind: Put, Value: "a"}, Output{}),
			op(0, 2, 6, Input{Key: "k", Kind: Put, Value: "b"}, Output{}),
			op(1, 3, 4, Input{Key: "k", Kind: Get}, Output{Value: "a"}),
		}, true},
		{"cas succeeds only on the expected value", []porcupine.Operation{
			op(0, 0, 1, Input{Key: "k", Kind: Put, Value: "a"}, Output{}),
			op(1, 2, 3, Input{Key: "k", Kind: CAS, Expect: "x", Value: "c"}, Output{Outcome: OK}),
		}, false},
		{"cas refused although the value matched", []porcupine.Operation{
			op(0, 0, 1, Input{Key: "k", Kind: Put, Value: "a"}, Output{}),
			op(1, 2, 3, Input{Key: "k", Kind: CAS, Expect: "a", Value: "c"}, Output{Outcome: Failed}),
		}, false},
		{"unknown write may land later", []porcupine.Operation{
			op(0, 0, 1<<62, Input{Key: "k", Kind: Put, Value: "a"}, Output{Outcome: Unknown}),
			op(1, 2, 3, Input{Key: "k", Kind: Get}, Output{Value: ""}),
			op(1, 4, 5, Input{Key: "k", Kind: Get}, Output{Value: "a"}),
		}, true},
		{"unknown write never un-happens", []porcupine.Operation{
			op(0, 0, 1<<62, Input{Key: "k", Kind: Put, Value: "a"}, Output{Outcome: Unknown}),
			op(1, 2, 3, Input{Key: "k", Kind: Get}, Output{Value: "a"}),
			op(1, 4, 5, Input{Key: "k", Kind: Get}, Output{Value: ""}),
		}, false},
		{"unknown write seen, then overwritten, then seen again", []porcupine.Operation{
			op(0, 0, 1<<62, Input{Key: "k", Kind: Put, Value: "a"}, Output{Outcome: Unknown}),
			op(1, 10, 11, Input{Key: "k", Kind: Get}, Output{Value: "a"}),
			op(1, 12, 13, Input{Key: "k", Kind: Put, Value: "b"}, Output{}),
			op(1, 14, 15, Input{Key: "k", Kind: Get}, Output{Value: "a"}),
		}, false},
		{"unknown write seen before it was called", []porcupine.Operation{
			op(1, 0, 1, Input{Key: "k", Kind: Get}, Output{Value: "a"}),
			op(0, 2, 1<<62, Input{Key: "k", Kind: Put, Value: "a"}, Output{Outcome: Unknown}),
		}, false},
		{"unknown write never read explains a refused cas", []porcupine.Operation{
			op(0, 0, 1, Input{Key: "k", Kind: Put, Value: "a"}, Output{}),
			op(2, 2, 1<<62, Input{Key: "k", Kind: Put, Value: "x"}, Output{Outcome: Unknown}),
			op(1, 3, 4, Input{Key: "k", Kind: Get}, Output{Value: "a"}),
			op(1, 5, 6, Input{Key: "k", Kind: CAS, Expect: "a", Value: "c"}, Output{Outcome: Failed}),
			op(0, 7, 8, Input{Key: "k", Kind: Put, Value: "b"}, Output{}),
			op(1, 9, 10, Input{Key: "k", Kind: Get}, Output{Value: "b"}),
		}, true},
		{"two unknown writes never read explain two refused cas", []porcupine.Operation{
			op(0, 0, 1, Input{Key: "k", Kind: Put, Value: "a"}, Output{}),
			op(2, 2, 1<<62, Input{Key: "k", Kind: Put, Value: "x"}, Output{Outcome: Unknown}),
			op(1, 3, 4, Input{Key: "k", Kind: Get}, Output{Value: "a"}),
			op(1, 5, 6, Input{Key: "k", Kind: CAS, Expect: "a", Value: "c"}, Output{Outcome: Failed}),
			op(1, 7, 8, Input{Key: "k", Kind: Put, Value: "a2"}, Output{}),
			op(1, 9, 10, Input{Key: "k", Kind: Get}, Output{Value: "a2"}),
			op(3, 11, 1<<62, Input{Key: "k", Kind: Put, Value: "y"}, Output{Outcome: Unknown}),
			op(1, 12, 13, Input{Key: "k", Kind: CAS, Expect: "a2", Value: "d"}, Output{Outcome: Failed}),
			op(0, 14, 15, Input{Key: "k", Kind: Put, Value: "b"}, Output{}),
			op(1, 16, 17, Input{Key: "k", Kind: Get}, Output{Value: "b"}),
		}, true},
		{"a refused cas no write can explain", []porcupine.Operation{
			op(0, 0, 1, Input{Key: "k", Kind: Put, Value: "a"}, Output{}),
			op(1, 3, 4, Input{Key: "k", Kind: Get}, Output{Value: "a"}),
			op(1, 5, 6, Input{Key: "k", Kind: CAS, Expect: "a", Value: "c"}, Output{Outcome: Failed}),
			op(2, 7, 1<<62, Input{Key: "k", Kind: Put, Value: "x"}, Output{Outcome: Unknown}),
			op(0, 8, 9, Input{Key: "k", Kind: Put, Value: "b"}, Output{}),
			op(1, 10, 11, Input{Key: "k", Kind: Get}, Output{Value: "b"}),
		}, false},
		{"an unknown put never read, not an earlier unknown cas, explains a refused cas", []porcupine.Operation{
			op(1, 0, 1<<62, Input{Key: "k", Kind: CAS, Expect: "z", Value: "a"}, Output{Outcome: Unknown}),
			op(2, 1, 1<<62, Input{Key: "k", Kind: Put, Value: "b"}, Output{Outcome: Unknown}),
			op(3, 2, 3, Input{Key: "k", Kind: CAS, Expect: "", Value: "c"}, Output{Outcome: Failed}),
		}, true},
		{"an unknown cas never read explains a refused cas", []porcupine.Operation{
			op(0, 0, 1, Input{Key: "k", Kind: Put, Value: "x"}, Output{}),
			op(1, 2, 1<<62, Input{Key: "k", Kind: CAS, Expect: "x", Value: "a"}, Output{Outcome: Unknown}),
			op(2, 2, 1<<62, Input{Key: "k", Kind: Put, Value: "b"}, Output{Outcome: Unknown}),
			op(3, 4, 5, Input{Key: "k", Kind: CAS, Expect: "x", Value: "c"}, Output{Outcome: Failed}),
		}, true},
		{"unknown cas seen to take effect saw its expected value", []porcupine.Operation{
			op(0, 0, 1, Input{Key: "k", Kind: Put, Value: "a"}, Output{}),
			op(2, 2, 1<<62, Input{Key: "k", Kind: Put, Value: "x"}, Output{Outcome: Unknown}),
			op(3, 3, 1<<62, Input{Key: "k", Kind: CAS, Expect: "x", Value: "y"}, Output{Outcome: Unknown}),
			op(1, 10, 11, Input{Key: "k", Kind: Get}, Output{Value: "y"}),
		}, true},
		{"unknown cas seen to take effect, and its expected value read after", []porcupine.Operation{
			op(0, 0, 1, Input{Key: "k", Kind: Put, Value: "a"}, Output{}),
			op(2, 2, 1<<62, Input{Key: "k", Kind: Put, Value: "x"}, Output{Outcome: Unknown}),
			op(3, 3, 1<<62, Input{Key: "k", Kind: CAS, Expect: "x", Value: "y"}, Output{Outcome: Unknown}),
			op(1, 10, 11, Input{Key: "k", Kind: Get}, Output{Value: "y"}),
			op(1, 12, 13, Input{Key: "k", Kind: Get}, Output{Value: "x"}),
		}, false},
		{"keys are independent", []porcupine.Operation{
			op(0, 0, 1, Input{Key: "k1", Kind: Put, Value: "a"}, Output{}),
			op(1, 2, 3, Input{Key: "k2", Kind: Get}, Output{Value: ""}),
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(tt.ops, 10*time.Second)
			if (err == nil) != tt.ok {
				t.Fatalf("Check = %v, want linearizable=%v", err, tt.ok)
			}
		})
	}
}

func TestRecorderUnknownReturnsAtEnd(t *testing.T) {
	r := NewRecorder()
	r.Begin(0, Input{Key: "k", Kind: Put, Value: "a"})(Output{Outcome: Unknown})
	done := r.Begin(1, Input{Key: "k", Kind: Get})
	done(Output{Value: "a"})
	ops := r.Operations()
	if len(ops) != 2 || ops[0].Return <= ops[1].Return {
		t.Fatalf("unknown op must return after every other op: %+v", ops)
	}
	if err := Check(ops, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestCheckLeaderLossHistory checks generated histories shaped like a
// leader loss: three clients on six keys, and a two-second window in which
// every write returns an unknown outcome. Most of those had no effect; some,
// in flight when the leader went, land when the next one is elected. Such
// histories, with hundreds of unknown writes, did not finish in minutes
// before Check narrowed them.
func TestCheckLeaderLossHistory(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		ops := leaderLossHistory(seed)
		unknown := 0
		for _, o := range ops {
			if o.Output.(Output).Outcome == Unknown {
				unknown++
			}
		}
		if unknown < 300 {
			t.Fatalf("seed %d: only %d unknown outcomes of %d operations", seed, unknown, len(ops))
		}
		start := time.Now()
		if err := Check(ops, time.Minute); err != nil {
			t.Fatalf("seed %d (%d operations, %d unknown): %v", seed, len(ops), unknown, err)
		}
		t.Logf("seed %d: %d operations, %d unknown, checked in %s", seed, len(ops), unknown, time.Since(start))
		// The same history with a stale read planted must be refused.
		start = time.Now()
		if err := Check(withStaleRead(ops), time.Minute); err == nil || !strings.Contains(err.Error(), "not linearizable") {
			t.Fatalf("seed %d: with a planted stale read: %v, want not linearizable", seed, err)
		}
		t.Logf("seed %d: planted stale read refused in %s", seed, time.Since(start))
	}
}

// leaderLossHistory simulates a linearizable register per key: an operation
// takes effect at one instant within its call and return, except the writes
// of the fault window, which take effect at its end or never.
func leaderLossHistory(seed uint64) []porcupine.Operation {
	rnd := rand.New(rand.NewPCG(seed, 1))
	const ms = int64(time.Millisecond)
	faultFrom, faultTo := 2000*ms, 4000*ms
	keys := []string{"a", "b", "c", "d", "e", "f"}
	type sim struct {
		op     porcupine.Operation
		effect int64 // -1: none
		expect *porcupine.Operation
	}
	var all []*sim
	for c := 0; c < 3; c++ {
		t := int64(0)
		for s := 0; s < 1500; s++ {
			k := keys[rnd.IntN(len(keys))]
			t += 5 * ms
			kinds := []OpKind{Put, Get, CAS}
			kind := kinds[rnd.IntN(3)]
			var read *sim
			if kind == CAS { // read first, as a client of the API does
				read = &sim{op: porcupine.Operation{ClientId: c, Input: Input{Key: k, Kind: Get}}}
				all = append(all, read)
			}
			w := &sim{op: porcupine.Operation{ClientId: c, Input: Input{Key: k, Kind: kind, Value: fmt.Sprintf("c%d-%d", c, s)}}}
			all = append(all, w)
			for _, x := range []*sim{read, w} {
				if x == nil {
					continue
				}
				d := int64(1+rnd.IntN(4)) * ms
				x.op.Call, x.op.Return = t, t+d
				x.effect = t + rnd.Int64N(d)
				x.op.Output = Output{}
				t += d
			}
			if read != nil {
				w.expect = &read.op
			}
			if w.op.Call >= faultFrom && w.op.Call < faultTo {
				if kind == Get {
					w.effect = -1 // a failed read is not recorded
					continue
				}
				w.op.Output = Output{Outcome: Unknown}
				w.op.Return = math.MaxInt64
				w.effect = -1
				if w.op.Call < faultFrom+50*ms || rnd.IntN(10) == 0 {
					w.effect = faultTo + w.op.Call%ms // lands with the new leader
				}
			}
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].effect < all[j].effect })
	state := map[string]string{}
	var ops []porcupine.Operation
	for _, x := range all {
		in := x.op.Input.(Input)
		if x.expect != nil {
			in.Expect = x.expect.Output.(Output).Value
			x.op.Input = in
		}
		if x.effect >= 0 {
			switch in.Kind {
			case Put:
				state[in.Key] = in.Value
			case Get:
				x.op.Output = Output{Value: state[in.Key]}
			case CAS:
				if state[in.Key] == in.Expect {
					state[in.Key] = in.Value
				} else if x.op.Output.(Output).Outcome == OK {
					x.op.Output = Output{Outcome: Failed}
				}
			}
		}
		if x.effect >= 0 || x.op.Output.(Output).Outcome == Unknown {
			ops = append(ops, x.op)
		}
	}
	return ops
}

// withStaleRead adds a read, well before the fault, of a value an
// acknowledged write had just replaced.
func withStaleRead(ops []porcupine.Operation) []porcupine.Operation {
	sorted := append([]porcupine.Operation(nil), ops...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Call < sorted[j].Call })
	first := map[string]porcupine.Operation{}
	for _, o := range sorted {
		in := o.Input.(Input)
		if in.Kind != Put || o.Output.(Output).Outcome != OK {
			continue
		}
		f, ok := first[in.Key]
		if !ok {
			first[in.Key] = o
			continue
		}
		if o.Call > f.Return {
			stale := op(99, o.Return+1, o.Return+2, Input{Key: in.Key, Kind: Get}, Output{Value: f.Input.(Input).Value})
			return append(append([]porcupine.Operation(nil), ops...), stale)
		}
	}
	panic("no key written twice in a row")
}

// TestCheckAgreesWithTheExactCheck compares Check with porcupine's check of
// the history as it is (exact, and quick on short histories) on random
// short histories of one key: a linearizable run with unknown outcomes,
// some of whose writes take effect late or never, and ties in time, then
// changed in up to two places so that some are not linearizable.
func TestCheckAgreesWithTheExactCheck(t *testing.T) {
	rnd := rand.New(rand.NewPCG(5, 11))
	n, illegal := 4000, 0
	for i := range n {
		ops := shortHistory(rnd)
		exact := porcupine.CheckOperations(Model(), ops)
		if !exact {
			illegal++
		}
		if err := Check(ops, 10*time.Second); (err == nil) != exact {
			for _, o := range ops {
				t.Logf("  c%d [%d,%d] %s", o.ClientId, o.Call, o.Return, describe(o.Input, o.Output))
			}
			t.Fatalf("history %d: Check = %v, the exact check: linearizable=%v", i, err, exact)
		}
	}
	if illegal < n/20 || illegal > n/2 {
		t.Fatalf("%d of %d histories not linearizable: the generator no longer makes a useful mix", illegal, n)
	}
}

func shortHistory(rnd *rand.Rand) []porcupine.Operation {
	type simOp struct {
		op     porcupine.Operation
		effect float64 // < 0: none
	}
	span := 2 + rnd.IntN(10)
	values := []string{""}
	var sims []*simOp
	for i := range 6 + rnd.IntN(9) {
		call := int64(rnd.IntN(span))
		ret := call + int64(rnd.IntN(4))
		in := Input{Key: "k", Kind: []OpKind{Put, Put, Put, Get, Get, Get, CAS, CAS, CAS, CAS}[rnd.IntN(10)]}
		if in.Kind != Get {
			in.Value = fmt.Sprintf("v%d", i)
			values = append(values, in.Value)
		}
		s := &simOp{op: op(rnd.IntN(4), call, ret, in, Output{})}
		switch rnd.IntN(8) {
		case 0:
			s.effect = float64(call)
		case 1:
			s.effect = float64(ret)
		default:
			s.effect = float64(call) + rnd.Float64()*float64(ret-call)
		}
		if in.Kind != Get && rnd.IntN(3) == 0 || rnd.IntN(10) == 0 {
			s.op.Output, s.op.Return = Output{Outcome: Unknown}, math.MaxInt64
			s.effect = -1
			if rnd.IntN(2) == 0 {
				s.effect = float64(call) + rnd.Float64()*float64(span+3-int(call))
			}
		}
		sims = append(sims, s)
	}
	for _, s := range sims {
		if in := s.op.Input.(Input); in.Kind == CAS {
			in.Expect = values[rnd.IntN(len(values))]
			s.op.Input = in
		}
	}
	byEffect := append([]*simOp(nil), sims...)
	sort.SliceStable(byEffect, func(i, j int) bool { return byEffect[i].effect < byEffect[j].effect })
	state := ""
	for _, s := range byEffect {
		in, out := s.op.Input.(Input), s.op.Output.(Output)
		if s.effect < 0 {
			continue
		}
		switch in.Kind {
		case Put:
			state = in.Value
		case Get:
			s.op.Output = Output{Value: state, Outcome: out.Outcome}
		case CAS:
			if out.Outcome != Unknown && rnd.IntN(2) == 0 {
				in.Expect = state
				s.op.Input = in
			}
			if state == in.Expect {
				state = in.Value
			} else if out.Outcome != Unknown {
				s.op.Output = Output{Outcome: Failed}
			}
		}
	}
	ops := make([]porcupine.Operation, 0, len(sims))
	for _, s := range sims {
		ops = append(ops, s.op)
	}
	for range rnd.IntN(3) {
		o := &ops[rnd.IntN(len(ops))]
		in, out := o.Input.(Input), o.Output.(Output)
		switch rnd.IntN(4) {
		case 0:
			if in.Kind == Get && out.Outcome == OK {
				out.Value = values[rnd.IntN(len(values))]
			}
		case 1:
			if in.Kind == CAS && out.Outcome != Unknown {
				out.Outcome = OK + Failed - out.Outcome
			}
		case 2:
			if in.Kind == CAS {
				in.Expect = values[rnd.IntN(len(values))]
			}
		case 3:
			if out.Outcome != Unknown {
				o.Call = min(o.Return, o.Call+int64(rnd.IntN(3))-1)
			}
		}
		o.Input, o.Output = in, out
	}
	return ops
}
