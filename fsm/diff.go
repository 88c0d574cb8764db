package fsm

import (
	"bytes"
	"encoding/json"
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
