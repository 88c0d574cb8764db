package dataplane

import (
	"hash/maphash"
	"maps"
	"slices"
)

// nameMap is a table's compiled routes by name. A table built from the
// previous one shares most of it: the map is split into shards by a hash
// of the name, and the next table copies only the shards of the names
// that changed. Neither table's map is written once the table is served.
type nameMap struct {
	seed   maphash.Seed
	shards []map[string]*route // a power of two; nil in a table that has none
}

// newNameMap is an empty map sized for about n names.
func newNameMap(n int) nameMap {
	m := nameMap{seed: maphash.MakeSeed(), shards: make([]map[string]*route, shardsFor(n))}
	for i := range m.shards {
		m.shards[i] = map[string]*route{}
	}
	return m
}

func (m nameMap) shard(name string) int {
	if len(m.shards) == 1 {
		return 0
	}
	return int(maphash.String(m.seed, name) & uint64(len(m.shards)-1))
}

func (m nameMap) get(name string) *route {
	if m.shards == nil {
		return nil
	}
	return m.shards[m.shard(name)][name]
}

func (m nameMap) len() int {
	n := 0
	for _, s := range m.shards {
		n += len(s)
	}
	return n
}

// put adds to a map being built, which no table serves yet.
func (m nameMap) put(name string, r *route) { m.shards[m.shard(name)][name] = r }

// all calls fn for every name and route.
func (m nameMap) all(fn func(name string, r *route)) {
	for _, s := range m.shards {
		for name, r := range s {
			fn(name, r)
		}
	}
}

// nameMapWriter writes the next table's map over a shared one: each shard
// is copied the first time it is written.
type nameMapWriter struct {
	m      nameMap
	copied map[int]bool
}

// writer starts the next map from m, which it leaves as it is.
func (m nameMap) writer() *nameMapWriter {
	return &nameMapWriter{m: nameMap{seed: m.seed, shards: slices.Clone(m.shards)}, copied: map[int]bool{}}
}

func (w *nameMapWriter) shard(name string) map[string]*route {
	i := w.m.shard(name)
	if !w.copied[i] {
		w.m.shards[i] = maps.Clone(w.m.shards[i])
		w.copied[i] = true
	}
	return w.m.shards[i]
}

func (w *nameMapWriter) set(name string, r *route) { w.shard(name)[name] = r }
func (w *nameMapWriter) delete(name string)        { delete(w.shard(name), name) }
