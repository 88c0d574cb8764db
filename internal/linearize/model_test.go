package linearize

import (
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
