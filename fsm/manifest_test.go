package fsm

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestParseManifestSample(t *testing.T) {
	objs, err := ParseManifest([]byte(sampleManifest))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, string(o.Kind)+"/"+o.Name+" "+string(o.Spec))
	}
	want := []string{
		`listener/web {"port":8080}`,
		`pool/app {"balancer":"round_robin","zone_aware":true,"health_check":{"path":"/healthz","interval":"2s","timeout":"1s","rise":2,"fall":3},"backends":[{"addr":"10.0.1.10:8080","weight":1,"zone":"us-east-1a"},{"addr":"10.0.2.10:8080","weight":1,"zone":"us-east-1b"}]}`,
		`route/app {"listener":"web","match":{"hosts":["app.example.com"],"path":{"prefix":"/"}},"action":{"split":[{"pool":"app","weight":100}]}}`,
		`vip/edge-a {"provider":"aws-eip","allocation_id":"eipalloc-0123","home_node":"n1"}`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	c := mustNext(t, Empty(), ApplyCommand(objs))
	for _, format := range []string{"yaml", "json"} {
		out, err := MarshalManifest(c.Objects(), format)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s:\n%s", format, out)
		back, err := ParseManifest(out)
		if err != nil {
			t.Fatalf("%s: parse exported manifest: %v", format, err)
		}
		if !reflect.DeepEqual(back, c.Objects()) {
			t.Fatalf("%s: round trip differs:\n%v\n%v", format, back, c.Objects())
		}
		// Applying the export again changes nothing.
		again := mustNext(t, c, ApplyCommand(back))
		if !bytes.Equal(snapshotBytes(t, withIndex(again, c.Index)), snapshotBytes(t, c)) {
			t.Fatalf("%s: re-applying the export changed the document", format)
		}
	}
}

func withIndex(c *Config, idx uint64) *Config {
	cc := *c
	cc.Index = idx
	return &cc
}

