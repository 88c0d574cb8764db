package dataplane

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// maxHostLists bounds how many host lists one lookup merges: the exact
// list, wildcard suffix lists (one per label) and the any-host list.
const maxHostLists = 10

// requestView is what route matching reads. Every slice aliases the
// request or a caller's scratch buffer; building it does not allocate.
type requestView struct {
	method []byte
	host   []byte // lower-case, port and trailing dot removed
	path   []byte // raw, exactly as received and forwarded
	query  []byte // raw, without '?'
	hdr    *fasthttp.RequestHeader
}

// splitRequestURI separates a raw request-target into path and query, and
// returns the authority of an absolute-form target (RFC 9112 3.2.2), which
// then overrides Host. Nothing is decoded or normalized.
func splitRequestURI(uri []byte) (authority, path, query []byte) {
	if len(uri) > 0 && uri[0] != '/' && uri[0] != '*' {
		if i := bytes.Index(uri, []byte("://")); i > 0 {
			rest := uri[i+3:]
			end := bytes.IndexAny(rest, "/?")
			if end < 0 {
				end = len(rest)
			}
			authority, uri = rest[:end], rest[end:]
		}
	}
	if i := bytes.IndexByte(uri, '#'); i >= 0 {
		uri = uri[:i]
	}
	if i := bytes.IndexByte(uri, '?'); i >= 0 {
		path, query = uri[:i], uri[i+1:]
	} else {
		path = uri
	}
	return authority, path, query
}

// normalizeHost lower-cases host into buf and drops the port and a trailing
// dot. A host that does not fit buf matches only any-host routes.
func normalizeHost(buf []byte, host []byte) []byte {
	if len(host) > 0 && host[0] == '[' {
		if i := bytes.IndexByte(host, ']'); i > 0 {
			host = host[:i+1]
		}
	} else if i := bytes.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	if len(host) > 0 && host[len(host)-1] == '.' {
		host = host[:len(host)-1]
	}
	if len(host) > cap(buf) {
		return buf[:0]
	}
	buf = buf[:len(host)]
	for i, c := range host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return buf
}

// lookup returns the winning route for v, or nil. Candidates are the
// routes whose path can match (from each host list's index), taken in
// precedence order: priority, then host specificity (which list a route
// comes from), then the list's own order (path specificity, name). The
// first that matches v in full wins. Nothing here allocates or writes
// shared state; the merge keeps only a cursor, so it needs no scratch.
func (lt *listenerTable) lookup(v *requestView) *route {
	var lists [maxHostLists]*routeList
	n := 0
	if len(v.host) > 0 {
		if l, ok := lt.exact[string(v.host)]; ok {
			lists[n] = l
			n++
		}
		if len(lt.wild) > 0 {
			for i := 0; i < len(v.host) && n < maxHostLists-1; i++ {
				if v.host[i] != '.' {
					continue
				}
				if l, ok := lt.wild[string(v.host[i:])]; ok {
					lists[n] = l
					n++
				}
			}
		}
	}
	if lt.anyHost != nil {
		lists[n] = lt.anyHost
		n++
	}
	// Per list, the candidates are the exact-path bucket and the trie
	// nodes on the path (deepest and its up chain).
	var exact [maxHostLists][]entry
	var deep [maxHostLists]*trieNode
	for i := 0; i < n; i++ {
		exact[i] = lists[i].exact.get(v.path)
		deep[i] = lists[i].trie.deepest(v.path)
	}
	var c cursor
	for {
		var best *entry
		bestList := 0
		for i := 0; i < n; i++ {
			if e := c.next(exact[i], i); e != nil && (best == nil || before(e, i, best, bestList)) {
				best, bestList = e, i
			}
			for nd := deep[i]; nd != nil; nd = nd.up {
				if e := c.next(nd.items, i); e != nil && (best == nil || before(e, i, best, bestList)) {
					best, bestList = e, i
				}
			}
		}
		if best == nil {
			return nil
		}
		if best.r.matches(v) {
			return best.r
		}
		c = cursor{started: true, prio: best.prio, list: bestList, rank: best.rank}
	}
}

func (r *route) matches(v *requestView) bool {
	switch r.kind {
	case pathExact:
		if string(v.path) != r.path {
			return false
		}
	case pathPrefix:
		if !bytes.HasPrefix(v.path, []byte(r.path)) {
			return false
		}
	case pathRegex:
		if len(v.path) > maxRegexInput || !r.re.Match(v.path) {
			return false
		}
	}
	if len(r.methods) > 0 {
		ok := false
		for _, m := range r.methods {
			if string(v.method) == m {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for i := range r.headers {
		m := &r.headers[i]
		val, found := peekHeader(v.hdr, m.name)
		if m.test(val, found) == m.invert {
			return false
		}
	}
	for i := range r.query {
		m := &r.query[i]
		val, found := peekQuery(v.query, m.name)
		if m.test(val, found) == m.invert {
			return false
		}
	}
	return true
}

func (m *valueMatcher) test(val []byte, found bool) bool {
	switch {
	case !found:
		return false
	case m.re != nil:
		return len(val) <= maxRegexInput && m.re.Match(val)
	case m.hasVal:
		return string(val) == m.value
	}
	return true
}

// peekHeader finds a header by lower-case name, ignoring the case of the
// received name (names are not normalized, so Peek would be case-sensitive).
func peekHeader(h *fasthttp.RequestHeader, lname string) ([]byte, bool) {
	if h == nil {
		return nil, false
	}
	for k, v := range h.All() {
		if equalFoldLower(k, lname) {
			return v, true
		}
	}
	return nil, false
}

// peekQuery finds a query parameter by its raw (undecoded) name.
func peekQuery(q []byte, name string) ([]byte, bool) {
	for len(q) > 0 {
		var pair []byte
		if i := bytes.IndexByte(q, '&'); i >= 0 {
			pair, q = q[:i], q[i+1:]
		} else {
			pair, q = q, nil
		}
		k, val, _ := bytes.Cut(pair, []byte("="))
		if string(k) == name {
			return val, true
		}
	}
	return nil, false
}

// equalFoldLower compares b case-insensitively with lower, which is
// already lower-case ASCII.
func equalFoldLower(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
