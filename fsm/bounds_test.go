package fsm

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// boundsBase holds listener web, pools app and p0..p100 and no nodes (so
// VIP candidates are not checked against members).
func boundsBase(t testing.TB) *Config {
	t.Helper()
	objs := []Object{obj(KindListener, "web", `{"port":8080}`), obj(KindPool, "app", `{}`)}
	for i := range maxSplit + 1 {
		objs = append(objs, obj(KindPool, fmt.Sprintf("p%d", i), `{}`))
	}
	objs = append(objs, obj(KindRoute, "rt", `{"listener":"web","action":{"split":[{"pool":"p0","weight":1}]}}`))
	objs = append(objs, obj(KindCertificate, "c1", sealedCertSpec), obj(KindCertificate, "c2", sealedCertSpec))
	return mustNext(t, Empty(), ApplyCommand(objs))
}

// boundSamples are valid specs that between them set every optional part
// of every spec type, so that every numeric field is reachable.
var boundSamples = map[string]struct {
	kind Kind
	spec string
}{
	"listener": {KindListener, `{"port":81,"protocol":"https","tls":{"cert_file":"c.pem","key_file":"k.pem"},
		"limits":{"max_header_bytes":1,"max_body_bytes":1,"read_timeout":"1s","write_timeout":"1s","idle_timeout":"1s","max_conns":1}}`},
	"route-split": {KindRoute, `{"listener":"web","priority":1,
		"match":{"hosts":["a.com"],"path":{"prefix":"/a"},"methods":["GET"],"headers":[{"name":"x-a","value":"b"}],"query":[{"name":"q","regex":"a"}]},
		"action":{"split":[{"pool":"app","weight":1}],"sticky":{"header":"x-user"}},"rewrite":{"path_prefix":"/b","host":"b.com"},
		"headers_add":{"X-A":"1"},"headers_remove":["x-b"],"response_headers_add":{"X-C":"1"},"response_headers_remove":["x-d"],
		"timeouts":{"connect":"1s","request":"1s","idle":"1s"},"retries":{"attempts":1,"on":["503"],"budget_percent":10},"max_body":1}`},
	"route-redirect": {KindRoute, `{"listener":"web","match":{"path":{"regex":"/r/[0-9]+"}},"action":{"redirect":{"scheme":"https","host":"a.com","port":443,"path":"/x","code":301}}}`},
	"route-respond": {KindRoute, `{"listener":"web","match":{"path":{"exact":"/x"},"headers":[{"name":"x-r","regex":"a+"}],"query":[{"name":"q","value":"1"}]},
		"action":{"respond":{"status":200,"body":"b","headers":{"X-A":"b"}}}}`},
	"pool": {KindPool, `{"balancer":"hash","hash":{"header":"x-u"},"zone_aware":true,"zone_min_healthy_percent":50,
		"health_check":{"path":"/h","expect":200,"host":"h.com","interval":"1s","timeout":"50ms","rise":1,"fall":1},
		"outlier":{"consecutive_5xx":1,"consecutive_connect_errors":1,"base_ejection":"1s","max_ejected_percent":10},
		"panic_threshold":10,"max_conns_per_backend":1,"max_conn_wait":"1s","backends":[{"addr":"10.0.0.1:80","weight":1,"zone":"z1"},{"addr":"10.0.0.2:80","source":"ec2"}],
		"discovery":{"ec2":{"tags":{"app":"x"},"port":80,"refresh":"30s"}}}`},
	"pool-cookie": {KindPool, `{"balancer":"hash","hash":{"cookie":"sid"}}`},
	"rollout": {KindRollout, `{"route":"rt","stable":"p0","canary":"p1","steps":[1,50,100],"interval":"2s",
		"min_requests":10,"max_error_rate":0.5,"max_p99":"1s","sticky":{"cookie":"sid"}}`},
	"rollout-ratio":  {KindRollout, `{"route":"rt","stable":"p0","canary":"p1","steps":[100],"interval":"1s","max_p99_ratio":2,"sticky":{"header":"x-user"}}`},
	"route-cookie":   {KindRoute, `{"listener":"web","action":{"split":[{"pool":"app","weight":1}],"sticky":{"cookie":"sid"}}}`},
	"vip":            {KindVIP, `{"provider":"aws-eip","allocation_id":"eipalloc-9","home_node":"n1","candidates":["n1"]}`},
	"vip-linux":      {KindVIP, `{"provider":"linux","address":"10.0.0.100/24","interface":"eth0","home_node":"n1"}`},
	"vip-private-ip": {KindVIP, `{"provider":"aws-private-ip","private_ip":"10.0.1.100","home_node":"n1","enis":{"n1":"eni-1"}}`},
	"vip-route":      {KindVIP, `{"provider":"aws-route","route_table_ids":["rtb-1"],"cidr":"10.200.0.10/32","home_node":"n1"}`},
}

