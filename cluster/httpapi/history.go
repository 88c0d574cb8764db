package httpapi

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/fsm"
)

// History sizes: how many configuration changes and VIP moves a node
// remembers.
const (
	DefaultHistorySize = 256
	historyMoves       = 64
)

// History is a bounded, in-memory record of the recent changes to the
// replicated configuration as this node applied them. It follows a
// source (the Raft node) and compares each new document with the one
// before: fsm shares every map a command leaves alone, so an unchanged
// kind costs one pointer comparison, and within a changed kind each
// object's modify_index (a VIP assignment's token) says at which Raft
// index it changed, even when several entries were applied between two
// looks. Deletions carry the index of the document that no longer has
// the object, the earliest this node saw it gone.
//
// At start it is seeded from the modify_index of the objects there are,
// newest first, without times: the changes that made them were applied
// before this node started (or restored from a snapshot).
type History struct {
	src  fsm.Source
	now  func() time.Time
	size int

	mu      sync.Mutex
	prev    *fsm.Config
	entries []api.HistoryEntry // oldest first, at most size
	moves   []api.HistoryEntry // oldest first, at most historyMoves
}

// NewHistory returns a History of src's changes keeping the last size
// (DefaultHistorySize when 0) and seeded from src's current document.
// Run follows src.
func NewHistory(src fsm.Source, size int) *History {
	if size <= 0 {
		size = DefaultHistorySize
	}
	h := &History{src: src, now: time.Now, size: size}
	h.seed(src.Config())
	return h
}

