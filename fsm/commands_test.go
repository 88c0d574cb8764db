package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"
)

func TestPutCAS(t *testing.T) {
	base := baseConfig(t) // listener web exists
	web := base.Listeners["web"].ModifyIndex
	tests := []struct {
		name    string
		objName string
		cas     *uint64
		wantErr error
	}{
		{"no cas replaces", "web", nil, nil},
		{"matching cas", "web", u64(web), nil},
		{"stale cas", "web", u64(web - 1), ErrConflict},
		{"future cas", "web", u64(web + 100), ErrConflict},
		{"create-only on existing", "web", u64(0), ErrConflict},
		{"create-only on new", "fresh", u64(0), nil},
		{"cas on missing", "fresh", u64(3), ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next, err := Next(base, base.Index+1, PutCommand(obj(KindListener, tt.objName, `{"port":9000}`), tt.cas))
			if tt.wantErr != nil {
				wantFieldError(t, err, "cas", tt.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			l := next.Listeners[tt.objName]
			if l.Spec.Port != 9000 || l.ModifyIndex != base.Index+1 {
				t.Fatalf("stored %+v", l)
			}
		})
	}
}

func TestDelete(t *testing.T) {
	base := baseConfig(t)
	base = mustNext(t, base, PutCommand(obj(KindVIP, "v", `{"provider":"none"}`), nil))
	base = mustNext(t, base, NewCommand(&Assign{Assignment: &Assignment{VIP: "v", Holder: "n1"}, Time: fixedTime}))
	routeIdx := base.Routes["app"].ModifyIndex
	tests := []struct {
		name    string
		kind    Kind
		objName string
		cas     *uint64
		field   string
		wantErr error
	}{
		{"listener in use", KindListener, "web", nil, "name", ErrConflict},
		{"pool in use", KindPool, "app", nil, "name", ErrConflict},
		{"unused pool", KindPool, "other", nil, "", nil},
		{"missing", KindRoute, "nope", nil, "name", ErrNotFound},
		{"bad kind", "thing", "x", nil, "kind", ErrInvalid},
		{"route stale cas", KindRoute, "app", u64(routeIdx + 1), "cas", ErrConflict},
		{"route cas zero", KindRoute, "app", u64(0), "cas", ErrConflict},
		{"route cas", KindRoute, "app", u64(routeIdx), "", nil},
		{"vip and its assignment", KindVIP, "v", nil, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next, err := Next(base, base.Index+1, DeleteCommand(tt.kind, tt.objName, tt.cas))
			if tt.wantErr != nil {
				wantFieldError(t, err, tt.field, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := next.Get(tt.kind, tt.objName); ok {
				t.Fatal("still there")
			}
			if _, ok := next.Assignments[tt.objName]; ok && tt.kind == KindVIP {
				t.Fatal("assignment of a deleted vip kept")
			}
		})
	}
	_, err := Next(base, base.Index+1, DeleteCommand(KindListener, "web", nil))
	if want := `name: listener "web" is still used by route "app"`; err == nil || err.Error() != want {
		t.Fatalf("error %v, want %q", err, want)
	}
}

func TestApplyIdempotentAndModifyIndex(t *testing.T) {
	objs, err := ParseManifest([]byte(sampleManifest))
	if err != nil {
		t.Fatal(err)
	}
	c1 := mustNext(t, Empty(), ApplyCommand(objs))
	c2 := mustNext(t, c1, ApplyCommand(objs))
	if c2.Index != 2 {
		t.Fatalf("index %d", c2.Index)
	}
	for _, o := range c2.Objects() {
		if o.ModifyIndex != 1 {
			t.Errorf("%s/%s modify_index %d after an unchanged apply, want 1", o.Kind, o.Name, o.ModifyIndex)
		}
	}
	// Unchanged maps and objects are shared, not copied.
	if reflect.ValueOf(c2.Routes).Pointer() != reflect.ValueOf(c1.Routes).Pointer() {
		t.Error("an unchanged apply copied the routes map")
	}
	// Equal specs written differently are still unchanged.
	c3 := mustNext(t, c2, PutCommand(obj(KindPool, "app", `{
		"backends":[{"zone":"us-east-1a","addr":"10.0.1.10:8080","weight":1},{"addr":"10.0.2.10:8080","weight":1,"zone":"us-east-1b","drain":false}],
		"health_check":{"path":"/healthz","interval":"2000ms","timeout":1000000000,"rise":2,"fall":3},
		"zone_aware":true,"balancer":"round_robin","hash":null}`), nil))
	if got := c3.Pools["app"].ModifyIndex; got != 1 {
		t.Errorf("an equivalent pool changed modify_index to %d", got)
	}
	// A changed object, and only it, gets the new index.
	c4 := mustNext(t, c3, ApplyCommand([]Object{obj(KindListener, "web", `{"port":8081}`), obj(KindPool, "app", string(c3.List(KindPool)[0].Spec))}))
	if c4.Listeners["web"].ModifyIndex != 4 || c4.Pools["app"].ModifyIndex != 1 || c4.Routes["app"].ModifyIndex != 1 {
		t.Errorf("modify indexes: listener %d pool %d route %d", c4.Listeners["web"].ModifyIndex, c4.Pools["app"].ModifyIndex, c4.Routes["app"].ModifyIndex)
	}
}

func TestApplyAllOrNothing(t *testing.T) {
	base := baseConfig(t)
	before := snapshotBytes(t, base)
	tests := []struct {
		name  string
		objs  []Object
		field string
		err   error
	}{
		{"bad second document", []Object{obj(KindListener, "l2", `{"port":81}`), obj(KindPool, "p", `{"balancer":"x"}`)}, "documents[1].spec.balancer", ErrInvalid},
		{"duplicate", []Object{obj(KindPool, "a", `{}`), obj(KindPool, "b", `{}`), obj(KindListener, "a", `{"port":82}`), obj(KindPool, "a", `{}`)}, "documents[3].name", ErrInvalid},
		{"reference to missing pool", []Object{obj(KindRoute, "r", `{"listener":"web","action":{"split":[{"pool":"nope","weight":1}]}}`)}, "documents[0].spec.action.split[0].pool", ErrInvalid},
		{"port clash inside the manifest", []Object{obj(KindListener, "a", `{"port":90}`), obj(KindListener, "b", `{"port":90}`)}, "documents[0].spec.port", ErrConflict},
		{"bad kind", []Object{obj("x", "a", `{}`)}, "documents[0].kind", ErrInvalid},
		{"bad name", []Object{obj(KindPool, "A", `{}`)}, "documents[0].name", ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Next(base, base.Index+1, ApplyCommand(tt.objs))
			wantFieldError(t, err, tt.field, tt.err)
			if !bytes.Equal(before, snapshotBytes(t, base)) {
				t.Fatal("document changed")
			}
		})
	}
	// Objects may reference others defined later in the same manifest.
	c := mustNext(t, Empty(), ApplyCommand([]Object{
		obj(KindRoute, "r", `{"listener":"l","action":{"split":[{"pool":"p","weight":1}]}}`),
		obj(KindPool, "p", `{}`),
		obj(KindListener, "l", `{"port":80}`),
	}))
	if len(c.Routes) != 1 {
		t.Fatal("route missing")
	}
}

func TestNextNeverModifiesInput(t *testing.T) {
	base := baseConfig(t)
	before := snapshotBytes(t, base)
	maps := []uintptr{
		reflect.ValueOf(base.Listeners).Pointer(), reflect.ValueOf(base.Routes).Pointer(),
		reflect.ValueOf(base.Pools).Pointer(), reflect.ValueOf(base.Nodes).Pointer(),
	}
	lens := []int{len(base.Listeners), len(base.Routes), len(base.Pools), len(base.VIPs), len(base.Nodes), len(base.Assignments), len(base.Zones)}
	cmds := []*Command{
		PutCommand(obj(KindListener, "x", `{"port":99}`), nil),
		PutCommand(obj(KindPool, "app", `{"balancer":"random"}`), nil),
		DeleteCommand(KindRoute, "app", nil),
		ApplyCommand([]Object{obj(KindPool, "q", `{}`), obj(KindRoute, "app", `{"listener":"web","action":{"respond":{"status":200}}}`)}),
		NewCommand(&NodeUpsert{Node: &Node{ID: "n4", RaftAddr: "127.0.0.4:7701"}}),
		NewCommand(&NodeRemove{NodeID: "n1"}),
		NewCommand(&ZoneChange{Zone: &ZoneState{Zone: "a", Evacuated: true}}),
		NewCommand(&Restore{Config: Empty()}),
	}
	for _, cmd := range cmds {
		next, err := Next(base, base.Index+1, cmd)
		if err != nil {
			t.Fatalf("%s: %v", cmd.Type, err)
		}
		if next == base {
			t.Fatalf("%s: returned its input", cmd.Type)
		}
	}
	if !bytes.Equal(before, snapshotBytes(t, base)) {
		t.Fatal("Next modified its input")
	}
	got := []int{len(base.Listeners), len(base.Routes), len(base.Pools), len(base.VIPs), len(base.Nodes), len(base.Assignments), len(base.Zones)}
	if !reflect.DeepEqual(got, lens) {
		t.Fatalf("map sizes changed: %v -> %v", lens, got)
	}
	after := []uintptr{
		reflect.ValueOf(base.Listeners).Pointer(), reflect.ValueOf(base.Routes).Pointer(),
		reflect.ValueOf(base.Pools).Pointer(), reflect.ValueOf(base.Nodes).Pointer(),
	}
	if !reflect.DeepEqual(maps, after) {
		t.Fatal("maps replaced in the input")
	}
	// A put shares the maps it did not touch.
	next := mustNext(t, base, PutCommand(obj(KindPool, "p2", `{}`), nil))
	if reflect.ValueOf(next.Routes).Pointer() != reflect.ValueOf(base.Routes).Pointer() ||
		reflect.ValueOf(next.Pools).Pointer() == reflect.ValueOf(base.Pools).Pointer() {
		t.Fatal("copy-on-write shares the wrong maps")
	}
	if next.Pools["app"] != base.Pools["app"] {
		t.Fatal("an untouched object was copied")
	}
}

func TestAssign(t *testing.T) {
	base := baseConfig(t)
	base = mustNext(t, base, PutCommand(obj(KindVIP, "v", `{"provider":"none","home_node":"n1"}`), nil))
	assign := func(vip, holder string, cas *uint64) *Command {
		return NewCommand(&Assign{Assignment: &Assignment{VIP: vip, Holder: holder, Token: 999, Reason: "home"}, CAS: cas, Time: fixedTime.In(time.FixedZone("x", 3600))})
	}
	c := mustNext(t, base, assign("v", "n1", u64(0)))
	a := c.Assignments["v"]
	if a.Token != c.Index || !a.Since.Equal(fixedTime) || a.Since.Location() != time.UTC || a.Holder != "n1" || a.Reason != "home" {
		t.Fatalf("assignment %+v", a)
	}
	tests := []struct {
		name  string
		cmd   *Command
		field string
		err   error
	}{
		{"unknown vip", assign("nope", "n1", nil), "assignment.vip", ErrNotFound},
		{"unknown holder", assign("v", "n9", nil), "assignment.holder", ErrInvalid},
		{"stale token", assign("v", "n2", u64(a.Token-1)), "cas", ErrConflict},
		{"missing", NewCommand(&Assign{}), "assignment", ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Next(c, c.Index+1, tt.cmd)
			wantFieldError(t, err, tt.field, tt.err)
		})
	}
	c2 := mustNext(t, c, assign("v", "n2", u64(a.Token)))
	if c2.Assignments["v"].Token != c2.Index || c.Assignments["v"].Holder != "n1" {
		t.Fatal("reassignment wrong or modified the old document")
	}
	c3 := mustNext(t, c2, assign("v", "", nil))
	if c3.Assignments["v"].Holder != "" {
		t.Fatal("release not recorded")
	}
}