// setPath sets the value at path ("limits.max_conns", "action.split[0].weight")
// in a decoded JSON document, creating objects on the way.
func setPath(t testing.TB, doc map[string]any, path string, v any) {
	t.Helper()
	var cur any = doc
	parts := strings.Split(path, ".")
	for i, part := range parts {
		name, idx := part, -1
		if j := strings.IndexByte(part, '['); j >= 0 {
			name = part[:j]
			n, err := strconv.Atoi(strings.TrimSuffix(part[j+1:], "]"))
			if err != nil {
				t.Fatalf("bad path %q", path)
			}
			idx = n
		}
		m, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("path %q: %q is not an object", path, name)
		}
		last := i == len(parts)-1
		if idx < 0 {
			if last {
				m[name] = v
				return
			}
			if m[name] == nil {
				m[name] = map[string]any{}
			}
			cur = m[name]
			continue
		}
		l, _ := m[name].([]any)
		if idx >= len(l) {
			t.Fatalf("path %q: %s has no element %d", path, name, idx)
		}
		if last {
			l[idx] = v
			return
		}
		cur = l[idx]
	}
}

func withValues(t testing.TB, spec string, set map[string]any) json.RawMessage {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal([]byte(spec), &doc); err != nil {
		t.Fatalf("sample: %v", err)
	}
	for _, p := range sortedKeys(set) {
		setPath(t, doc, p, set[p])
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func list(n int, f func(i int) any) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = f(i)
	}
	return out
}

func dict(n int, f func(i int) (string, any)) map[string]any {
	out := make(map[string]any, n)
	for i := range n {
		k, v := f(i)
		out[k] = v
	}
	return out
}

func longPath(n int) string { return "/" + strings.Repeat("a", n-1) }

