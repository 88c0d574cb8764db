package linearize

import (
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// OpKind is the operation a client performed.
type OpKind int

// The operations of the register model.
const (
	Put OpKind = iota // unconditional write of Value
	Get               // consistent read
	CAS               // write Value if the register still holds Expect
)

// Outcome is how an operation ended as the client saw it.
type Outcome int

// Outcomes. Unknown means the client cannot tell whether a write took
// effect (timeout, connection lost): the model lets it take effect at any
// later point or never.
const (
	OK     Outcome = iota
	Failed         // CAS refused (409): the register did not hold Expect
	Unknown
	// Dropped: the operation certainly had no effect (a read that failed,
	// a write that was never sent); it is left out of the history.
	Dropped
)

// Input is what a client asked.
type Input struct {
	Key    string
	Kind   OpKind
	Value  string // Put, CAS: the new value (unique per write)
	Expect string // CAS: the value the client read before
}

// Output is what a client was told.
type Output struct {
	Outcome Outcome
	Value   string // Get: the value read
}

// Model is the register model partitioned by key. Writes must use unique
// values so that a value identifies the write (and its Raft index) exactly.
func Model() porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Partition: partitionByKey,
		Init:      func() []interface{} { return []interface{}{""} },
		Step: func(state, input, output interface{}) []interface{} {
			return step(state.(string), input.(Input), output.(Output))
		},
		DescribeOperation: describe,
	}
	return nm.ToModel()
}

func step(cur string, in Input, out Output) []interface{} {
	switch in.Kind {
	case Put:
		if out.Outcome == Unknown {
			return []interface{}{cur, in.Value}
		}
		return []interface{}{in.Value}
	case Get:
		if out.Outcome == Unknown {
			return []interface{}{cur}
		}
		if out.Value == cur {
			return []interface{}{cur}
		}
		return nil
	case CAS:
		switch out.Outcome {
		case OK:
			if cur == in.Expect {
				return []interface{}{in.Value}
			}
			return nil
		case Failed:
			if cur != in.Expect {
				return []interface{}{cur}
			}
			return nil
		default:
			if cur == in.Expect {
				return []interface{}{cur, in.Value}
			}
			return []interface{}{cur}
		}
	}
	return nil
}

func partitionByKey(history []porcupine.Operation) [][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	var keys []string
	for _, op := range history {
		k := op.Input.(Input).Key
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], op)
	}
	sort.Strings(keys)
	out := make([][]porcupine.Operation, 0, len(keys))
	for _, k := range keys {
		out = append(out, byKey[k])
	}
	return out
}

func describe(input, output interface{}) string {
	in, out := input.(Input), output.(Output)
	res := map[Outcome]string{OK: "ok", Failed: "failed", Unknown: "unknown"}[out.Outcome]
	switch in.Kind {
	case Put:
		return fmt.Sprintf("put(%s, %q) -> %s", in.Key, in.Value, res)
	case Get:
		return fmt.Sprintf("get(%s) -> %q (%s)", in.Key, out.Value, res)
	default:
		return fmt.Sprintf("cas(%s, %q -> %q) -> %s", in.Key, in.Expect, in.Value, res)
	}
}

// Recorder collects a concurrent history. Safe for concurrent use.
type Recorder struct {
	mu    sync.Mutex
	start time.Time
	ops   []porcupine.Operation
}

// NewRecorder starts a history whose timestamps count from now.
func NewRecorder() *Recorder { return &Recorder{start: time.Now()} }

// Begin marks the call of an operation; the returned function records its
// return. An operation with an Unknown outcome is recorded as returning at
// the end of time, since its effect may land at any later point.
func (r *Recorder) Begin(client int, in Input) func(Output) {
	call := time.Since(r.start).Nanoseconds()
	return func(out Output) {
		if out.Outcome == Dropped {
			return
		}
		ret := time.Since(r.start).Nanoseconds()
		if out.Outcome == Unknown {
			ret = math.MaxInt64
		}
		r.mu.Lock()
		r.ops = append(r.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
		r.mu.Unlock()
	}
}

// Operations returns a copy of the history so far.
func (r *Recorder) Operations() []porcupine.Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]porcupine.Operation(nil), r.ops...)
}