func TestParseManifestForms(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // kind/name
	}{
		{"empty", "", nil},
		{"comments only", "# nothing\n", nil},
		{"trailing separators", "---\nkind: pool\nname: a\nspec: {}\n---\n---\n", []string{"pool/a"}},
		{"json object", `{"kind":"pool","name":"a","spec":{}}`, []string{"pool/a"}},
		{"json array", ` [{"kind":"pool","name":"a","spec":{}},{"kind":"listener","name":"b","spec":{"port":1}}]`, []string{"pool/a", "listener/b"}},
		{"empty json array", `[]`, nil},
		{"yaml flow", `{kind: pool, name: a, spec: {}}`, []string{"pool/a"}},
		{"plural kind", "kind: pools\nname: a\nspec: {}\n", []string{"pool/a"}},
		{"modify_index kept", "kind: pool\nname: a\nmodify_index: 7\nspec: {}\n", []string{"pool/a"}},
		{"byte order mark", "\xef\xbb\xbfkind: pool\nname: a\nspec: {}\n", []string{"pool/a"}},
		{"anchors", "kind: pool\nname: a\nspec:\n  health_check: &hc {path: /h}\n", []string{"pool/a"}},
		{"hex port", "kind: listener\nname: a\nspec: {port: 0x50}\n", []string{"listener/a"}},
		{"yaml on key", "kind: route\nname: r\nspec: {listener: l, action: {respond: {status: 200}}, retries: {attempts: 1, on: [\"503\", reset]}}\n", []string{"route/r"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := ParseManifest([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, o := range objs {
				got = append(got, string(o.Kind)+"/"+o.Name)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
	objs, _ := ParseManifest([]byte("kind: listener\nname: a\nspec: {port: 0x50}\n"))
	if string(objs[0].Spec) != `{"port":80}` {
		t.Fatalf("spec %s", objs[0].Spec)
	}
}

func TestParseManifestErrors(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		field string
	}{
		{"unknown kind", "kind: thing\nname: a\nspec: {}\n", "documents[0].kind"},
		{"missing kind", "name: a\nspec: {}\n", "documents[0].kind"},
		{"kind not a string", "kind: [a]\nname: a\nspec: {}\n", "documents[0].kind"},
		{"missing name", "kind: pool\nspec: {}\n", "documents[0].name"},
		{"numeric name", "kind: pool\nname: 5\nspec: {}\n", "documents[0].name"},
		{"bad name", "kind: pool\nname: Bad\nspec: {}\n", "documents[0].name"},
		{"missing spec", "kind: pool\nname: a\n", "documents[0].spec"},
		{"spec not an object", "kind: pool\nname: a\nspec: [1]\n", "documents[0].spec"},
		{"unknown top-level field", "kind: pool\nname: a\nspec: {}\nspecs: {}\n", "documents[0].specs"},
		{"bad modify_index", "kind: pool\nname: a\nspec: {}\nmodify_index: -1\n", "documents[0].modify_index"},
		{"not a mapping", "- a\n- b\n", "documents[0]"},
		{"scalar document", "hello\n", "documents[0]"},
		{"port as string", "kind: pool\nname: a\nspec: {}\n---\nkind: listener\nname: b\nspec: {port: \"80\"}\n", "documents[1].spec.port"},
		{"float port", "kind: listener\nname: b\nspec: {port: 80.5}\n", "documents[0].spec.port"},
		{"unknown spec field", "kind: listener\nname: b\nspec: {port: 80, bogus: 1}\n", "documents[0].spec.bogus"},
		{"bad nested value", "kind: pool\nname: a\nspec: {}\n---\nkind: pool\nname: b\nspec: {}\n---\nkind: route\nname: r\nspec:\n  listener: l\n  match: {path: {regex: \"(\"}}\n  action: {respond: {status: 200}}\n", "documents[2].spec.match.path.regex"},
		{"unquoted retry status", "kind: route\nname: r\nspec: {listener: l, action: {respond: {status: 200}}, retries: {attempts: 1, on: [503]}}\n", "documents[0].spec.retries.on[0]"},
		{"duplicate", "kind: pool\nname: a\nspec: {}\n---\nkind: pool\nname: b\nspec: {}\n---\nkind: listener\nname: a\nspec: {port: 1}\n---\nkind: pools\nname: a\nspec: {}\n", "documents[3].name"},
		{"non-string key", "kind: route\nname: r\nspec: {listener: l, action: {respond: {status: 200, headers: {1: x}}}}\n", "documents[0].spec.action.respond.headers"},
		{"malformed yaml", "kind: pool\nname: a\nspec: {\n", "documents[0]"},
		{"malformed second document", "kind: pool\nname: a\nspec: {}\n---\nkind: [\n", "documents[1]"},
		{"json wrong type", `[{"kind":"pool","name":"a","spec":{}},{"kind":"listener","name":"b","spec":{"port":true}}]`, "documents[1].spec.port"},
		{"json array element", `[1]`, "documents[0]"},
		{"yaml duplicate key", "kind: pool\nkind: pool\nname: a\nspec: {}\n", "documents[0]"},
		{"infinite number", "kind: listener\nname: b\nspec: {port: .inf}\n", "documents[0].spec.port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseManifest([]byte(tt.in))
			wantFieldError(t, err, tt.field, ErrInvalid)
		})
	}
}

func TestMarshalManifest(t *testing.T) {
	if _, err := MarshalManifest(nil, "toml"); err == nil {
		t.Fatal("unknown format accepted")
	}
	out, err := MarshalManifest(nil, "json")
	if err != nil || string(out) != "[]\n" {
		t.Fatalf("empty json: %q %v", out, err)
	}
	out, err = MarshalManifest(nil, "yaml")
	if err != nil || len(out) != 0 {
		t.Fatalf("empty yaml: %q %v", out, err)
	}
	// Strings that YAML would read as something else stay strings.
	tricky := []string{"503", "yes", "on", "null", "~", "1e3", "0x10", "true", "- a", "a: b", "#x", "", " lead", "line\nbreak", "tab\there", "\u2028", "'q'", `"dq"`, "*x", "&a", "!t", "%", "@", "`"}
	for _, s := range tricky {
		respond := map[string]any{"status": 200, "body": s}
		if !strings.ContainsAny(s, "\r\n") {
			// A header value never holds a line break (validation refuses it).
			respond["headers"] = map[string]string{"X-A": s}
		}
		spec, _ := json.Marshal(respond)
		o := obj(KindRoute, "r", `{"listener":"l","action":{"respond":`+string(spec)+`}}`)
		objs, err := ParseManifest(mustMarshal(t, []Object{o}, "json"))
		if err != nil {
			t.Fatal(err)
		}
		for _, format := range []string{"yaml", "json"} {
			b := mustMarshal(t, objs, format)
			back, err := ParseManifest(b)
			if err != nil {
				t.Fatalf("%q via %s: %v\n%s", s, format, err, b)
			}
			if !reflect.DeepEqual(back, objs) {
				t.Fatalf("%q via %s: round trip differs\n%s", s, format, b)
			}
		}
	}
	out = mustMarshal(t, []Object{obj(KindPool, "a", `{}`), obj(KindPool, "b", `{}`)}, "yaml")
	if want := "kind: pool\nname: a\nspec: {}\n---\nkind: pool\nname: b\nspec: {}\n"; string(out) != want {
		t.Fatalf("yaml output:\n%s\nwant\n%s", out, want)
	}
}

func mustMarshal(t *testing.T, objs []Object, format string) []byte {
	t.Helper()
	b, err := MarshalManifest(objs, format)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestExportEqualsApply: ParseManifest(MarshalManifest(c.Objects()))
// reproduces c, for a document with every kind and most fields.
func TestExportEqualsApply(t *testing.T) {
	c := validationBase(t)
	c = mustNext(t, c, ApplyCommand([]Object{
		obj(KindListener, "tls", `{"port":8443,"protocol":"https","tls":{"cert_file":"/c.pem","key_file":"/k.pem"},"edge":true,"limits":{"max_header_bytes":8192,"read_timeout":"10s","max_conns":1000}}`),
		obj(KindPool, "hashy", `{"balancer":"hash","hash":{"header":"X-User"},"zone_aware":true,"zone_min_healthy_percent":50,"panic_threshold":10,"max_conns_per_backend":64,"max_conn_wait":"250ms","outlier":{"consecutive_5xx":5,"base_ejection":"30s"},"backends":[{"addr":"[::1]:80","weight":0,"drain":true,"lease":3}],"discovery":{"ec2":{"tags":{"b":"2","a":"1"},"port":80}}}`),
		obj(KindRoute, "full", `{"listener":"tls","priority":10,"match":{"hosts":["*.example.com"],"path":{"regex":"^/v[0-9]+/.*$"},"methods":["GET","HEAD"],"headers":[{"name":"X-Canary","value":"1","invert":true}],"query":[{"name":"debug"}]},"action":{"split":[{"pool":"app","weight":90},{"pool":"hashy","weight":10}]},"rewrite":{"host":"internal.example"},"headers_add":{"X-B":"2","X-A":"1"},"headers_remove":["Cookie"],"response_headers_add":{"Server":"rafter"},"response_headers_remove":["X-Powered-By"],"timeouts":{"connect":"1s","request":"30s","idle":"5m"},"retries":{"attempts":2,"on":["connect-failure","503"],"budget_percent":20},"max_body":1048576}`),
		obj(KindRoute, "redir", `{"listener":"web","match":{"path":{"exact":"/old"}},"action":{"redirect":{"scheme":"https","host":"new.example","port":443,"path":"/new","code":301}}}`),
		obj(KindRoute, "fixed", `{"listener":"web","match":{"path":{"prefix":"/ping"}},"action":{"respond":{"status":200,"body":"pong\n","headers":{"Content-Type":"text/plain"}}}}`),
	}))
	for _, format := range []string{"yaml", "json"} {
		out := mustMarshal(t, c.Objects(), format)
		objs, err := ParseManifest(out)
		if err != nil {
			t.Fatalf("%s: %v\n%s", format, err, out)
		}
		if !reflect.DeepEqual(objs, c.Objects()) {
			t.Fatalf("%s: objects differ after the round trip", format)
		}
		// Applied to an empty document with the same members, the export
		// gives the same objects.
		fresh := Empty()
		fresh.Nodes = c.Nodes
		got := mustNext(t, fresh, ApplyCommand(objs))
		if !reflect.DeepEqual(specsOf(got), specsOf(c)) {
			t.Fatalf("%s: applying the export gives a different document", format)
		}
		again := mustNext(t, c, ApplyCommand(objs))
		if d := Diff(c, again); len(d) != 0 {
			t.Fatalf("%s: re-applying the export changed %v", format, d)
		}
		for _, o := range again.Objects() {
			if prev, _ := c.Get(o.Kind, o.Name); prev.ModifyIndex != o.ModifyIndex {
				t.Fatalf("%s: re-applying the export moved %s/%s", format, o.Kind, o.Name)
			}
		}
	}
}

func specsOf(c *Config) []Object {
	objs := c.Objects()
	for i := range objs {
		objs[i].ModifyIndex = 0
	}
	return objs
}

func TestParseKindGetList(t *testing.T) {
	for in, want := range map[string]Kind{"route": KindRoute, "routes": KindRoute, " Pools ": KindPool, "vip": KindVIP, "listeners": KindListener} {
		if got, err := ParseKind(in); err != nil || got != want {
			t.Errorf("ParseKind(%q) = %q, %v", in, got, err)
		}
	}
	_, err := ParseKind("node")
	wantFieldError(t, err, "kind", ErrInvalid)
	c := baseConfig(t)
	if o, ok := c.Get(KindPool, "app"); !ok || o.Name != "app" || o.Kind != KindPool || string(o.Spec) != `{"backends":[{"addr":"10.0.0.1:80"}]}` {
		t.Fatalf("Get: %+v %v", o, ok)
	}
	if _, ok := c.Get(KindPool, "nope"); ok {
		t.Fatal("Get of a missing pool")
	}
	if _, ok := c.Get("node", "n1"); ok {
		t.Fatal("Get of an unmanaged kind")
	}
	if got := c.List(KindPool); len(got) != 2 || got[0].Name != "app" || got[1].Name != "other" {
		t.Fatalf("List: %+v", got)
	}
	var order []string
	for _, o := range c.Objects() {
		order = append(order, string(o.Kind)+"/"+o.Name)
	}
	if want := []string{"listener/web", "pool/app", "pool/other", "route/app"}; !reflect.DeepEqual(order, want) {
		t.Fatalf("Objects order %v", order)
	}
	spec, err := DecodeSpec(KindListener, []byte(`{"port":80,"limits":{"idle_timeout":"1m"}}`))
	if ls, ok := spec.(*ListenerSpec); err != nil || !ok || ls.Port != 80 || ls.Limits.IdleTimeout.D().Minutes() != 1 {
		t.Fatalf("DecodeSpec: %#v %v", spec, err)
	}
	_, err = DecodeSpec(KindListener, []byte(`{"port":80,"x":1}`))
	wantFieldError(t, err, "spec.x", ErrInvalid)
}

func TestDiff(t *testing.T) {
	a := baseConfig(t)
	b := mustNext(t, a, ApplyCommand([]Object{obj(KindPool, "app", `{"balancer":"random","backends":[{"addr":"10.0.0.1:80"}]}`), obj(KindListener, "new", `{"port":1}`)}))
	b = mustNext(t, b, DeleteCommand(KindPool, "other", nil))
	var got []string
	for _, ch := range Diff(a, b) {
		got = append(got, ch.Op+" "+string(ch.Kind)+"/"+ch.Name)
	}
	want := []string{"create listener/new", "update pool/app", "delete pool/other"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Diff = %v, want %v", got, want)
	}
	d := Diff(nil, a)
	if len(d) != 4 || d[0].Op != "create" || d[0].After == nil || d[0].Before != nil {
		t.Fatalf("Diff(nil, a) = %+v", d)
	}
	if len(Diff(a, a)) != 0 || len(Diff(nil, nil)) != 0 {
		t.Fatal("Diff of equal documents not empty")
	}
}

func TestParseManifestKeepsDateText(t *testing.T) {
	objs, err := ParseManifest([]byte("kind: route\nname: r\nspec: {listener: l, action: {respond: {status: 200, body: 2001-12-14, headers: {X-Date: 2001-12-14T01:02:03Z}}}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"listener":"l","action":{"respond":{"status":200,"body":"2001-12-14","headers":{"X-Date":"2001-12-14T01:02:03Z"}}}}`
	if string(objs[0].Spec) != want {
		t.Fatalf("spec %s", objs[0].Spec)
	}
}

func TestManifestDocumentsBounded(t *testing.T) {
	var y strings.Builder
	for range MaxManifestDocuments + 1 {
		y.WriteString("---\n{}\n")
	}
	if _, err := ParseManifest([]byte(y.String())); err == nil || !strings.Contains(err.Error(), "documents") {
		t.Fatalf("ParseManifest of %d YAML documents = %v, want a refusal naming documents", MaxManifestDocuments+1, err)
	}
	arr := "[" + strings.TrimSuffix(strings.Repeat(`{},`, MaxManifestDocuments+1), ",") + "]"
	if _, err := ParseManifest([]byte(arr)); err == nil || !strings.Contains(err.Error(), "documents") {
		t.Fatalf("ParseManifest of a JSON array of %d = %v, want a refusal naming documents", MaxManifestDocuments+1, err)
	}
}