// TestBounds sets each bounded field to its bound (accepted) and just
// beyond it (refused, naming the field).
func TestBounds(t *testing.T) {
	hosts := func(n int) any { return list(n, func(i int) any { return fmt.Sprintf("h%d.example.com", i) }) }
	methods := func(n int) any { return list(n, func(i int) any { return fmt.Sprintf("M%d", i) }) }
	matchers := func(n int) any {
		return list(n, func(i int) any { return map[string]any{"name": fmt.Sprintf("x-%d", i)} })
	}
	legs := func(n int) any {
		return list(n, func(i int) any { return map[string]any{"pool": fmt.Sprintf("p%d", i), "weight": 1} })
	}
	headers := func(n int) any { return dict(n, func(i int) (string, any) { return fmt.Sprintf("X-%d", i), "v" }) }
	names := func(n int) any { return list(n, func(i int) any { return fmt.Sprintf("x-%d", i) }) }
	backends := func(n int) any {
		return list(n, func(i int) any { return map[string]any{"addr": fmt.Sprintf("10.%d.%d.1:80", i/256, i%256)} })
	}
	tags := func(n int) any { return dict(n, func(i int) (string, any) { return fmt.Sprintf("t%d", i), "v" }) }
	nodes := func(n int) any { return list(n, func(i int) any { return fmt.Sprintf("n%d", i+1) }) }
	str := func(n int) string { return strings.Repeat("a", n) }
	const gib16 = int64(16 << 30)

	tests := []struct {
		sample   string
		path     string
		at, over any
		also     map[string]any // set in both cases
		field    string         // the refused field when not "spec."+path
	}{
		{"listener", "port", 65535, 65536, nil, ""},
		{"listener", "port", 1, 0, nil, ""},
		{"listener", "tls.cert_file", str(4096), str(4097), nil, ""},
		{"listener", "tls.key_file", str(4096), str(4097), nil, ""},
		{"listener", "limits.max_header_bytes", 1 << 20, 1<<20 + 1, nil, ""},
		{"listener", "limits.max_header_bytes", 0, -1, nil, ""},
		{"listener", "limits.max_body_bytes", gib16, gib16 + 1, nil, ""},
		{"listener", "limits.max_conns", 1_000_000, 1_000_001, nil, ""},
		{"listener", "limits.read_timeout", "24h", "24h1ns", nil, ""},
		{"listener", "limits.write_timeout", "24h", "24h1ns", nil, ""},
		{"listener", "limits.idle_timeout", "24h", "24h1ns", nil, ""},

		{"route-split", "priority", 1_000_000, 1_000_001, nil, ""},
		{"route-split", "priority", -1_000_000, -1_000_001, nil, ""},
		{"route-split", "match.hosts", hosts(256), hosts(257), nil, ""},
		{"route-split", "match.methods", methods(32), methods(33), nil, ""},
		{"route-split", "match.methods[0]", strings.Repeat("A", 256), strings.Repeat("A", 257), nil, ""},
		{"route-split", "match.headers", matchers(32), matchers(33), nil, ""},
		{"route-split", "match.headers[0].name", str(256), str(257), nil, ""},
		{"route-split", "match.headers[0].value", str(8192), str(8193), nil, ""},
		{"route-split", "match.query", matchers(32), matchers(33), nil, ""},
		{"route-split", "match.query[0].name", str(256), str(257), nil, ""},
		{"route-split", "match.path.prefix", longPath(4096), longPath(4097), nil, ""},
		{"route-split", "action.split", legs(100), legs(101), nil, ""},
		{"route-split", "action.split[0].weight", 10000, 10001, nil, ""},
		{"route-split", "action.split[0].weight", 1, -1, nil, ""},
		{"route-split", "rewrite.path_prefix", longPath(4096), longPath(4097), nil, ""},
		{"route-split", "headers_add", headers(64), headers(65), nil, ""},
		{"route-split", "headers_add.X-A", str(8192), str(8193), nil, ""},
		{"route-split", "headers_remove", names(64), names(65), nil, ""},
		{"route-split", "headers_remove[0]", str(256), str(257), nil, ""},
		{"route-split", "response_headers_add", headers(64), headers(65), nil, ""},
		{"route-split", "response_headers_add.X-C", str(8192), str(8193), nil, ""},
		{"route-split", "response_headers_remove", names(64), names(65), nil, ""},
		{"route-split", "timeouts.connect", "5m", "5m1ns", nil, ""},
		{"route-split", "timeouts.request", "24h", "24h1ns", nil, ""},
		{"route-split", "timeouts.idle", "24h", "24h1ns", nil, ""},
		{"route-split", "retries.attempts", 5, 6, nil, ""},
		{"route-split", "retries.on", list(32, func(int) any { return "503" }), list(33, func(int) any { return "503" }), nil, ""},
		{"route-split", "retries.budget_percent", 100, 101, nil, ""},
		{"route-split", "max_body", gib16, gib16 + 1, nil, ""},

		{"route-redirect", "action.redirect.port", 65535, 65536, nil, ""},
		{"route-redirect", "action.redirect.path", longPath(4096), longPath(4097), nil, ""},
		{"route-respond", "action.respond.status", 599, 600, nil, ""},
		{"route-respond", "action.respond.status", 100, 99, nil, ""},
		{"route-respond", "action.respond.body", str(64 << 10), str(64<<10 + 1), nil, ""},
		{"route-respond", "action.respond.headers", headers(64), headers(65), nil, ""},
		{"route-respond", "action.respond.headers.X-A", str(8192), str(8193), nil, ""},
		{"route-respond", "match.path.exact", longPath(4096), longPath(4097), nil, ""},

		{"pool", "hash.header", str(256), str(257), nil, ""},
		{"pool-cookie", "hash.cookie", str(256), str(257), nil, ""},
		{"pool", "zone_min_healthy_percent", 100, 101, nil, ""},
		{"pool", "panic_threshold", 100, 101, nil, ""},
		{"pool", "max_conns_per_backend", 100_000, 100_001, nil, ""},
		{"pool", "max_conn_wait", "5m", "5m1ns", nil, ""},
		{"pool", "backends", backends(10000), backends(10001), nil, ""},
		{"pool", "backends[0].weight", 1000, 1001, nil, ""},
		{"pool", "health_check.path", longPath(4096), longPath(4097), nil, ""},
		{"pool", "health_check.expect", 599, 600, nil, ""},
		{"pool", "health_check.interval", "1h", "1h1ns", nil, ""},
		{"pool", "health_check.interval", "100ms", "99ms", nil, ""},
		{"pool", "health_check.timeout", "1h", "1h1ns", map[string]any{"health_check.interval": "1h"}, ""},
		{"pool", "health_check.rise", 100, 101, nil, ""},
		{"pool", "health_check.fall", 100, 101, nil, ""},
		{"pool", "outlier.consecutive_5xx", 10000, 10001, nil, ""},
		{"pool", "outlier.consecutive_connect_errors", 10000, 10001, nil, ""},
		{"pool", "outlier.base_ejection", "1h", "1h1ns", nil, ""},
		{"pool", "outlier.max_ejected_percent", 100, 101, nil, ""},
		{"pool", "discovery.ec2.port", 65535, 65536, nil, ""},
		{"pool", "discovery.ec2.refresh", "24h", "24h1ns", nil, ""},
		{"pool", "discovery.ec2.tags", tags(50), tags(51), nil, ""},
		{"pool", "discovery.ec2.tags.app", str(256), str(257), nil, ""},

		{"route-split", "action.sticky.header", str(256), str(257), nil, ""},
		{"route-cookie", "action.sticky.cookie", str(256), str(257), nil, ""},
		{"rollout", "steps", list(100, func(i int) any { return i + 1 }), list(101, func(i int) any { return i + 1 }), nil, ""},
		{"rollout", "steps[0]", 1, 0, nil, ""},
		{"rollout", "steps[2]", 100, 101, nil, ""},
		{"rollout", "interval", "24h", "24h1ns", nil, ""},
		{"rollout", "interval", "1s", "999ms", nil, ""},
		{"rollout", "min_requests", 1_000_000_000, 1_000_000_001, nil, ""},
		{"rollout", "max_error_rate", 1.0, 1.01, nil, ""},
		{"rollout", "max_error_rate", 0.0, -0.01, nil, ""},
		{"rollout", "max_p99", "1h", "1h1ns", nil, ""},
		{"rollout", "sticky.cookie", str(256), str(257), nil, ""},
		{"rollout-ratio", "max_p99_ratio", 1000, 1001, nil, ""},
		{"rollout-ratio", "max_p99_ratio", 1, 0.5, nil, ""},

		{"vip", "allocation_id", "eipalloc-" + str(55), "eipalloc-" + str(56), nil, ""},
		{"vip", "candidates", nodes(256), nodes(257), nil, ""},
		{"vip", "home_node", str(128), str(129), map[string]any{"candidates": []any{}}, ""},
		{"vip-route", "route_table_ids", list(32, func(i int) any { return fmt.Sprintf("rtb-%d", i) }), list(33, func(i int) any { return fmt.Sprintf("rtb-%d", i) }), nil, ""},
		{"vip-route", "route_table_ids[0]", "rtb-" + str(32), "rtb-" + str(33), nil, ""},
		{"vip-private-ip", "enis", dict(256, func(i int) (string, any) { return fmt.Sprintf("n%d", i), "eni-1" }),
			dict(257, func(i int) (string, any) { return fmt.Sprintf("n%d", i), "eni-1" }), nil, ""},
		{"vip-private-ip", "enis.n1", "eni-" + str(32), "eni-" + str(33), nil, ""},
	}
	base := boundsBase(t)
	for _, tt := range tests {
		t.Run(tt.sample+"/"+tt.path, func(t *testing.T) {
			s, ok := boundSamples[tt.sample]
			if !ok {
				t.Fatalf("no sample %q", tt.sample)
			}
			for _, over := range []bool{false, true} {
				set := map[string]any{tt.path: tt.at}
				if over {
					set[tt.path] = tt.over
				}
				for k, v := range tt.also {
					set[k] = v
				}
				spec := withValues(t, s.spec, set)
				_, err := Next(base, base.Index+1, PutCommand(Object{Kind: s.kind, Name: "x", Spec: spec}, nil))
				if !over {
					if err != nil {
						t.Fatalf("at the bound: refused: %v", err)
					}
					continue
				}
				field := tt.field
				if field == "" {
					field = "spec." + tt.path
				}
				wantFieldError(t, err, field, ErrInvalid)
			}
		})
	}
}