func TestNodesAndZones(t *testing.T) {
	c := Empty()
	up := func(n Node) *Command { return NewCommand(&NodeUpsert{Node: &n}) }
	c = mustNext(t, c, up(Node{ID: "n1", Zone: "a", RaftAddr: "127.0.0.1:7701"}))
	c = mustNext(t, c, up(Node{ID: "n1", Zone: "a", RaftAddr: "127.0.0.1:7701", ModifyIndex: 77}))
	if c.Nodes["n1"].ModifyIndex != 1 {
		t.Fatalf("unchanged node upsert moved modify_index to %d", c.Nodes["n1"].ModifyIndex)
	}
	c = mustNext(t, c, up(Node{ID: "n1", Zone: "b", RaftAddr: "127.0.0.1:7701"}))
	if n := c.Nodes["n1"]; n.ModifyIndex != 3 || n.Zone != "b" {
		t.Fatalf("node %+v", n)
	}
	zone := func(z string, ev bool) *Command {
		return NewCommand(&ZoneChange{Zone: &ZoneState{Zone: z, Evacuated: ev}})
	}
	c = mustNext(t, c, zone("a", true))
	c = mustNext(t, c, zone("a", true))
	if z := c.Zones["a"]; !z.Evacuated || z.ModifyIndex != 4 {
		t.Fatalf("zone %+v", z)
	}
	c = mustNext(t, c, zone("a", false))
	if z := c.Zones["a"]; z.Evacuated || z.ModifyIndex != 6 {
		t.Fatalf("zone %+v", z)
	}
	c = mustNext(t, c, up(Node{ID: "n1", Zone: "b", RaftAddr: "127.0.0.1:7701", InstanceID: "i-0a1", ENI: "eni-0a1", PrivateIP: "10.0.0.11"}))
	if n := c.Nodes["n1"]; n.ModifyIndex != 7 || n.ENI != "eni-0a1" || n.PrivateIP != "10.0.0.11" || n.InstanceID != "i-0a1" {
		t.Fatalf("node with AWS identity %+v", n)
	}
	c = mustNext(t, c, up(Node{ID: "n1", Zone: "b", RaftAddr: "127.0.0.1:7701", Role: RoleProxy}))
	if n := c.Nodes["n1"]; n.ModifyIndex != 8 || !n.IsProxy() {
		t.Fatalf("proxy node %+v", n)
	}
	c = mustNext(t, c, NewCommand(&NodeRemove{NodeID: "n1"}))
	if len(c.Nodes) != 0 {
		t.Fatal("node not removed")
	}
	tests := []struct {
		name  string
		cmd   *Command
		field string
		err   error
	}{
		{"remove missing", NewCommand(&NodeRemove{NodeID: "n1"}), "node_id", ErrNotFound},
		{"no node", NewCommand(&NodeUpsert{}), "node", ErrInvalid},
		{"no id", up(Node{RaftAddr: "127.0.0.1:1"}), "node.id", ErrInvalid},
		{"id with space", up(Node{ID: "a b", RaftAddr: "127.0.0.1:1"}), "node.id", ErrInvalid},
		{"no raft addr", up(Node{ID: "n2"}), "node.raft_addr", ErrInvalid},
		{"bad raft addr", up(Node{ID: "n2", RaftAddr: "127.0.0.1"}), "node.raft_addr", ErrInvalid},
		{"bad instance id", up(Node{ID: "n2", RaftAddr: "127.0.0.1:1", InstanceID: "web-1"}), "node.instance_id", ErrInvalid},
		{"bad eni", up(Node{ID: "n2", RaftAddr: "127.0.0.1:1", ENI: "eth0"}), "node.eni", ErrInvalid},
		{"bad private ip", up(Node{ID: "n2", RaftAddr: "127.0.0.1:1", PrivateIP: "10.0.0"}), "node.private_ip", ErrInvalid},
		{"bad role", up(Node{ID: "n2", RaftAddr: "127.0.0.1:1", Role: "observer"}), "node.role", ErrInvalid},
		{"no zone", NewCommand(&ZoneChange{}), "zone", ErrInvalid},
		{"empty zone", zone("", true), "zone.zone", ErrInvalid},
		{"bad type", &Command{Type: "frobnicate", V: CommandVersion}, "type", ErrInvalid},
		{"bad version", &Command{Type: CmdZone, V: 2, Payload: &ZoneChange{Zone: &ZoneState{Zone: "a"}}}, "v", ErrUnsupportedVersion},
		{"put without object", NewCommand(&Put{}), "objects", ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Next(c, c.Index+1, tt.cmd)
			wantFieldError(t, err, tt.field, tt.err)
		})
	}
	if _, err := Next(c, 1, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("nil command: %v", err)
	}
}

