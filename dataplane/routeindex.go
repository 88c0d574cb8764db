package dataplane

import (
	"cmp"
	"hash/maphash"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"
)

// routeList is the routes of one host key (an exact host, a wildcard
// suffix or any host) in precedence order, indexed by path so a lookup
// reaches only the routes whose path can match: exact paths by a map,
// prefixes and the literal prefixes of regexes by a radix trie. The cost
// of a lookup is then the path length plus the candidates it rejects, not
// the number of routes.
//
// A list is never modified once built. A change of a few routes builds
// the next list from it (with) in time proportional to the change, not to
// the list: routes keep their ranks, the path map is split into shards of
// which only those holding a changed path are copied, and the trie is
// shared unless a prefix or regex route changed.
type routeList struct {
	// routes in precedence order (lessRoute); ranks[i] is the rank of
	// routes[i]. Ranks rise strictly along the list, with gaps: a route
	// added later takes a rank between its neighbours' and the others
	// keep theirs.
	routes []*route
	ranks  []int64
	exact  exactIndex
	trie   *trieNode // never nil
}

// rankGap is the distance between neighbouring ranks in a list ranked
// afresh. It leaves room for about twenty routes added one after another
// at the same place before the list has to be ranked again.
const rankGap = 1 << 20

// entry is a route as one list ranks it. prio is copied from the route so
// ordering candidates does not chase the pointer.
type entry struct {
	r    *route
	prio int
	rank int64
}

// exactIndex is the exact-path routes of a list by path, each bucket in
// rank order. A large list splits it into shards by a hash of the path so
// that a change copies only the shards of the paths it touches.
type exactIndex struct {
	seed   maphash.Seed         // set when len(shards) > 1
	shards []map[string][]entry // nil when the list has no exact paths; else a power of two
}

// Shard sizing: a list keeps one map up to minShardedPaths exact paths,
// then about pathsPerShard paths a shard, and builds the index again only
// when its path count has moved a factor of shardSlack from what its
// shard count was made for.
const (
	minShardedPaths = 256
	pathsPerShard   = 64
	maxShards       = 1 << 12
	shardSlack      = 4
)

func shardsFor(paths int) int {
	if paths <= minShardedPaths {
		return 1
	}
	n := 1
	for n*pathsPerShard < paths && n < maxShards {
		n <<= 1
	}
	return n
}

// fits reports whether an index with cur shards can keep serving paths
// exact paths.
func shardsFit(cur, paths int) bool {
	want := shardsFor(paths)
	return cur >= want/shardSlack && cur <= want*shardSlack
}

// get is the bucket of path. It does not allocate.
func (x *exactIndex) get(path []byte) []entry {
	switch len(x.shards) {
	case 0:
		return nil
	case 1:
		return x.shards[0][string(path)]
	}
	return x.shards[maphash.Bytes(x.seed, path)&uint64(len(x.shards)-1)][string(path)]
}

func (x *exactIndex) shard(path string) int {
	if len(x.shards) <= 1 {
		return 0
	}
	return int(maphash.String(x.seed, path) & uint64(len(x.shards)-1))
}

func (x *exactIndex) paths() int {
	n := 0
	for _, m := range x.shards {
		n += len(m)
	}
	return n
}

// buildExact indexes the exact-path routes of routes (in rank order).
func buildExact(routes []*route, ranks []int64) exactIndex {
	paths := map[string]struct{}{}
	for _, r := range routes {
		if r.kind == pathExact {
			paths[r.path] = struct{}{}
		}
	}
	if len(paths) == 0 {
		return exactIndex{}
	}
	x := exactIndex{shards: make([]map[string][]entry, shardsFor(len(paths)))}
	if len(x.shards) > 1 {
		x.seed = maphash.MakeSeed()
	}
	per := len(paths)/len(x.shards) + 1
	for i := range x.shards {
		x.shards[i] = make(map[string][]entry, per)
	}
	for i, r := range routes {
		if r.kind == pathExact {
			m := x.shards[x.shard(r.path)]
			m[r.path] = append(m[r.path], entry{r: r, prio: r.priority, rank: ranks[i]})
		}
	}
	return x
}

// buildTrie indexes the prefix and regex routes of routes (in rank order).
func buildTrie(routes []*route, ranks []int64) *trieNode {
	root := &trieNode{}
	for i, r := range routes {
		e := entry{r: r, prio: r.priority, rank: ranks[i]}
		switch r.kind {
		case pathPrefix:
			root.insert(r.path, e)
		case pathRegex:
			root.insert(regexKey(r), e)
		}
	}
	root.link(nil)
	return root
}

// trieNode is a radix trie node over raw path bytes. Every key ends at a
// node (edges are split on insert), so a walk down the request path meets
// every key that is a prefix of it.
type trieNode struct {
	label string  // the edge from the parent; empty at the root
	items []entry // keys ending here, by rank
	// up is the nearest proper ancestor with items: after a walk the
	// deepest node with items and its up chain are all the matching keys.
	up       *trieNode
	first    []byte // first byte of each child's label, ascending
	children []*trieNode
}

