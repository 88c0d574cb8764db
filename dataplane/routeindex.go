package dataplane

import (
	"strings"
	"unicode/utf8"
)

// routeList is the routes of one host key (an exact host, a wildcard
// suffix or any host) in precedence order, indexed by path so a lookup
// reaches only the routes whose path can match: exact paths by a map,
// prefixes and the literal prefixes of regexes by a radix trie. The cost
// of a lookup is then the path length plus the candidates it rejects, not
// the number of routes.
type routeList struct {
	// routes in precedence order (lessRoute); an entry's rank is its
	// position here.
	routes []*route
	exact  map[string][]entry
	trie   trieNode
}

// entry is a route as one list ranks it. prio is copied from the route so
// ordering candidates does not chase the pointer.
type entry struct {
	r    *route
	prio int
	rank int32
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

// newRouteList indexes routes, which must already be in precedence order.
func newRouteList(routes []*route) *routeList {
	l := &routeList{routes: routes}
	for i, r := range routes {
		e := entry{r: r, prio: r.priority, rank: int32(i)}
		switch r.kind {
		case pathExact:
			if l.exact == nil {
				l.exact = map[string][]entry{}
			}
			l.exact[r.path] = append(l.exact[r.path], e)
		case pathPrefix:
			l.trie.insert(r.path, e)
		case pathRegex:
			l.trie.insert(regexKey(r), e)
		}
	}
	l.trie.link(nil)
	return l
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
	rank    int32
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