func TestRestore(t *testing.T) {
	base := baseConfig(t)
	base = mustNext(t, base, PutCommand(obj(KindVIP, "v", `{"provider":"none","home_node":"n1"}`), nil))
	base = mustNext(t, base, NewCommand(&Assign{Assignment: &Assignment{VIP: "v", Holder: "n1"}, Time: fixedTime}))
	base = mustNext(t, base, NewCommand(&ZoneChange{Zone: &ZoneState{Zone: "a", Evacuated: true}}))

	// Restoring the document as it is changes no modify_index, keeps nodes.
	same := mustNext(t, base, NewCommand(&Restore{Config: base}))
	for _, o := range same.Objects() {
		was, _ := base.Get(o.Kind, o.Name)
		if o.ModifyIndex != was.ModifyIndex {
			t.Errorf("%s/%s: modify_index %d -> %d", o.Kind, o.Name, was.ModifyIndex, o.ModifyIndex)
		}
	}
	if !reflect.DeepEqual(same.Assignments, base.Assignments) || !reflect.DeepEqual(same.Zones, base.Zones) || len(same.Nodes) != 3 {
		t.Fatal("restore of the same document changed assignments, zones or nodes")
	}

	// Restoring an older document replaces objects (not nodes).
	old := Empty()
	old = mustNext(t, old, PutCommand(obj(KindListener, "web", `{"port":9999}`), nil))
	old = mustNext(t, old, PutCommand(obj(KindPool, "legacy", `{}`), nil))
	r := mustNext(t, base, NewCommand(&Restore{Config: old}))
	if len(r.Routes) != 0 || len(r.VIPs) != 0 || len(r.Assignments) != 0 || len(r.Zones) != 0 || len(r.Nodes) != 3 {
		t.Fatalf("restore result: %d routes %d vips %d assignments %d zones %d nodes", len(r.Routes), len(r.VIPs), len(r.Assignments), len(r.Zones), len(r.Nodes))
	}
	if l := r.Listeners["web"]; l.Spec.Port != 9999 || l.ModifyIndex != r.Index {
		t.Fatalf("listener %+v", l)
	}

	// A document that breaks the rules is refused with the object's path.
	bad := Empty()
	bad.Routes["r"] = &Route{Name: "r", Spec: RouteSpec{Listener: "missing", Action: RouteAction{Respond: &Respond{Status: 200}}}}
	_, err := Next(base, base.Index+1, NewCommand(&Restore{Config: bad}))
	wantFieldError(t, err, "routes/r.spec.listener", ErrInvalid)
	bad = Empty()
	bad.Pools["p"] = &Pool{Name: "p", Spec: PoolSpec{Balancer: "x"}}
	_, err = Next(base, base.Index+1, NewCommand(&Restore{Config: bad}))
	wantFieldError(t, err, "pools/p.spec.balancer", ErrInvalid)
	bad = Empty()
	bad.Pools["p"] = &Pool{Name: "q"}
	_, err = Next(base, base.Index+1, NewCommand(&Restore{Config: bad}))
	wantFieldError(t, err, "pools/p.name", ErrInvalid)
	_, err = Next(base, base.Index+1, NewCommand(&Restore{}))
	wantFieldError(t, err, "config", ErrInvalid)
}

