package fsm

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// TestMemoParseManifestEqualsParse: the remembering parser answers what
// ParseManifest answers, objects or error, cold and warm, for manifests
// whose document markers sit in awkward places.
func TestMemoParseManifestEqualsParse(t *testing.T) {
	respond := func(name, body string) string {
		return "kind: route\nname: " + name + "\nspec:\n  listener: web\n  action:\n    respond:\n      status: 200\n      body: " + body + "\n"
	}
	tests := []struct {
		name     string
		manifest string
	}{
		{"design sample", sampleManifest},
		{"leading marker and comment", "# header\n---\n" + sampleManifest},
		{"trailing marker", sampleManifest + "---\n"},
		{"marker with content", "--- {kind: listener, name: a, spec: {port: 81}}\n--- {kind: listener, name: b, spec: {port: 82}}\n"},
		{"marker with comment", "--- # first\nkind: listener\nname: a\nspec: {port: 81}\n---\t# second\nkind: listener\nname: b\nspec: {port: 82}\n"},
		{"indented marker inside a block scalar", respond("r1", "|\n        ---\n        not a marker\n         --- either")},
		{"dashes that are not a marker", respond("r1", "\"----\"") + "---\n" + respond("r2", "---x")},
		{"document end markers", "kind: listener\nname: a\nspec: {port: 81}\n...\n---\nkind: listener\nname: b\nspec: {port: 82}\n...\n"},
		{"crlf", strings.ReplaceAll(sampleManifest, "\n", "\r\n")},
		{"directive", "%YAML 1.2\n---\nkind: listener\nname: a\nspec: {port: 81}\n"},
		{"bom", "\xef\xbb\xbfkind: listener\nname: a\nspec: {port: 81}\n"},
		{"json array", `[{"kind":"listener","name":"a","spec":{"port":81}}]`},
		{"empty", ""},
		{"only markers", "---\n---\n"},
		{"duplicate", "kind: listener\nname: a\nspec: {port: 81}\n---\nkind: listener\nname: a\nspec: {port: 82}\n"},
		{"invalid spec in the middle", sampleManifest + "---\nkind: listener\nname: bad\nspec: {port: 70000}\n---\nkind: listener\nname: c\nspec: {port: 83}\n"},
		{"malformed yaml in the middle", sampleManifest + "---\nkind: [\n---\nkind: listener\nname: c\nspec: {port: 83}\n"},
		{"unknown field", "kind: listener\nname: a\nspec: {port: 81}\nextra: 1\n"},
		{"block scalar cut by a marker", "kind: route\nname: r\nspec:\n  listener: web\n  action:\n    respond:\n      status: 200\n      body: |\n        text\n---\nkind: listener\nname: a\nspec: {port: 81}\n"},
	}
	m := NewMemo()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want, wantErr := ParseManifest([]byte(tc.manifest))
			for _, pass := range []string{"cold", "warm"} {
				got, err := m.ParseManifest([]byte(tc.manifest))
				if fmt.Sprint(err) != fmt.Sprint(wantErr) {
					t.Fatalf("%s: error %v, want %v", pass, err, wantErr)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("%s: objects\n%+v\nwant\n%+v", pass, got, want)
				}
			}
		})
	}
}

// TestSplitYAMLDocuments pins where the split cuts.
func TestSplitYAMLDocuments(t *testing.T) {
	chunks, ok := splitYAMLDocuments([]byte("a: 1\n---\nb: 2\n  ---\n---x\n--- c: 3\n"))
	if !ok {
		t.Fatal("refused a plain stream")
	}
	var got []string
	for _, c := range chunks {
		got = append(got, string(c))
	}
	want := []string{"a: 1\n", "---\nb: 2\n  ---\n---x\n", "--- c: 3\n"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("chunks %q, want %q", got, want)
	}
	for _, in := range []string{"%YAML 1.2\n---\na: 1\n", `{"a":1}`, "  [1]", "", "\xef\xbb\xbfa: 1"} {
		if _, ok := splitYAMLDocuments([]byte(in)); ok {
			t.Errorf("split %q, want it refused", in)
		}
	}
}

