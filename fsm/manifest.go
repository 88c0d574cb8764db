package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// maxManifestDepth bounds nesting so a hostile manifest cannot exhaust the
// stack; real specs nest fewer than ten levels.
const maxManifestDepth = 100

// ParseManifest reads manifest documents `{kind, name, spec}`: multi-document
// YAML (separated by ---), a JSON object, or a JSON array of objects. YAML is
// first turned into plain values and then into JSON, so exactly the same
// strict JSON decoding applies to both forms. Every spec is decoded strictly,
// validated (references excepted: Next checks those against the document)
// and normalized. Errors are *FieldError with paths like
// "documents[2].spec.port", counting non-empty documents from 0. A manifest
// may set modify_index (as `rafter get` prints it); Next ignores it.
func ParseManifest(data []byte) ([]Object, error) {
	docs, err := manifestDocuments(data)
	if err != nil {
		return nil, err
	}
	type key struct {
		kind Kind
		name string
	}
	seen := make(map[key]int, len(docs))
	objs := make([]Object, 0, len(docs))
	for i, d := range docs {
		p := fmt.Sprintf("documents[%d]", i)
		o, err := parseDocument(p, d)
		if err != nil {
			return nil, err
		}
		k := key{o.Kind, o.Name}
		if j, dup := seen[k]; dup {
			return nil, invalidf(p+".name", "%s %q is already defined by documents[%d]", o.Kind, o.Name, j)
		}
		seen[k] = i
		objs = append(objs, o)
	}
	return objs, nil
}

// MaxManifestDocuments bounds the documents of one manifest: parsing is
// the costly part of an apply (about 80 µs per small YAML document), and a
// manifest of this size still fits one Raft entry.
const MaxManifestDocuments = 25000

// manifestDocuments splits data into generic JSON values, one per document.
func manifestDocuments(data []byte) ([]any, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') && json.Valid(trimmed) {
		v, err := decodeGeneric(trimmed)
		if err != nil {
			return nil, invalidf("documents", "malformed JSON: %v", err)
		}
		if a, ok := v.([]any); ok {
			if len(a) > MaxManifestDocuments {
				return nil, invalidf("documents", "%d documents, at most %d in one manifest", len(a), MaxManifestDocuments)
			}
			return a, nil
		}
		return []any{v}, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []any
	for parsed := 0; ; parsed++ {
		// Counted before decoding, empty documents included: each costs
		// parsing time whatever it holds.
		if parsed > MaxManifestDocuments {
			return nil, invalidf("documents", "more than %d documents in one manifest", MaxManifestDocuments)
		}
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, invalidf(fmt.Sprintf("documents[%d]", len(docs)), "malformed YAML: %v", err)
		}
		keepTimestampText(&n)
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, invalidf(fmt.Sprintf("documents[%d]", len(docs)), "malformed YAML: %v", err)
		}
		if v == nil {
			continue // an empty document, such as after a trailing ---
		}
		p := fmt.Sprintf("documents[%d]", len(docs))
		g, err := fromYAML(p, v, 0)
		if err != nil {
			return nil, err
		}
		docs = append(docs, g)
	}
}

// keepTimestampText makes plain scalars that look like dates decode as the
// text written: every string field of a spec is text, and a body such as
// "2025-01-02" must not come back as "2025-01-02T00:00:00Z". Aliases are not
// followed: their anchors are visited where they are defined.
func keepTimestampText(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!timestamp" && n.Style&(yaml.TaggedStyle) == 0 {
		n.Tag = "!!str"
	}
	for _, c := range n.Content {
		keepTimestampText(c)
	}
}

// fromYAML converts a decoded YAML value into the generic values that
// encoding/json produces (map[string]any, []any, string, json.Number, bool,
// nil).
func fromYAML(path string, v any, depth int) (any, error) {
	if depth > maxManifestDepth {
		return nil, invalidf(path, "nested too deeply")
	}
	switch x := v.(type) {
	case nil, bool, string:
		return x, nil
	case int:
		return json.Number(strconv.FormatInt(int64(x), 10)), nil
	case int64:
		return json.Number(strconv.FormatInt(x, 10)), nil
	case uint64:
		return json.Number(strconv.FormatUint(x, 10)), nil
	case uint:
		return json.Number(strconv.FormatUint(uint64(x), 10)), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, invalidf(path, "want a finite number")
		}
		return json.Number(strconv.FormatFloat(x, 'g', -1, 64)), nil
	case time.Time:
		return x.Format(time.RFC3339Nano), nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			g, err := fromYAML(fmt.Sprintf("%s[%d]", path, i), e, depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = g
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for _, k := range sortedKeys(x) {
			g, err := fromYAML(joinPath(path, k), x[k], depth+1)
			if err != nil {
				return nil, err
			}
			out[k] = g
		}
		return out, nil
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			ks, ok := k.(string)
			if !ok {
				return nil, invalidf(path, "keys must be strings, got %v", k)
			}
			out[ks] = e
		}
		return fromYAML(path, out, depth)
	}
	return nil, invalidf(path, "unsupported YAML value of type %T", v)
}