// commandLog is a varied sequence of commands, some of them refused.
func commandLog() []*Command {
	var log []*Command
	for i := range 3 {
		n := Node{ID: fmt.Sprintf("n%d", i+1), Zone: fmt.Sprintf("z%d", i), RaftAddr: fmt.Sprintf("127.0.0.%d:7701", i+1)}
		log = append(log, NewCommand(&NodeUpsert{Node: &n}))
	}
	log = append(log, ApplyCommand([]Object{
		obj(KindListener, "web", `{"port":8080}`),
		obj(KindPool, "app", `{"backends":[{"addr":"10.0.0.1:80"},{"addr":"10.0.0.2:80"}]}`),
		obj(KindVIP, "v1", `{"provider":"aws-eip","allocation_id":"eipalloc-1","home_node":"n1"}`),
	}))
	for i := range 20 {
		log = append(log, PutCommand(obj(KindRoute, fmt.Sprintf("r%02d", i), fmt.Sprintf(`{"listener":"web","priority":%d,"match":{"path":{"prefix":"/%d"}},"action":{"split":[{"pool":"app","weight":%d}]}}`, i, i, i+1)), nil))
	}
	log = append(log,
		NewCommand(&Assign{Assignment: &Assignment{VIP: "v1", Holder: "n2"}, Time: fixedTime}),
		DeleteCommand(KindListener, "web", nil), // refused: in use
		DeleteCommand(KindRoute, "r03", nil),
		PutCommand(obj(KindPool, "app", `{"balancer":"random"}`), u64(1)), // refused: stale cas
		NewCommand(&ZoneChange{Zone: &ZoneState{Zone: "z1", Evacuated: true}}),
		NewCommand(&NodeRemove{NodeID: "n3"}),
	)
	return log
}

