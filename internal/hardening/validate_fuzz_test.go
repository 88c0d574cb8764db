package hardening

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/rafterlb/rafter/fsm"
)

// fuzzBase is the document FuzzValidate puts objects into: three members
// (admin port 7700, Raft port 7701), listener web, pools app and other,
// route app.
func fuzzBase(t testing.TB) *fsm.Config {
	t.Helper()
	c := fsm.Empty()
	next := func(cmd *fsm.Command) {
		t.Helper()
		n, err := fsm.Next(c, c.Index+1, cmd)
		if err != nil {
			t.Fatalf("base: %v", err)
		}
		c = n
	}
	for i, id := range []string{"n1", "n2", "n3"} {
		ip := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}[i]
		next(fsm.NewCommand(&fsm.NodeUpsert{Node: &fsm.Node{
			ID: id, Zone: "zone-1", RaftAddr: ip + ":7701", AdminAddr: ip + ":7700",
		}}))
	}
	spec := func(s string) json.RawMessage { return json.RawMessage(s) }
	next(fsm.ApplyCommand([]fsm.Object{
		{Kind: fsm.KindListener, Name: "web", Spec: spec(`{"port":8080}`)},
		{Kind: fsm.KindPool, Name: "app", Spec: spec(`{"backends":[{"addr":"10.0.0.1:80"}]}`)},
		{Kind: fsm.KindPool, Name: "other", Spec: spec(`{}`)},
		{Kind: fsm.KindRoute, Name: "app", Spec: spec(`{"listener":"web","action":{"split":[{"pool":"app","weight":1}]}}`)},
	}))
	return c
}

// FuzzValidate: whatever Next accepts from a put can be exported and
// applied again without change, snapshotted and read back, and compiled
// and served by the data plane without a panic or a skipped object.
// Its seeds are in testdata/fuzz/FuzzValidate; `go test` runs them.
func FuzzValidate(f *testing.F) {
	for _, s := range validSpecs {
		f.Add(uint8(kindIndex(s.kind)), "x", []byte(s.spec))
	}
	base := fuzzBase(f)
	// One data plane serves every accepted document in turn, each under
	// an index of its own so that waiting for it is exact.
	src := newSwapSource()
	plane := startPlane(f, src)
	var served uint64
	f.Fuzz(func(t *testing.T, k uint8, name string, spec []byte) {
		kind := fsm.Kinds[int(k)%len(fsm.Kinds)]
		cmd := fsm.PutCommand(fsm.Object{Kind: kind, Name: name, Spec: spec}, nil)
		next, err := fsm.Next(base, base.Index+1, cmd)
		if err != nil {
			var fe *fsm.FieldError
			if !errors.As(err, &fe) || !(errors.Is(err, fsm.ErrInvalid) || errors.Is(err, fsm.ErrConflict)) {
				t.Fatalf("refusal is not an invalid or conflict *FieldError: %v", err)
			}
			return
		}
		checkAccepted(t, next)
		served++
		doc := *next
		doc.Index = served
		src.set(&doc)
		plane.waitIndex(t, doc.Index)
		plane.check(t, &doc)
	})
}

// checkAccepted checks that an accepted document round-trips through
// export, apply, manifest formats and snapshots.
func checkAccepted(t *testing.T, cfg *fsm.Config) {
	t.Helper()
	// Export and apply again: nothing changes.
	objs := cfg.Objects()
	again, err := fsm.Next(cfg, cfg.Index+1, fsm.ApplyCommand(objs))
	if err != nil {
		t.Fatalf("applying the export again: %v", err)
	}
	for _, o := range again.Objects() {
		before, ok := cfg.Get(o.Kind, o.Name)
		if !ok || before.ModifyIndex != o.ModifyIndex || !bytes.Equal(before.Spec, o.Spec) {
			t.Fatalf("applying the export changed %s %s: %s -> %s", o.Kind, o.Name, before.Spec, o.Spec)
		}
	}
	for _, format := range []string{"json", "yaml"} {
		b, err := fsm.MarshalManifest(objs, format)
		if err != nil {
			t.Fatalf("export as %s: %v", format, err)
		}
		back, err := fsm.ParseManifest(b)
		if err != nil {
			t.Fatalf("parse the %s export: %v\n%s", format, err, b)
		}
		if !reflect.DeepEqual(back, objs) {
			t.Fatalf("%s export does not round-trip:\n%s", format, b)
		}
	}
	var snap bytes.Buffer
	if err := fsm.WriteSnapshot(&snap, cfg); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	restored, err := fsm.ReadSnapshot(bytes.NewReader(snap.Bytes()))
	if err != nil {
		t.Fatalf("read snapshot: %v", err)
	}
	var snap2 bytes.Buffer
	if err := fsm.WriteSnapshot(&snap2, restored); err != nil {
		t.Fatalf("snapshot of the restored document: %v", err)
	}
	if !bytes.Equal(snap.Bytes(), snap2.Bytes()) {
		t.Fatal("snapshot does not round-trip")
	}
}

func kindIndex(k fsm.Kind) int {
	for i, kk := range fsm.Kinds {
		if kk == k {
			return i
		}
	}
	return 0
}