// numericField is a numeric leaf of a decoded spec with its JSON path.
type numericField struct {
	path string // "spec.backends[0].weight"
	v    reflect.Value
}

// numericFields lists every numeric field reachable in v: struct fields
// by their JSON names, non-nil pointers, every slice element.
func numericFields(v reflect.Value, path string, out *[]numericField) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			numericFields(v.Elem(), path, out)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			f := v.Type().Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			numericFields(v.Field(i), path+"."+name, out)
		}
	case reflect.Slice:
		for i := range v.Len() {
			numericFields(v.Index(i), fmt.Sprintf("%s[%d]", path, i), out)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		*out = append(*out, numericField{path, v})
	}
}

// numericTypePaths lists the paths of every numeric field a type can hold,
// with "[]" for any slice index.
func numericTypePaths(t reflect.Type, path string, out map[string]bool) {
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice:
		if t.Kind() == reflect.Slice {
			path += "[]"
		}
		numericTypePaths(t.Elem(), path, out)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			numericTypePaths(f.Type, path+"."+name, out)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		out[path] = true
	}
}

var anyIndex = regexp.MustCompile(`\[\d+\]`)

// unboundedOnPurpose are numeric fields that are references, not
// quantities, with the reason they need no bound.
var unboundedOnPurpose = map[string]string{
	// A lease id names an existing lease; an operator's put drops
	// lease-attached backends, registration checks the lease exists.
	"spec.backends[].lease": "a reference to an existing lease",
}