func TestDeterminism(t *testing.T) {
	run := func() []byte {
		f := New()
		for i, cmd := range commandLog() {
			b, err := EncodeCommand(cmd)
			if err != nil {
				t.Fatal(err)
			}
			_ = f.Apply(uint64(i+1), b) // refused entries are part of the log too
		}
		return snapshotBytes(t, f.Config())
	}
	a, b := run(), run()
	if !bytes.Equal(a, b) {
		t.Fatal("the same log gave different snapshots")
	}
	// The pure function gives the same document as the FSM.
	c := Empty()
	for i, cmd := range commandLog() {
		if next, err := Next(c, uint64(i+1), cmd); err == nil {
			c = next
		} else {
			cc := *c
			cc.Index = uint64(i + 1)
			c = &cc
		}
	}
	if !bytes.Equal(a, snapshotBytes(t, c)) {
		t.Fatal("Next and FSM.Apply disagree")
	}
}

func TestEncodeDecodeCommand(t *testing.T) {
	for _, cmd := range commandLog() {
		b, err := EncodeCommand(cmd)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeCommand(b)
		if err != nil {
			t.Fatal(err)
		}
		b2, _ := EncodeCommand(back)
		if !bytes.Equal(b, b2) {
			t.Fatalf("command round trip:\n%s\n%s", b, b2)
		}
	}
	tests := []struct {
		in  string
		err error
	}{
		{`{"type":"put","v":2}`, ErrUnsupportedVersion},
		{`{"type":"put"}`, ErrUnsupportedVersion},
		{`{"type":"nope","v":1}`, ErrInvalid},
		{`{"type":"put","v":1,"extra":1}`, ErrInvalid},
		{`{"type":"put","v":1}x`, ErrInvalid},
		{`not json`, ErrCorruptEntry},
		{`{not json`, ErrInvalid},
		{``, ErrInvalid},
	}
	for _, tt := range tests {
		if _, err := DecodeCommand([]byte(tt.in)); !errors.Is(err, tt.err) {
			t.Errorf("DecodeCommand(%q) = %v, want %v", tt.in, err, tt.err)
		}
	}
	if _, err := EncodeCommand(nil); err == nil {
		t.Error("EncodeCommand(nil) succeeded")
	}
}

