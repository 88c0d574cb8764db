package fsm

import (
	"bytes"
	"encoding/json"
	"reflect"
	"sort"
)

// Change is one difference between two documents, as shown by a dry run.
type Change struct {
	Op     string          `json:"op"` // "create" | "update" | "delete"
	Kind   Kind            `json:"kind"`
	Name   string          `json:"name"`
	Before json.RawMessage `json:"before,omitempty"`
	After  json.RawMessage `json:"after,omitempty"`
}

// Diff lists the managed objects (listeners, pools, routes, vips) that
// differ between before and after, in Kinds order then by name. A nil
// document counts as empty. modify_index alone is not a change.
func Diff(before, after *Config) []Change {
	if before == nil {
		before = Empty()
	}
	if after == nil {
		after = Empty()
	}
	var out []Change
	for _, kind := range Kinds {
		names := map[string]struct{}{}
		for _, n := range before.names(kind) {
			names[n] = struct{}{}
		}
		for _, n := range after.names(kind) {
			names[n] = struct{}{}
		}
		sorted := make([]string, 0, len(names))
		for n := range names {
			sorted = append(sorted, n)
		}
		sort.Strings(sorted)
		for _, n := range sorted {
			b, _, inBefore := before.lookup(kind, n)
			a, _, inAfter := after.lookup(kind, n)
			switch {
			case inBefore && !inAfter:
				out = append(out, Change{Op: "delete", Kind: kind, Name: n, Before: publicJSON(b)})
			case !inBefore && inAfter:
				out = append(out, Change{Op: "create", Kind: kind, Name: n, After: publicJSON(a)})
			case b == a:
				// The same object: published objects never change.
			default:
				bj, aj := canonicalJSON(b), canonicalJSON(a)
				if !bytes.Equal(bj, aj) {
					out = append(out, Change{Op: "update", Kind: kind, Name: n, Before: publicJSON(b), After: publicJSON(a)})
				}
			}
		}
	}
	return out
}

// SameObjects reports whether after holds exactly the objects of before
// (the same pointers under the same keys) in every map and pointer field
// of Config: applying the command that turned before into after changed
// nothing but the index. It walks Config's fields by reflection, so that
// a kind added later can never be left out of the comparison (an apply
// answered as unchanged writes nothing).
func SameObjects(before, after *Config) bool {
	bv, av := reflect.ValueOf(before).Elem(), reflect.ValueOf(after).Elem()
	for i := range bv.NumField() {
		if f := bv.Type().Field(i); f.Name == "Index" || !f.IsExported() {
			continue // the index, and what is not part of the document
		}
		if !sameField(bv.Field(i), av.Field(i)) {
			return false
		}
	}
	return true
}

func sameField(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Map:
		if a.Len() != b.Len() {
			return false
		}
		it := a.MapRange()
		for it.Next() {
			w := b.MapIndex(it.Key())
			if !w.IsValid() || !sameField(it.Value(), w) {
				return false
			}
		}
		return true
	case reflect.Pointer:
		return a.Pointer() == b.Pointer()
	default:
		return reflect.DeepEqual(a.Interface(), b.Interface())
	}
}

// ChangedRoutes names the routes that can differ between a and b (added,
// removed or replaced) when b's routes were made from a's by the command
// that made b, or are a's, and reports whether it could tell. When it
// cannot (b is further from a than one command, or restored), the caller
// compares the maps itself. A name listed may still hold the same route
// in both.
func ChangedRoutes(a, b *Config) ([]string, bool) {
	if a == nil || b == nil {
		return nil, false
	}
	if sameMap(a.Routes, b.Routes) {
		return nil, true
	}
	if d := b.routesFrom; d != nil && sameMap(d.base, a.Routes) {
		return d.names, true
	}
	return nil, false
}

func sameMap[K comparable, V any](a, b map[K]V) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}