// TestEveryNumericFieldIsBounded walks the spec types: every numeric field
// must be set in one of boundSamples, and setting it to the largest (and
// smallest) value its type holds must be refused with an error naming it.
// A numeric field added without a bound check fails here.
func TestEveryNumericFieldIsBounded(t *testing.T) {
	base := boundsBase(t)
	reached := map[string]bool{}
	for _, name := range sortedKeys(boundSamples) {
		s := boundSamples[name]
		t.Run(name, func(t *testing.T) {
			if _, err := Next(base, base.Index+1, PutCommand(obj(s.kind, "x", s.spec), nil)); err != nil {
				t.Fatalf("sample refused: %v", err)
			}
			probe := newSpec(s.kind)
			if err := json.Unmarshal([]byte(s.spec), probe); err != nil {
				t.Fatal(err)
			}
			var fields []numericField
			numericFields(reflect.ValueOf(probe), "spec", &fields)
			for i, f := range fields {
				generic := anyIndex.ReplaceAllString(f.path, "[]")
				reached[generic] = true
				if _, skip := unboundedOnPurpose[generic]; skip {
					continue
				}
				for _, extreme := range []string{"max", "min"} {
					spec := newSpec(s.kind)
					if err := json.Unmarshal([]byte(s.spec), spec); err != nil {
						t.Fatal(err)
					}
					var fs []numericField
					numericFields(reflect.ValueOf(spec), "spec", &fs)
					v := fs[i].v
					switch {
					case v.CanInt() && extreme == "max":
						v.SetInt(math.MaxInt64 >> (64 - v.Type().Bits()))
					case v.CanInt():
						v.SetInt(math.MinInt64 >> (64 - v.Type().Bits()))
					case v.CanUint() && extreme == "max":
						v.SetUint(math.MaxUint64 >> (64 - v.Type().Bits()))
					case v.CanUint():
						continue // 0 is a valid "default" everywhere
					default:
						v.SetFloat(math.MaxFloat64)
					}
					raw, err := json.Marshal(spec)
					if err != nil {
						t.Fatal(err)
					}
					_, err = Next(base, base.Index+1, PutCommand(Object{Kind: s.kind, Name: "x", Spec: raw}, nil))
					if err == nil {
						t.Errorf("%s at its %s value was accepted: add a bound to validation", f.path, extreme)
						continue
					}
					wantFieldError(t, err, f.path, ErrInvalid)
				}
			}
		})
	}
	all := map[string]bool{}
	for _, k := range Kinds {
		numericTypePaths(reflect.TypeOf(newSpec(k)), "spec", all)
	}
	for _, p := range sortedKeys(all) {
		if !reached[p] {
			t.Errorf("numeric field %s is set in no sample of boundSamples: add it there (and bound it)", p)
		}
	}
}