// Check reports whether the history is linearizable, giving up after timeout
// (an undecided result is returned as an error, never as success).
//
// A write with an Unknown outcome stays open to the end of the history, and
// porcupine's search over where each such write takes effect grows
// exponentially with their number: a few hundred, as a leader loss leaves,
// kept it busy past any budget (a 2 min one in CI). So Check first narrows them, key by key, in
// ways that keep the answer (see narrow), and checks the keys one by one.
func Check(ops []porcupine.Operation, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, part := range partitionByKey(ops) {
		key := part[0].Input.(Input).Key
		base, puts, cases := narrow(part)
		res := checkUntil(base, deadline)
		// Without the unseen writes the key is not linearizable. Some of
		// them may still have taken effect, unread, each to explain a
		// refused compare-and-set (nothing else can need one: its value
		// held until the next write, and anything else that ran then would
		// have seen it). The unseen compare-and-sets go back in whole: one
		// takes effect only while the register holds what it expects. The
		// unseen puts differ only in when they were called, since their
		// values are never mentioned, so if any m of them explain the
		// history, the m called first do. So they go back earliest first, a
		// few more each round, up to one per refusal: each round leaves few
		// writes open where all of them at once may not finish.
		if res == porcupine.Illegal && len(puts)+len(cases) > 0 {
			withCAS := append(base[:len(base):len(base)], cases...)
			limit := min(len(puts), refusals(part))
			for m := min(1, limit); ; m *= 2 {
				if m > limit/2 {
					m = limit
				}
				if res = checkUntil(append(withCAS[:len(withCAS):len(withCAS)], puts[:m]...), deadline); res != porcupine.Illegal || m == limit {
					break
				}
			}
		}
		switch res {
		case porcupine.Illegal:
			return fmt.Errorf("history of %d operations is not linearizable (key %s)", len(ops), key)
		case porcupine.Unknown:
			return fmt.Errorf("linearizability check of %d operations did not finish within %s (key %s)", len(ops), timeout, key)
		}
	}
	return nil
}

func checkUntil(ops []porcupine.Operation, deadline time.Time) porcupine.CheckResult {
	left := time.Until(deadline)
	if left <= 0 {
		return porcupine.Unknown // porcupine takes 0 as no limit
	}
	return porcupine.CheckOperationsTimeout(Model(), ops, left)
}

// narrow rewrites the history of one key so that few operations stay open
// to the end of time, without changing whether it is linearizable:
//
//   - A read with an unknown outcome constrains nothing: it is left out.
//   - A write with an unknown outcome whose value was seen took effect, since
//     values are unique, and did so before the operation that saw it
//     returned. It becomes an acknowledged write returning when the first
//     such operation returned. Seen means read by an acknowledged read, or
//     expected by a compare-and-set that took effect: an acknowledged one,
//     or an unknown one whose own value was seen (found step by step).
//   - A write with an unknown outcome whose value no operation mentions is
//     returned apart: puts in puts, earliest call first, compare-and-sets
//     in cases. Such a write may always be taken to have had no effect, so
//     the history without it is linearizable only if the history with it
//     is; the converse may fail, see Check.
//
// Writes with an unknown outcome whose value only unknown or refused
// compare-and-sets mention stay open.
func narrow(part []porcupine.Operation) (base, puts, cases []porcupine.Operation) {
	seen := map[string]int64{} // value -> earliest return of an operation that saw it
	see := func(v string, at int64) bool {
		if prev, ok := seen[v]; ok && prev <= at {
			return false
		}
		seen[v] = at
		return true
	}
	mentioned := map[string]bool{}
	for _, op := range part {
		in, out := op.Input.(Input), op.Output.(Output)
		switch {
		case in.Kind == Get && out.Outcome == OK:
			mentioned[out.Value] = true
			see(out.Value, op.Return)
		case in.Kind == CAS:
			mentioned[in.Expect] = true
			if out.Outcome == OK {
				see(in.Expect, op.Return)
			}
		}
	}
	// An unknown compare-and-set seen to have taken effect saw its Expect.
	for changed := true; changed; {
		changed = false
		for _, op := range part {
			in, out := op.Input.(Input), op.Output.(Output)
			if in.Kind != CAS || out.Outcome != Unknown {
				continue
			}
			if at, ok := seen[in.Value]; ok && at > op.Call && see(in.Expect, at) {
				changed = true
			}
		}
	}
	for _, op := range part {
		in, out := op.Input.(Input), op.Output.(Output)
		if out.Outcome != Unknown {
			base = append(base, op)
			continue
		}
		switch {
		case in.Kind == Get:
			// no constraint: left out
		case in.Value == "":
			base = append(base, op) // the initial value: cannot be told apart
		case !mentioned[in.Value] && in.Kind == Put:
			puts = append(puts, op)
		case !mentioned[in.Value]:
			cases = append(cases, op)
		default:
			// Pinned if seen after its call. Otherwise (mentioned only by
			// unknown or refused compare-and-sets, or seen before it was
			// called) left open, and the check judges it as it is.
			if at, ok := seen[in.Value]; ok && at > op.Call {
				op.Output = Output{Outcome: OK}
				op.Return = at
			}
			base = append(base, op)
		}
	}
	sort.SliceStable(puts, func(i, j int) bool { return puts[i].Call < puts[j].Call })
	return base, puts, cases
}

func refusals(part []porcupine.Operation) int {
	n := 0
	for _, op := range part {
		if op.Input.(Input).Kind == CAS && op.Output.(Output).Outcome == Failed {
			n++
		}
	}
	return n
}