// Run records every change of the source until ctx is done.
func (h *History) Run(ctx context.Context) {
	for {
		ch := h.src.Changed()
		h.observe(h.src.Config())
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}

func (h *History) seed(c *fsm.Config) {
	if c == nil {
		return
	}
	var seeded []api.HistoryEntry
	emit := func(e api.HistoryEntry) {
		if e.Kind != "vip-move" { // where a VIP was before is not known
			seeded = append(seeded, e)
		}
	}
	diffConfig(fsm.Empty(), c, time.Time{}, emit)
	for i := range seeded {
		seeded[i].Op = "set"
		seeded[i].Detail = "last changed at this index, before this node started"
	}
	slices.SortStableFunc(seeded, func(a, b api.HistoryEntry) int { return cmp.Compare(a.Index, b.Index) })
	if len(seeded) > h.size {
		seeded = seeded[len(seeded)-h.size:]
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.prev = c
	h.entries = seeded
}

func (h *History) observe(c *fsm.Config) {
	if c == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	prev := h.prev
	if prev == nil {
		prev = fsm.Empty()
	}
	if prev.Index == c.Index && h.prev != nil {
		return
	}
	h.prev = c
	at := h.now().UTC()
	var batch []api.HistoryEntry
	diffConfig(prev, c, at, func(e api.HistoryEntry) {
		batch = append(batch, e)
		if e.Kind == "vip-move" {
			h.moves = appendBounded(h.moves, e, historyMoves)
		}
	})
	slices.SortStableFunc(batch, func(a, b api.HistoryEntry) int { return cmp.Compare(a.Index, b.Index) })
	for _, e := range batch {
		if e.Kind != "vip-move" {
			h.entries = appendBounded(h.entries, e, h.size)
		}
	}
}

func appendBounded(s []api.HistoryEntry, e api.HistoryEntry, max int) []api.HistoryEntry {
	s = append(s, e)
	if len(s) > max {
		s = slices.Delete(s, 0, len(s)-max)
	}
	return s
}

// View returns at most limit of the newest changes and VIP moves, newest
// first.
func (h *History) View(limit int) api.History {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := api.History{Entries: newestFirst(h.entries, limit), VIPMoves: newestFirst(h.moves, limit)}
	if h.prev != nil {
		out.Index = h.prev.Index
	}
	return out
}

func newestFirst(s []api.HistoryEntry, limit int) []api.HistoryEntry {
	n := min(len(s), limit)
	out := make([]api.HistoryEntry, 0, n)
	for i := len(s) - 1; i >= len(s)-n; i-- {
		out = append(out, s[i])
	}
	return out
}

// diffConfig emits one entry per object that differs between a and b.
func diffConfig(a, b *fsm.Config, at time.Time, emit func(api.HistoryEntry)) {
	ent := func(index uint64, op, kind, name, detail string) {
		emit(api.HistoryEntry{Index: index, At: at, Op: op, Kind: kind, Name: name, Detail: detail})
	}
	del := b.Index
	diffMap(a.Listeners, b.Listeners, func(v *fsm.Listener) uint64 { return v.ModifyIndex }, func(name string, _, v *fsm.Listener, op string, idx uint64) {
		detail := ""
		if v != nil {
			detail = "port " + strconv.Itoa(v.Spec.Port)
		}
		ent(idx, op, "listener", name, detail)
	}, del)
	routeEntry := func(name string, _, v *fsm.Route, op string, idx uint64) { ent(idx, op, "route", name, "") }
	routeIndex := func(v *fsm.Route) uint64 { return v.ModifyIndex }
	if names, ok := fsm.ChangedRoutes(a, b); ok {
		// b records which routes the command that made it from a wrote:
		// only those can differ, however many routes there are.
		diffNames(a.Routes, b.Routes, names, routeIndex, routeEntry, del)
	} else {
		diffMap(a.Routes, b.Routes, routeIndex, routeEntry, del)
	}
	diffMap(a.Pools, b.Pools, func(v *fsm.Pool) uint64 { return v.ModifyIndex }, func(name string, old, v *fsm.Pool, op string, idx uint64) {
		ent(idx, op, "pool", name, poolDetail(old, v))
	}, del)
	diffMap(a.VIPs, b.VIPs, func(v *fsm.VIP) uint64 { return v.ModifyIndex }, func(name string, _, v *fsm.VIP, op string, idx uint64) {
		ent(idx, op, "vip", name, "")
	}, del)
	diffMap(a.Nodes, b.Nodes, func(v *fsm.Node) uint64 { return v.ModifyIndex }, func(name string, _, v *fsm.Node, op string, idx uint64) {
		detail := ""
		if v != nil {
			detail = "zone " + v.Zone
		}
		ent(idx, op, "node", name, detail)
	}, del)
	diffMap(a.Zones, b.Zones, func(v *fsm.ZoneState) uint64 { return v.ModifyIndex }, func(name string, _, v *fsm.ZoneState, op string, idx uint64) {
		detail := ""
		switch {
		case v == nil:
		case v.Evacuated:
			detail = "evacuated"
		default:
			detail = "restored"
		}
		ent(idx, op, "zone", name, detail)
	}, del)
	diffMap(a.Rollouts, b.Rollouts, func(v *fsm.Rollout) uint64 { return v.ModifyIndex }, func(name string, _, v *fsm.Rollout, op string, idx uint64) {
		ent(idx, op, "rollout", name, "")
	}, del)
	// A rollout's progress: every verdict and operator action is one entry
	// that changes the status token.
	for _, name := range slices.Sorted(maps.Keys(b.RolloutStatus)) {
		v := b.RolloutStatus[name]
		if old := a.RolloutStatus[name]; old != nil && old.Token == v.Token {
			continue
		}
		ent(v.Token, "update", "rollout-status", name, fmt.Sprintf("%s, step %d, canary %d%%", v.State, v.Step+1, v.Weight))
	}
	// An assignment keeps its token when it settles; compare values.
	if !sameMap(a.Assignments, b.Assignments) {
		for name, v := range b.Assignments {
			old := a.Assignments[name]
			if old != nil && *old == *v {
				continue
			}
			idx := v.Token
			if old != nil && old.Token == v.Token {
				idx = b.Index // settled later, at an index this node cannot tell more exactly
			}
			op := "update"
			if old == nil {
				op = "create"
			}
			ent(idx, op, "assignment", name, assignmentDetail(v))
			if old == nil || old.Holder != v.Holder {
				from := "none"
				if old != nil {
					from = old.Holder
				}
				detail := fmt.Sprintf("%s → %s", from, v.Holder)
				if v.Reason != "" {
					detail += " (" + v.Reason + ")"
				}
				emit(api.HistoryEntry{Index: v.Token, At: at, Op: "move", Kind: "vip-move", Name: name, Detail: detail})
			}
		}
		for name := range a.Assignments {
			if _, ok := b.Assignments[name]; !ok {
				ent(del, "delete", "assignment", name, "")
			}
		}
	}
	if !sameMap(a.Leases, b.Leases) {
		for id := range b.Leases {
			if _, ok := a.Leases[id]; !ok {
				ent(id, "create", "lease", strconv.FormatUint(id, 10), "")
			}
		}
		for id := range a.Leases {
			if _, ok := b.Leases[id]; !ok {
				ent(del, "delete", "lease", strconv.FormatUint(id, 10), "")
			}
		}
	}
}

// diffMap calls fn for each object created, changed (by its modify index)
// or deleted between a and b.
func diffMap[V any](a, b map[string]V, mod func(V) uint64, fn func(name string, old, cur V, op string, idx uint64), del uint64) {
	if sameMap(a, b) {
		return
	}
	var zero V
	for name, v := range b {
		old, ok := a[name]
		switch {
		case !ok:
			fn(name, zero, v, "create", mod(v))
		case mod(old) != mod(v):
			fn(name, old, v, "update", mod(v))
		}
	}
	for name, old := range a {
		if _, ok := b[name]; !ok {
			fn(name, old, zero, "delete", del)
		}
	}
}

// diffNames is diffMap for maps that can differ only under names (which
// may repeat).
func diffNames[V any](a, b map[string]V, names []string, mod func(V) uint64, fn func(name string, old, cur V, op string, idx uint64), del uint64) {
	var zero V
	seen := make(map[string]bool, len(names))
	for _, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		old, inA := a[name]
		v, inB := b[name]
		switch {
		case inB && !inA:
			fn(name, zero, v, "create", mod(v))
		case inB && mod(old) != mod(v):
			fn(name, old, v, "update", mod(v))
		case inA && !inB:
			fn(name, old, zero, "delete", del)
		}
	}
}

func sameMap[K comparable, V any](a, b map[K]V) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// poolDetail names what a pool change did to its backends' drain flags,
// the change an operator looks for most.
func poolDetail(old, cur *fsm.Pool) string {
	if cur == nil {
		return ""
	}
	drained := map[string]bool{}
	if old != nil {
		for _, b := range old.Spec.Backends {
			drained[b.Addr] = b.Drain
		}
	}
	var out []string
	for _, b := range cur.Spec.Backends {
		was, had := drained[b.Addr]
		switch {
		case !had:
			out = append(out, "+"+b.Addr)
		case b.Drain && !was:
			out = append(out, "drain "+b.Addr)
		case !b.Drain && was:
			out = append(out, "undrain "+b.Addr)
		}
		delete(drained, b.Addr)
	}
	for addr := range drained {
		out = append(out, "-"+addr)
	}
	slices.Sort(out)
	s := fmt.Sprintf("%d backends", len(cur.Spec.Backends))
	for i, o := range out {
		if i == 4 {
			s += fmt.Sprintf(", … %d more", len(out)-i)
			break
		}
		s += ", " + o
	}
	return s
}

func assignmentDetail(a *fsm.Assignment) string {
	s := "holder " + a.Holder
	if a.Reason != "" {
		s += " (" + a.Reason + ")"
	}
	if a.Settled {
		s += ", settled"
	}
	return s
}

// maxHistoryLimit bounds ?limit of GET /v1/history.
const maxHistoryLimit = 1000

func (s *server) handleHistory(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.History == nil {
		return fmt.Errorf("configuration history is not kept on this node: %w", errNoRoute)
	}
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxHistoryLimit {
			return invalidParam("limit", "want 1 to %d, got %q", maxHistoryLimit, v)
		}
		limit = n
	}
	view := s.cfg.History.View(limit)
	return s.answer(w, http.StatusOK, view.Index, view)
}