// newRouteList indexes routes, which must already be in precedence order,
// ranking them afresh.
func newRouteList(routes []*route) *routeList {
	ranks := make([]int64, len(routes))
	for i := range ranks {
		ranks[i] = int64(i+1) * rankGap
	}
	return &routeList{routes: routes, ranks: ranks, exact: buildExact(routes, ranks), trie: buildTrie(routes, ranks)}
}

// with returns the list of l without removed (routes of l) and with
// added (in any order; nil l is the empty list), or nil when that is
// empty. l is left as it is: requests may still be reading it.
func (l *routeList) with(removed, added []*route) *routeList {
	var kept []*route
	var keptRanks []int64
	if l != nil {
		kept, keptRanks = l.without(removed)
	}
	if len(kept)+len(added) == 0 {
		return nil
	}
	added = slices.Clone(added)
	slices.SortFunc(added, lessRoute)
	routes, ranks, ok := mergeRanked(kept, keptRanks, added)
	if !ok || l == nil {
		return newRouteList(routes)
	}
	nl := &routeList{routes: routes, ranks: ranks, trie: l.trie}
	reindexTrie := false
	for _, r := range slices.Concat(removed, added) {
		if r.kind != pathExact {
			reindexTrie = true
		}
	}
	if reindexTrie {
		nl.trie = buildTrie(routes, ranks)
	}
	nl.exact = l.exact.with(removed, added, routes, ranks)
	return nl
}

// without copies l's routes and ranks but those of removed, each found
// by its precedence rather than by a walk of the list.
func (l *routeList) without(removed []*route) ([]*route, []int64) {
	drop := make([]int, 0, len(removed))
	for _, r := range removed {
		i, found := slices.BinarySearchFunc(l.routes, r, lessRoute)
		if !found || l.routes[i] != r {
			i = slices.Index(l.routes, r)
		}
		// A route listed twice (a host named twice) sits twice in a row.
		for ; i >= 0 && i < len(l.routes) && l.routes[i] == r; i++ {
			drop = append(drop, i)
		}
	}
	slices.Sort(drop)
	drop = slices.Compact(drop)
	routes := make([]*route, 0, len(l.routes)-len(drop)+8)
	ranks := make([]int64, 0, cap(routes))
	from := 0
	for _, i := range drop {
		routes = append(routes, l.routes[from:i]...)
		ranks = append(ranks, l.ranks[from:i]...)
		from = i + 1
	}
	routes = append(routes, l.routes[from:]...)
	ranks = append(ranks, l.ranks[from:]...)
	return routes, ranks
}

// mergeRanked merges added (in precedence order) into kept, giving each
// added route a rank between those of its neighbours. ok is false when
// two neighbours have too little room between them; the routes are then
// merged but not ranked.
func mergeRanked(kept []*route, keptRanks []int64, added []*route) (routes []*route, ranks []int64, ok bool) {
	routes = make([]*route, 0, len(kept)+len(added))
	ranks = make([]int64, 0, len(kept)+len(added))
	ok = true
	i := 0
	for j := 0; j < len(added); {
		// The run of added routes that goes before kept[i].
		at, _ := slices.BinarySearchFunc(kept[i:], added[j], lessRoute)
		routes = append(routes, kept[i:i+at]...)
		ranks = append(ranks, keptRanks[i:i+at]...)
		i += at
		k := j + 1
		for k < len(added) && (i == len(kept) || lessRoute(added[k], kept[i]) < 0) {
			k++
		}
		run := int64(k - j)
		var lo, hi int64
		switch {
		case i > 0 && i < len(kept):
			lo, hi = keptRanks[i-1], keptRanks[i]
		case i > 0:
			lo = keptRanks[i-1]
			hi = lo + (run+1)*rankGap
		case i < len(kept):
			hi = keptRanks[i]
			lo = hi - (run+1)*rankGap
		default:
			lo, hi = 0, (run+1)*rankGap
		}
		if hi-lo <= run {
			ok = false
		}
		for n := int64(1); j < k; j, n = j+1, n+1 {
			routes = append(routes, added[j])
			ranks = append(ranks, lo+(hi-lo)/(run+1)*n)
		}
	}
	routes = append(routes, kept[i:]...)
	ranks = append(ranks, keptRanks[i:]...)
	return routes, ranks, ok
}