// TestNextMemoEqualsNext runs the same commands through Next and NextMemo
// (with one memo across all of them, as an FSM keeps it) and wants equal
// documents, equal errors, and the same objects kept by pointer.
func TestNextMemoEqualsNext(t *testing.T) {
	c, l1, _ := leaseConfig(t)
	manifest := []Object{
		obj(KindListener, "web", `{"port":8080}`),
		obj(KindPool, "app", `{"backends":[{"addr":"10.0.0.1:80"}]}`),
		obj(KindPool, "other", `{}`),
		obj(KindRoute, "app", `{"listener":"web","action":{"split":[{"pool":"app","weight":1}]}}`),
	}
	var canon []Object
	for _, o := range manifest {
		_, cb, err := normalize("spec", o.Kind, o.Spec)
		if err != nil {
			t.Fatal(err)
		}
		canon = append(canon, Object{Kind: o.Kind, Name: o.Name, Spec: cb})
	}
	changed := append([]Object(nil), canon...)
	changed[3] = obj(KindRoute, "app", `{"listener":"web","priority":3,"action":{"split":[{"pool":"app","weight":1}]}}`)
	cmds := []*Command{
		ApplyCommand(manifest),
		ApplyCommand(canon),
		ApplyCommand(canon),
		ApplyCommand(changed),
		ApplyCommand(canon),
		// A pool listing a leased backend as its own: refused either way.
		ApplyCommand([]Object{obj(KindPool, "app", `{"backends":[{"addr":"10.0.1.1:80"}]}`)}),
		ApplyCommand([]Object{obj(KindPool, "app", fmt.Sprintf(`{"backends":[{"addr":"10.0.0.1:80"},{"addr":"10.0.1.1:80","lease":%d}]}`, l1))}),
		PutCommand(canon[3], nil),
		PutCommand(canon[3], u64(1)),
		PutCommand(changed[3], nil),
		ApplyCommand([]Object{obj(KindListener, "web", `{"port":70000}`)}),
		ApplyCommand([]Object{obj(KindListener, "web2", `{"port":8080}`)}),
		ApplyCommand([]Object{obj(KindRoute, "app", `{"listener":"nope","action":{"split":[{"pool":"app","weight":1}]}}`)}),
		NewCommand(&Delete{Kind: KindRoute, Name: "app"}),
		ApplyCommand(canon),
	}
	m := NewMemo()
	plain, memo := c, c
	for i, cmd := range cmds {
		for round := range 2 {
			want, wantErr := Next(plain, plain.Index+1, cmd)
			got, err := NextMemo(memo, memo.Index+1, cmd, m)
			if fmt.Sprint(err) != fmt.Sprint(wantErr) {
				t.Fatalf("command %d (%s) round %d: error %v, want %v", i, cmd.Type, round, err, wantErr)
			}
			if err != nil {
				continue
			}
			if !bytes.Equal(snapshotBytes(t, got), snapshotBytes(t, want)) {
				t.Fatalf("command %d (%s) round %d: documents differ", i, cmd.Type, round)
			}
			if SameObjects(plain, want) != SameObjects(memo, got) {
				t.Fatalf("command %d (%s) round %d: Next kept objects %v, NextMemo %v", i, cmd.Type, round, SameObjects(plain, want), SameObjects(memo, got))
			}
			plain, memo = want, got
		}
	}
}

// TestSameObjects: an unchanged re-apply keeps every object; any change is seen.
func TestSameObjects(t *testing.T) {
	c := baseConfig(t)
	same := mustNext(t, c, ApplyCommand(c.Objects()))
	if !SameObjects(c, same) || same.Index == c.Index {
		t.Fatal("re-applying the exported document changed an object")
	}
	moved := mustNext(t, c, PutCommand(obj(KindRoute, "app", `{"listener":"web","priority":1,"action":{"split":[{"pool":"app","weight":1}]}}`), nil))
	if SameObjects(c, moved) {
		t.Fatal("a changed route went unseen")
	}
	zone := mustNext(t, c, NewCommand(&ZoneChange{Zone: &ZoneState{Zone: "z-n1", Evacuated: true}}))
	if SameObjects(c, zone) {
		t.Fatal("an evacuated zone went unseen")
	}
}

// TestSameObjectsSeesEveryField: a new object in any map or pointer
// field of Config makes the documents differ, so no kind can be left out.
func TestSameObjectsSeesEveryField(t *testing.T) {
	ct := reflect.TypeOf(Config{})
	for i := range ct.NumField() {
		f := ct.Field(i)
		if f.Name == "Index" || !f.IsExported() {
			continue // not part of the document
		}
		before := &Config{}
		after := &Config{}
		switch f.Type.Kind() {
		case reflect.Map:
			m := reflect.MakeMap(f.Type)
			k := reflect.New(f.Type.Key()).Elem()
			m.SetMapIndex(k, reflect.New(f.Type.Elem().Elem()))
			reflect.ValueOf(after).Elem().Field(i).Set(m)
		case reflect.Pointer:
			reflect.ValueOf(after).Elem().Field(i).Set(reflect.New(f.Type.Elem()))
		default:
			t.Fatalf("Config.%s is a %s: SameObjects compares it with DeepEqual; extend this test", f.Name, f.Type)
		}
		if SameObjects(before, after) {
			t.Errorf("an object added to Config.%s went unseen", f.Name)
		}
		if !SameObjects(after, after) {
			t.Errorf("Config.%s: a document differs from itself", f.Name)
		}
	}
}

// TestMemoBounded: the memo never holds more than MaxMemoBytes.
func TestMemoBounded(t *testing.T) {
	m := NewMemo()
	var doc strings.Builder
	for i := range 3000 {
		doc.Reset()
		fmt.Fprintf(&doc, "kind: route\nname: r%d\nspec:\n  listener: web\n  action:\n    respond: {status: 200, body: %q}\n", i, strings.Repeat("x", 16<<10))
		if _, err := m.ParseManifest([]byte(doc.String())); err != nil {
			t.Fatal(err)
		}
		if m.bytes > MaxMemoBytes {
			t.Fatalf("memo holds %d bytes, bound %d", m.bytes, MaxMemoBytes)
		}
	}
	if len(m.docs) == 0 || len(m.docs) >= 3000 {
		t.Fatalf("memo holds %d documents; want it emptied and refilled", len(m.docs))
	}
}
