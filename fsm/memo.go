package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
)

// MaxMemoBytes bounds what one Memo keeps (keys and values counted); when
// an insert would pass it, the memo starts empty again.
const MaxMemoBytes = 32 << 20

// Memo remembers the results of the pure, costly steps of applying a
// manifest: parsing a YAML document, normalizing a spec, and the
// canonical JSON of a published object. Re-applying a manifest of 10,000
// mostly unchanged objects then costs map lookups instead of a YAML parse
// and three JSON round trips per object.
//
// Every answer is exactly what the uncached step would compute, so a Memo
// changes no result, only its cost: Next with a Memo and Next without one
// return equal documents and equal errors. Only successes are kept; every
// error comes from the uncached step. A Memo is safe for concurrent use.
type Memo struct {
	mu sync.Mutex
	// docs maps the text of one YAML document to the objects it parses to.
	docs map[string][]Object
	// specs holds canonical specs that normalize accepted and returned
	// unchanged (normalize(kind, s) == s), keyed by kind and text.
	specs map[specKey]struct{}
	// objs maps a published object's spec (its pointer: published objects
	// never change) to its canonical JSON.
	objs  map[any]json.RawMessage
	bytes int
}

type specKey struct {
	kind Kind
	text string
}

// NewMemo returns an empty Memo.
func NewMemo() *Memo {
	m := &Memo{}
	m.reset()
	return m
}

func (m *Memo) reset() {
	m.docs = map[string][]Object{}
	m.specs = map[specKey]struct{}{}
	m.objs = map[any]json.RawMessage{}
	m.bytes = 0
}

// charge accounts n more bytes, emptying the memo first when they would
// not fit. Called with mu held.
func (m *Memo) charge(n int) bool {
	if n > MaxMemoBytes {
		return false
	}
	if m.bytes+n > MaxMemoBytes {
		m.reset()
	}
	m.bytes += n
	return true
}

// objectCost approximates what one remembered entry costs beyond its text.
const objectCost = 64

// canonicalOf returns canonicalJSON(spec) for spec, a pointer to the spec
// of a published object.
func (m *Memo) canonicalOf(spec any) json.RawMessage {
	if m == nil {
		return canonicalJSON(spec)
	}
	m.mu.Lock()
	b, ok := m.objs[spec]
	m.mu.Unlock()
	if ok {
		return b
	}
	b = canonicalJSON(spec)
	m.mu.Lock()
	if m.charge(len(b) + objectCost) {
		m.objs[spec] = b
	}
	m.mu.Unlock()
	return b
}

// normalize is normalize(prefix, kind, raw), remembering raw when it is
// already canonical. A remembered raw is still decoded (the caller gets a
// value of its own) but neither validated nor re-encoded again.
func (m *Memo) normalize(prefix string, kind Kind, raw json.RawMessage) (any, json.RawMessage, error) {
	if m == nil {
		return normalize(prefix, kind, raw)
	}
	if m.isCanonical(kind, raw) {
		spec := newSpec(kind)
		if err := json.Unmarshal(raw, spec); err != nil {
			panic("fsm: re-decode canonical spec: " + err.Error())
		}
		return spec, raw, nil
	}
	spec, canon, err := normalize(prefix, kind, raw)
	if err == nil && bytes.Equal(canon, raw) {
		m.mu.Lock()
		if m.charge(len(raw) + objectCost) {
			m.specs[specKey{kind, string(raw)}] = struct{}{}
		}
		m.mu.Unlock()
	}
	return spec, canon, err
}

func (m *Memo) isCanonical(kind Kind, raw json.RawMessage) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.specs[specKey{kind, string(raw)}]
	return ok
}