// with is the index of routes (ranked by ranks), which differ from the
// routes x indexes by removed and added. Only the shards of the paths
// those have are copied, unless the path count has outgrown the shards.
func (x *exactIndex) with(removed, added []*route, routes []*route, ranks []int64) exactIndex {
	touched := map[string]bool{}
	for _, r := range slices.Concat(removed, added) {
		if r.kind == pathExact {
			touched[r.path] = true
		}
	}
	if len(touched) == 0 {
		return *x
	}
	paths := x.paths() + len(touched) // at most; the bound is all the sizing needs
	if len(x.shards) == 0 || !shardsFit(len(x.shards), paths) {
		return buildExact(routes, ranks)
	}
	gone := map[*route]bool{}
	for _, r := range removed {
		gone[r] = true
	}
	rank := map[*route]int64{}
	for _, r := range added {
		rank[r] = 0
	}
	for i, r := range routes {
		if _, ok := rank[r]; ok {
			rank[r] = ranks[i]
		}
	}
	nx := exactIndex{seed: x.seed, shards: slices.Clone(x.shards)}
	copied := map[int]bool{}
	for path := range touched {
		si := nx.shard(path)
		if !copied[si] {
			nx.shards[si] = maps.Clone(nx.shards[si])
			copied[si] = true
		}
		m := nx.shards[si]
		var bucket []entry
		for _, e := range m[path] {
			if !gone[e.r] {
				bucket = append(bucket, e)
			}
		}
		for _, r := range added {
			if r.kind == pathExact && r.path == path {
				bucket = append(bucket, entry{r: r, prio: r.priority, rank: rank[r]})
			}
		}
		if len(bucket) == 0 {
			delete(m, path)
			continue
		}
		slices.SortFunc(bucket, func(a, b entry) int { return cmp.Compare(a.rank, b.rank) })
		m[path] = bucket
	}
	return nx
}

// regexKey is the literal text every path a regex route matches starts
// with. The expression is anchored at the start, so its literal prefix is
// one. The prefix stops before U+FFFD because the regexp engine reads an
// invalid byte of the path as that rune, so the bytes need not be equal.
func regexKey(r *route) string {
	p, _ := r.re.LiteralPrefix()
	if i := strings.IndexRune(p, utf8.RuneError); i >= 0 {
		p = p[:i]
	}
	return p
}

func (n *trieNode) insert(key string, e entry) {
	for key != "" {
		i, c := n.child(key[0])
		if c == nil {
			n.addChild(&trieNode{label: key, items: []entry{e}})
			return
		}
		l := commonPrefixLen(key, c.label)
		if l < len(c.label) {
			mid := &trieNode{label: c.label[:l], first: []byte{c.label[l]}, children: []*trieNode{c}}
			c.label = c.label[l:]
			n.children[i] = mid
			c = mid
		}
		key, n = key[l:], c
	}
	n.items = append(n.items, e)
}

func (n *trieNode) addChild(c *trieNode) {
	b := c.label[0]
	i := 0
	for i < len(n.first) && n.first[i] < b {
		i++
	}
	n.first = append(n.first, 0)
	copy(n.first[i+1:], n.first[i:])
	n.first[i] = b
	n.children = append(n.children, nil)
	copy(n.children[i+1:], n.children[i:])
	n.children[i] = c
}

func (n *trieNode) link(up *trieNode) {
	n.up = up
	if len(n.items) > 0 {
		up = n
	}
	for _, c := range n.children {
		c.link(up)
	}
}

// child finds the child whose label starts with b.
func (n *trieNode) child(b byte) (int, *trieNode) {
	lo, hi := 0, len(n.first)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if n.first[m] < b {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(n.first) && n.first[lo] == b {
		return lo, n.children[lo]
	}
	return -1, nil
}

// deepest returns the deepest node with items whose key is a prefix of
// path, or nil.
func (n *trieNode) deepest(path []byte) *trieNode {
	var found *trieNode
	for {
		if len(n.items) > 0 {
			found = n
		}
		if len(path) == 0 {
			return found
		}
		_, c := n.child(path[0])
		if c == nil || len(path) < len(c.label) || string(path[:len(c.label)]) != c.label {
			return found
		}
		path, n = path[len(c.label):], c
	}
}

func commonPrefixLen(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// cursor is the last candidate a lookup rejected, as its position in the
// merged order: priority (higher first), then host list (more specific
// first), then rank in that list.
type cursor struct {
	started bool
	prio    int
	list    int
	rank    int64
}

// after reports whether e from host list i comes after c.
func (c *cursor) after(e *entry, i int) bool {
	if !c.started || e.prio < c.prio {
		return true
	}
	if e.prio > c.prio {
		return false
	}
	return i > c.list || i == c.list && e.rank > c.rank
}

// next returns the first entry of s after c, or nil. s is in rank order,
// so in one list the entries after c form a suffix of s.
func (c *cursor) next(s []entry, i int) *entry {
	lo, hi := 0, len(s)
	if c.started {
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if c.after(&s[m], i) {
				hi = m
			} else {
				lo = m + 1
			}
		}
	}
	if lo < len(s) {
		return &s[lo]
	}
	return nil
}

// before reports whether a from host list ai precedes b from list bi.
func before(a *entry, ai int, b *entry, bi int) bool {
	if a.prio != b.prio {
		return a.prio > b.prio
	}
	if ai != bi {
		return ai < bi
	}
	return a.rank < b.rank
}