// Every byte of an encoded entry is covered: flipping any bit of the
// frame or the payload is refused as ErrCorruptEntry, never decoded into
// a different command.
func TestDecodeCommandRefusesCorruptEntries(t *testing.T) {
	good, err := EncodeCommand(PutCommand(obj(KindListener, "web", `{"port":8080}`), nil))
	if err != nil {
		t.Fatal(err)
	}
	if good[0] == '{' {
		t.Fatalf("EncodeCommand wrote an unframed entry: %q", good)
	}
	if err := VerifyCommand(good); err != nil {
		t.Fatalf("VerifyCommand(good) = %v", err)
	}
	for i := range good {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			b := bytes.Clone(good)
			b[i] ^= mask
			if _, err := DecodeCommand(b); !errors.Is(err, ErrCorruptEntry) {
				t.Fatalf("byte %d ^ %#x: DecodeCommand = %v, want ErrCorruptEntry", i, mask, err)
			}
			if err := VerifyCommand(b); !errors.Is(err, ErrCorruptEntry) {
				t.Fatalf("byte %d ^ %#x: VerifyCommand = %v, want ErrCorruptEntry", i, mask, err)
			}
		}
	}
	for _, b := range [][]byte{good[:3], good[:len(good)-1], nil} {
		if err := VerifyCommand(b); !errors.Is(err, ErrCorruptEntry) {
			t.Errorf("VerifyCommand(%q) = %v, want ErrCorruptEntry", b, err)
		}
	}
	// An unframed JSON envelope, as logs written before the checksum hold,
	// still decodes.
	legacy := []byte(`{"type":"put","v":1,"objects":[{"kind":"listener","name":"web","spec":{"port":8080}}]}`)
	cmd, err := DecodeCommand(legacy)
	if err != nil || cmd.Type != CmdPut || VerifyCommand(legacy) != nil {
		t.Fatalf("legacy entry: %+v, %v", cmd, err)
	}
}