// stringFields lists every string reachable in v as numericFields does
// for numbers (map keys and values are left to TestBounds).
func stringFields(v reflect.Value, path string, out *[]numericField) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			stringFields(v.Elem(), path, out)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			f := v.Type().Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			stringFields(v.Field(i), path+"."+name, out)
		}
	case reflect.Slice:
		for i := range v.Len() {
			stringFields(v.Index(i), fmt.Sprintf("%s[%d]", path, i), out)
		}
	case reflect.String:
		if v.Len() > 0 { // an unset alternative (path.exact beside path.prefix) would be refused for being set
			*out = append(*out, numericField{path, v})
		}
	}
}

// stringTypePaths lists the paths of every string field a type can hold
// outside maps, with "[]" for any slice index.
func stringTypePaths(t reflect.Type, path string, out map[string]bool) {
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice:
		if t.Kind() == reflect.Slice {
			path += "[]"
		}
		stringTypePaths(t.Elem(), path, out)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			stringTypePaths(f.Type, path+"."+name, out)
		}
	case reflect.String:
		out[path] = true
	}
}

// TestEveryStringIsBounded sets each string of every sample to 100 KiB
// and expects a refusal naming it: no string field is unbounded.
func TestEveryStringIsBounded(t *testing.T) {
	base := boundsBase(t)
	long := strings.Repeat("a", 100<<10)
	reached := map[string]bool{}
	for _, name := range sortedKeys(boundSamples) {
		s := boundSamples[name]
		t.Run(name, func(t *testing.T) {
			probe := newSpec(s.kind)
			if err := json.Unmarshal([]byte(s.spec), probe); err != nil {
				t.Fatal(err)
			}
			var fields []numericField
			stringFields(reflect.ValueOf(probe), "spec", &fields)
			for i, f := range fields {
				reached[anyIndex.ReplaceAllString(f.path, "[]")] = true
				spec := newSpec(s.kind)
				if err := json.Unmarshal([]byte(s.spec), spec); err != nil {
					t.Fatal(err)
				}
				var fs []numericField
				stringFields(reflect.ValueOf(spec), "spec", &fs)
				fs[i].v.SetString(long)
				raw, err := json.Marshal(spec)
				if err != nil {
					t.Fatal(err)
				}
				_, err = Next(base, base.Index+1, PutCommand(Object{Kind: s.kind, Name: "x", Spec: raw}, nil))
				if err == nil {
					t.Errorf("%s of %d bytes was accepted: add a length bound to validation", f.path, len(long))
					continue
				}
				wantFieldError(t, err, f.path, ErrInvalid)
			}
		})
	}
	all := map[string]bool{}
	for _, k := range Kinds {
		stringTypePaths(reflect.TypeOf(newSpec(k)), "spec", all)
	}
	for _, p := range sortedKeys(all) {
		if _, elsewhere := stringsBoundedElsewhere[p]; elsewhere {
			continue
		}
		if !reached[p] {
			t.Errorf("string field %s is set in no sample of boundSamples: add it there (and bound it)", p)
		}
	}
}