// unchanged reports, without decoding anything, whether putting raw as
// (kind, name) into c would keep c's object as it is: raw is a spec
// normalize accepted and returned as is, and it equals the canonical JSON
// of c's object. A pool holding leased backends is never decided here:
// keepLeased merges those into the spec first.
func (m *Memo) unchanged(c *Config, kind Kind, name string, raw json.RawMessage) bool {
	if m == nil {
		return false
	}
	old, _, ok := c.lookup(kind, name)
	if !ok {
		return false
	}
	if ps, isPool := old.(*PoolSpec); isPool {
		for _, be := range ps.Backends {
			if be.Lease != 0 {
				return false
			}
		}
	}
	return m.isCanonical(kind, raw) && bytes.Equal(m.canonicalOf(old), raw)
}

// ParseManifest is the package's ParseManifest, remembering the objects
// of every YAML document it parsed, so a manifest sent again costs a
// split and a lookup per document. JSON manifests are parsed as usual.
// Any error, and any manifest the split below cannot take apart safely,
// goes through the uncached parser, so errors read the same.
func (m *Memo) ParseManifest(data []byte) ([]Object, error) {
	if m == nil {
		return ParseManifest(data)
	}
	chunks, ok := splitYAMLDocuments(data)
	if !ok || len(chunks) > MaxManifestDocuments {
		return ParseManifest(data)
	}
	type key struct {
		kind Kind
		name string
	}
	seen := make(map[key]struct{}, len(chunks))
	objs := make([]Object, 0, len(chunks))
	for _, ch := range chunks {
		m.mu.Lock()
		got, hit := m.docs[string(ch)]
		m.mu.Unlock()
		if !hit {
			docs, err := manifestDocuments(ch)
			if err != nil {
				return ParseManifest(data)
			}
			got = make([]Object, 0, len(docs))
			for _, d := range docs {
				o, err := parseDocument("documents", d)
				if err != nil {
					return ParseManifest(data)
				}
				got = append(got, o)
			}
			size := len(ch) + objectCost
			for _, o := range got {
				size += len(o.Name) + len(o.Spec) + objectCost
			}
			m.mu.Lock()
			if m.charge(size) {
				m.docs[string(ch)] = got
			}
			m.mu.Unlock()
		}
		for _, o := range got {
			k := key{o.Kind, o.Name}
			if _, dup := seen[k]; dup {
				return ParseManifest(data)
			}
			seen[k] = struct{}{}
			objs = append(objs, o)
		}
	}
	if len(objs) > MaxManifestDocuments {
		return ParseManifest(data)
	}
	return objs, nil
}

// splitYAMLDocuments cuts a YAML stream before every document start
// marker ("---" at the start of a line, followed by a blank or the line's
// end). YAML forbids such a line inside any scalar, quoted or block, so
// each piece parses to exactly the documents the whole stream has there.
// Streams that are JSON, or that hold directives ("%YAML", "%TAG", which
// belong to the document after them) or a BOM, are refused (ok false).
func splitYAMLDocuments(data []byte) (chunks [][]byte, ok bool) {
	t := bytes.TrimSpace(data)
	if len(t) == 0 || t[0] == '{' || t[0] == '[' || bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
		return nil, false
	}
	start := 0
	for off := 0; off < len(data); {
		end := bytes.IndexByte(data[off:], '\n')
		line := data[off:]
		next := len(data)
		if end >= 0 {
			line = data[off : off+end]
			next = off + end + 1
		}
		if len(line) > 0 && line[0] == '%' {
			return nil, false
		}
		if off > start && isDocumentStart(line) {
			chunks = append(chunks, data[start:off])
			start = off
		}
		off = next
	}
	chunks = append(chunks, data[start:])
	return chunks, true
}

func isDocumentStart(line []byte) bool {
	if !bytes.HasPrefix(line, []byte("---")) {
		return false
	}
	rest := line[3:]
	return len(rest) == 0 || rest[0] == ' ' || rest[0] == '\t' || rest[0] == '\r'
}

// String describes the memo's size, for logs and tests.
func (m *Memo) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return fmt.Sprintf("memo{docs %d, specs %d, objects %d, %d bytes}", len(m.docs), len(m.specs), len(m.objs), m.bytes)
}
