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
// (an Unknown result is returned as an error, not as success).
func Check(ops []porcupine.Operation, timeout time.Duration) error {
	switch porcupine.CheckOperationsTimeout(Model(), ops, timeout) {
	case porcupine.Ok:
		return nil
	case porcupine.Illegal:
		return fmt.Errorf("history of %d operations is not linearizable", len(ops))
	default:
		return fmt.Errorf("linearizability check of %d operations did not finish within %s", len(ops), timeout)
	}
}