func TestSettle(t *testing.T) {
	base := baseConfig(t)
	base = mustNext(t, base, PutCommand(obj(KindVIP, "v", `{"provider":"linux","address":"10.0.0.9/24","home_node":"n1"}`), nil))
	c := mustNext(t, base, NewCommand(&Assign{Assignment: &Assignment{VIP: "v", Holder: "n1"}, Time: fixedTime}))
	tok := c.Assignments["v"].Token
	settle := func(vip string, token uint64) *Command {
		return NewCommand(&Settle{Assignment: &Assignment{VIP: vip, Token: token}})
	}
	for _, tt := range []struct {
		name  string
		cmd   *Command
		field string
		err   error
	}{
		{"older token", settle("v", tok-1), "assignment.token", ErrConflict},
		{"no assignment", settle("w", 1), "assignment.vip", ErrNotFound},
		{"missing", NewCommand(&Settle{}), "assignment", ErrInvalid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Next(c, c.Index+1, tt.cmd)
			wantFieldError(t, err, tt.field, tt.err)
		})
	}
	s := mustNext(t, c, settle("v", tok))
	if a := s.Assignments["v"]; !a.Settled || a.Token != tok || a.Holder != "n1" || c.Assignments["v"].Settled {
		t.Fatalf("after settle %+v (before %+v)", a, c.Assignments["v"])
	}
	// A new assignment starts unsettled.
	n := mustNext(t, s, NewCommand(&Assign{Assignment: &Assignment{VIP: "v", Holder: "n2"}, Time: fixedTime}))
	if n.Assignments["v"].Settled {
		t.Fatal("a new assignment inherited settled")
	}
}