func parseDocument(p string, d any) (Object, error) {
	m, ok := d.(map[string]any)
	if !ok {
		return Object{}, invalidf(p, "want an object with kind, name and spec, got %s", jsonTypeName(d))
	}
	for _, k := range sortedKeys(m) {
		switch k {
		case "kind", "name", "spec", "modify_index":
		default:
			return Object{}, invalidf(joinPath(p, k), "unknown field (want kind, name, spec)")
		}
	}
	var o Object
	ks, ok := m["kind"].(string)
	if !ok {
		if m["kind"] == nil {
			return Object{}, invalidf(p+".kind", "required")
		}
		return Object{}, invalidf(p+".kind", "want a string, got %s", jsonTypeName(m["kind"]))
	}
	kind, err := ParseKind(ks)
	if err != nil {
		return Object{}, prefixed(p, err)
	}
	o.Kind = kind
	name, ok := m["name"].(string)
	if !ok && m["name"] != nil {
		return Object{}, invalidf(p+".name", "want a string, got %s", jsonTypeName(m["name"]))
	}
	if err := validateName(p+".name", name); err != nil {
		return Object{}, err
	}
	o.Name = name
	if mi, present := m["modify_index"]; present && mi != nil {
		n, ok := mi.(json.Number)
		if !ok {
			return Object{}, invalidf(p+".modify_index", "want a non-negative integer, got %s", jsonTypeName(mi))
		}
		u, err := strconv.ParseUint(string(n), 10, 64)
		if err != nil {
			return Object{}, invalidf(p+".modify_index", "want a non-negative integer, got %s", n)
		}
		o.ModifyIndex = u
	}
	spec, present := m["spec"]
	if !present || spec == nil {
		return Object{}, invalidf(p+".spec", "required")
	}
	if _, ok := spec.(map[string]any); !ok {
		return Object{}, invalidf(p+".spec", "want an object, got %s", jsonTypeName(spec))
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		return Object{}, invalidf(p+".spec", "%v", err)
	}
	_, canon, err := normalize(p+".spec", kind, raw)
	if err != nil {
		return Object{}, err
	}
	o.Spec = canon
	return o, nil
}

// MarshalManifest writes objects as a manifest: "yaml" gives documents
// separated by "---" with keys in a stable order (kind, name, modify_index,
// then the spec's fields in declaration order); "json" gives a JSON array.
// ParseManifest reads either back to the same objects.
func MarshalManifest(objs []Object, format string) ([]byte, error) {
	switch strings.ToLower(format) {
	case "json":
		if objs == nil {
			objs = []Object{}
		}
		b, err := json.MarshalIndent(objs, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("marshal manifest: %w", err)
		}
		return append(b, '\n'), nil
	case "yaml", "yml":
		if len(objs) == 0 {
			return []byte{}, nil // the encoder refuses to close an empty stream
		}
		var buf bytes.Buffer
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		for i, o := range objs {
			doc, err := objectNode(o)
			if err != nil {
				return nil, prefixed(fmt.Sprintf("documents[%d]", i), err)
			}
			if err := enc.Encode(doc); err != nil {
				return nil, fmt.Errorf("marshal manifest: documents[%d]: %w", i, err)
			}
		}
		if err := enc.Close(); err != nil {
			return nil, fmt.Errorf("marshal manifest: %w", err)
		}
		return buf.Bytes(), nil
	}
	return nil, invalidf("format", "unknown manifest format %q (want yaml or json)", format)
}

func objectNode(o Object) (*yaml.Node, error) {
	doc := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	add := func(k string, v *yaml.Node) {
		doc.Content = append(doc.Content, strNode(k), v)
	}
	add("kind", strNode(string(o.Kind)))
	add("name", strNode(o.Name))
	if o.ModifyIndex != 0 {
		add("modify_index", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatUint(o.ModifyIndex, 10)})
	}
	dec := json.NewDecoder(bytes.NewReader(o.Spec))
	dec.UseNumber()
	spec, err := jsonNode(dec, 0)
	if err != nil {
		return nil, invalidf("spec", "%v", err)
	}
	add("spec", spec)
	return doc, nil
}

func strNode(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

// jsonNode builds a YAML node from a JSON token stream, keeping the order
// of object keys.
func jsonNode(dec *json.Decoder, depth int) (*yaml.Node, error) {
	if depth > maxManifestDepth {
		return nil, errors.New("nested too deeply")
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		var n *yaml.Node
		switch t {
		case '{':
			n = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				v, err := jsonNode(dec, depth+1)
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, strNode(k), v)
			}
		case '[':
			n = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
			for dec.More() {
				v, err := jsonNode(dec, depth+1)
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, v)
			}
		default:
			return nil, fmt.Errorf("unexpected %v", t)
		}
		if _, err := dec.Token(); err != nil { // the closing delimiter
			return nil, err
		}
		return n, nil
	case string:
		return strNode(t), nil
	case json.Number:
		tag := "!!int"
		if strings.ContainsAny(string(t), ".eE") {
			tag = "!!float"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: string(t)}, nil
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(t)}, nil
	case nil:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
	}
	return nil, fmt.Errorf("unexpected JSON token %v", tok)
}
