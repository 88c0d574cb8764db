package httpapi

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/fsm"
)

// TestHistoryRecordsEveryRouteChange changes routes among many, seen one
// command at a time (when each document records which routes its command
// wrote) and in bursts of several commands seen at once, and wants the
// history to hold exactly the entries a comparison of the whole route maps
// gives.
func TestHistoryRecordsEveryRouteChange(t *testing.T) {
	st := newFakeStore("n1")
	st.put(t, fsm.KindListener, "web", `{"port": 8080}`)
	var objs []fsm.Object
	for i := range 500 {
		objs = append(objs, fsm.Object{Kind: fsm.KindRoute, Name: fmt.Sprintf("r%d", i), Spec: []byte(`{"listener":"web","action":{"respond":{"status":200}}}`)})
	}
	if _, err := st.Apply(context.Background(), fsm.ApplyCommand(objs)); err != nil {
		t.Fatal(err)
	}
	h := NewHistory(st, 10000)
	rng := rand.New(rand.NewPCG(5, 6))
	var want []string
	key := func(e api.HistoryEntry) string { return fmt.Sprintf("%d %s %s %s", e.Index, e.Op, e.Kind, e.Name) }
	recorded := 0
	for step := range 300 {
		prev := st.Config()
		for range 1 + rng.IntN(3)*rng.IntN(2) { // mostly one command, now and then a burst
			name := fmt.Sprintf("r%d", rng.IntN(520))
			var cmd *fsm.Command
			if _, ok := st.Config().Routes[name]; ok && rng.IntN(3) == 0 {
				cmd = fsm.DeleteCommand(fsm.KindRoute, name, nil)
			} else {
				cmd = fsm.PutCommand(fsm.Object{Kind: fsm.KindRoute, Name: name, Spec: fmt.Appendf(nil, `{"listener":"web","priority":%d,"action":{"respond":{"status":200}}}`, step)}, nil)
			}
			if _, err := st.Apply(context.Background(), cmd); err != nil {
				t.Fatal(err)
			}
		}
		next := st.Config()
		if _, ok := fsm.ChangedRoutes(prev, next); ok {
			recorded++
		}
		var batch []api.HistoryEntry
		diffMap(prev.Routes, next.Routes, func(v *fsm.Route) uint64 { return v.ModifyIndex }, func(name string, _, v *fsm.Route, op string, idx uint64) {
			batch = append(batch, api.HistoryEntry{Index: idx, Op: op, Kind: "route", Name: name})
		}, next.Index)
		for _, e := range batch {
			want = append(want, key(e))
		}
		h.observe(next)
	}
	var got []string
	for _, e := range h.View(maxHistoryLimit).Entries {
		if e.At.IsZero() {
			continue // seeded
		}
		got = append(got, key(e))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("history holds %d entries, the whole maps differ by %d:\n got %v\nwant %v", len(got), len(want), got, want)
	}
	if recorded < 150 || recorded == 300 {
		t.Fatalf("%d of 300 changes seen were recorded by the document: the test must see both kinds", recorded)
	}
}
