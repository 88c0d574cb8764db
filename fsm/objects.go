package fsm

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"
)

// ParseKind accepts a kind as written in manifests, API paths and the CLI:
// "route", "routes" and "Route" all give KindRoute.
func ParseKind(s string) (Kind, error) {
	k := strings.ToLower(strings.TrimSpace(s))
	for _, kind := range Kinds {
		if k == string(kind) || k == string(kind)+"s" {
			return kind, nil
		}
	}
	return "", invalidf("kind", "unknown kind %q (want one of listener, pool, route, vip, rollout, certificate, acme_issuer)", s)
}

func validKind(k Kind) bool {
	for _, kind := range Kinds {
		if k == kind {
			return true
		}
	}
	return false
}

// Get returns a managed object (listener, route, pool, vip) by kind and name.
func (c *Config) Get(kind Kind, name string) (Object, bool) {
	spec, idx, ok := c.lookup(kind, name)
	if !ok {
		return Object{}, false
	}
	if cs, isCert := spec.(*CertificateSpec); isCert {
		// A key, even sealed, never leaves the replicated state.
		r := cs.Redacted()
		spec = &r
	}
	if is, isIssuer := spec.(*ACMEIssuerSpec); isIssuer {
		// Nor does an external account binding's HMAC key.
		r := is.Redacted()
		spec = &r
	}
	return Object{Kind: kind, Name: name, Spec: canonicalJSON(spec), ModifyIndex: idx}, true
}

// List returns every object of kind, sorted by name.
func (c *Config) List(kind Kind) []Object {
	names := c.names(kind)
	out := make([]Object, 0, len(names))
	for _, n := range names {
		if o, ok := c.Get(kind, n); ok {
			out = append(out, o)
		}
	}
	return out
}

// Objects returns every managed object in Kinds order, then by name: the
// export format, which is also the apply format.
func (c *Config) Objects() []Object {
	var out []Object
	for _, k := range Kinds {
		out = append(out, c.List(k)...)
	}
	return out
}

// names returns the sorted names of kind's objects.
func (c *Config) names(kind Kind) []string {
	var names []string
	switch kind {
	case KindListener:
		names = sortedKeys(c.Listeners)
	case KindRoute:
		names = sortedKeys(c.Routes)
	case KindPool:
		names = sortedKeys(c.Pools)
	case KindVIP:
		names = sortedKeys(c.VIPs)
	case KindRollout:
		names = sortedKeys(c.Rollouts)
	case KindACMEIssuer:
		names = sortedKeys(c.ACMEIssuers)
	case KindCertificate:
		names = sortedKeys(c.Certificates)
	}
	sort.Strings(names)
	return names
}

// lookup returns a pointer to the stored spec (never to be modified) and
// the object's modify index.
func (c *Config) lookup(kind Kind, name string) (spec any, modifyIndex uint64, ok bool) {
	if c == nil {
		return nil, 0, false
	}
	switch kind {
	case KindListener:
		if o, ok := c.Listeners[name]; ok && o != nil {
			return &o.Spec, o.ModifyIndex, true
		}
	case KindRoute:
		if o, ok := c.Routes[name]; ok && o != nil {
			return &o.Spec, o.ModifyIndex, true
		}
	case KindPool:
		if o, ok := c.Pools[name]; ok && o != nil {
			return &o.Spec, o.ModifyIndex, true
		}
	case KindVIP:
		if o, ok := c.VIPs[name]; ok && o != nil {
			return &o.Spec, o.ModifyIndex, true
		}
	case KindRollout:
		if o, ok := c.Rollouts[name]; ok && o != nil {
			return &o.Spec, o.ModifyIndex, true
		}
	case KindACMEIssuer:
		if o, ok := c.ACMEIssuers[name]; ok && o != nil {
			return &o.Spec, o.ModifyIndex, true
		}
	case KindCertificate:
		if o, ok := c.Certificates[name]; ok && o != nil {
			return &o.Spec, o.ModifyIndex, true
		}
	}
	return nil, 0, false
}

// DecodeSpec decodes a spec strictly: unknown fields, wrong types and
// trailing data are refused with a *FieldError whose path starts at
// "spec". It returns *ListenerSpec, *RouteSpec, *PoolSpec or *VIPSpec. It
// does not validate values; Next does.
func DecodeSpec(kind Kind, spec json.RawMessage) (any, error) {
	return decodeSpec("spec", kind, spec)
}

func decodeSpec(prefix string, kind Kind, raw json.RawMessage) (any, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, invalidf(prefix, "required")
	}
	v, err := decodeGeneric(raw)
	if err != nil {
		return nil, invalidf(prefix, "malformed JSON: %v", err)
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, invalidf(prefix, "want an object, got %s", jsonTypeName(v))
	}
	switch kind {
	case KindListener:
		return decodeStrict[ListenerSpec](prefix, raw, v)
	case KindRoute:
		return decodeStrict[RouteSpec](prefix, raw, v)
	case KindPool:
		return decodeStrict[PoolSpec](prefix, raw, v)
	case KindVIP:
		return decodeStrict[VIPSpec](prefix, raw, v)
	case KindRollout:
		return decodeStrict[RolloutSpec](prefix, raw, v)
	case KindACMEIssuer:
		return decodeStrict[ACMEIssuerSpec](prefix, raw, v)
	case KindCertificate:
		return decodeStrict[CertificateSpec](prefix, raw, v)
	}
	return nil, invalidf("kind", "unknown kind %q", kind)
}

// canonicalJSON is the normalized form of a spec: equal specs give equal
// bytes (map keys sorted, durations as strings, empty parts omitted).
func canonicalJSON(spec any) json.RawMessage {
	b, err := json.Marshal(spec)
	if err != nil {
		// Specs are plain data whose every type marshals; reaching this
		// means a programming error in types.go.
		panic("fsm: marshal spec: " + err.Error())
	}
	return b
}

// normalize decodes, validates and re-encodes an object's spec. It returns
// the canonical spec value (decoded again from its canonical bytes, so equal
// documents give deeply equal values) and those bytes.
func normalize(prefix string, kind Kind, raw json.RawMessage) (any, json.RawMessage, error) {
	spec, err := decodeSpec(prefix, kind, raw)
	if err != nil {
		return nil, nil, err
	}
	if err := validateSpec(prefix, kind, spec); err != nil {
		return nil, nil, err
	}
	// Encoding drops empty lists and maps, which can leave an enclosing
	// omitzero struct empty only on the next pass ("match: {hosts: []}"), so
	// encode and decode until the text stops changing: a stored spec is then
	// exactly what reading it back and exporting it again produce.
	canon := canonicalJSON(spec)
	for range 4 {
		again := newSpec(kind)
		if err := json.Unmarshal(canon, again); err != nil {
			panic("fsm: re-decode canonical spec: " + err.Error())
		}
		next := canonicalJSON(again)
		if bytes.Equal(next, canon) {
			return again, canon, nil
		}
		canon = next
	}
	panic("fsm: canonical spec does not settle: " + string(canon))
}

func newSpec(kind Kind) any {
	switch kind {
	case KindListener:
		return new(ListenerSpec)
	case KindRoute:
		return new(RouteSpec)
	case KindPool:
		return new(PoolSpec)
	case KindVIP:
		return new(VIPSpec)
	case KindRollout:
		return new(RolloutSpec)
	case KindACMEIssuer:
		return new(ACMEIssuerSpec)
	case KindCertificate:
		return new(CertificateSpec)
	}
	panic("fsm: no spec type for kind " + string(kind))
}
