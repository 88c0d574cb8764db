package httpapi

import (
	"bytes"
	"encoding/binary"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/fsm"
)

// seedSnapshotStore fills a store with a listener, a pool, a route and a vip.
func seedSnapshotStore(t *testing.T, st *fakeStore) {
	t.Helper()
	st.putPrereqs(t)
	st.put(t, fsm.KindRoute, "app", validSpecs[fsm.KindRoute])
	st.put(t, fsm.KindVIP, "edge", validSpecs[fsm.KindVIP])
}

// getSnapshot fetches GET /v1/snapshot and checks that it decodes.
func getSnapshot(t *testing.T, base, query, token string) ([]byte, *fsm.Config) {
	t.Helper()
	r := do(t, base, "GET", "/v1/snapshot"+query, token, "")
	if r.status != http.StatusOK {
		t.Fatalf("GET /v1/snapshot: %d %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != ContentTypeSnapshot {
		t.Fatalf("Content-Type %q, want %q", ct, ContentTypeSnapshot)
	}
	cfg, err := fsm.ReadSnapshot(bytes.NewReader(r.body))
	if err != nil {
		t.Fatalf("the snapshot does not read back: %v", err)
	}
	if got := r.header.Get(HeaderIndex); got != strconv.FormatUint(cfg.Index, 10) {
		t.Fatalf("%s = %s, want the snapshot's index %d", HeaderIndex, got, cfg.Index)
	}
	return r.body, cfg
}

func changeKeys(cs []fsm.Change) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.Op+" "+string(c.Kind)+"/"+c.Name)
	}
	return out
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	a := newTestAPI(t, "n1", withTokens)
	seedSnapshotStore(t, a.store)
	saved := a.store.Config()
	snap, cfg := getSnapshot(t, a.srv.URL, "", roToken)
	if d := fsm.Diff(saved, cfg); len(d) != 0 || cfg.Index != saved.Index {
		t.Fatalf("snapshot differs from the store: index %d vs %d, %v", cfg.Index, saved.Index, changeKeys(d))
	}

	// After the snapshot: new objects, a changed one, a deleted one.
	a.store.put(t, fsm.KindListener, "late", `{"port": 9090}`)
	a.store.put(t, fsm.KindPool, "late", validSpecs[fsm.KindPool])
	a.store.put(t, fsm.KindRoute, "late", `{"listener": "late", "match": {"path": {"prefix": "/late"}}, "action": {"split": [{"pool": "late", "weight": 100}]}}`)
	a.store.put(t, fsm.KindPool, "app", `{"balancer": "random", "backends": [{"addr": "127.0.0.1:9001", "weight": 1}]}`)
	if _, err := a.store.Apply(t.Context(), fsm.DeleteCommand(fsm.KindVIP, "edge", nil)); err != nil {
		t.Fatal(err)
	}
	before := a.store.Config()

	want := []string{"delete listener/late", "update pool/app", "delete pool/late", "delete route/late", "create vip/edge"}

	// A dry run lists what a restore would do and writes nothing.
	r := do(t, a.srv.URL, "POST", "/v1/restore?dry_run", rwToken, string(snap))
	if r.status != http.StatusOK {
		t.Fatalf("dry run: %d %s", r.status, r.body)
	}
	var dry api.ApplyResult
	r.decode(t, &dry)
	if got := changeKeys(dry.Changes); strings.Join(got, ",") != strings.Join(want, ",") || dry.Index != 0 {
		t.Fatalf("dry run = index %d %v, want %v", dry.Index, got, want)
	}
	if a.store.Config() != before {
		t.Fatal("a dry run changed the store")
	}

	r = do(t, a.srv.URL, "POST", "/v1/restore", rwToken, string(snap))
	if r.status != http.StatusOK {
		t.Fatalf("restore: %d %s", r.status, r.body)
	}
	var res api.ApplyResult
	r.decode(t, &res)
	after := a.store.Config()
	if res.Index == 0 || res.Index != after.Index || r.header.Get(HeaderIndex) != strconv.FormatUint(res.Index, 10) {
		t.Fatalf("restore answered index %d (header %s), store at %d", res.Index, r.header.Get(HeaderIndex), after.Index)
	}
	if got := changeKeys(res.Changes); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("restore changes %v, want %v", got, want)
	}
	if d := fsm.Diff(saved, after); len(d) != 0 {
		t.Fatalf("after restore the store differs from the snapshot: %v", changeKeys(d))
	}
	for _, k := range []fsm.Kind{fsm.KindListener, fsm.KindPool, fsm.KindRoute} {
		if _, ok := after.Get(k, "late"); ok {
			t.Errorf("%s/late survived the restore", k)
		}
	}
	// Objects the restore did not change keep their modify_index, so
	// compare-and-set by clients still holds.
	for _, k := range []fsm.Kind{fsm.KindListener, fsm.KindRoute} {
		o1, _ := saved.Get(k, map[fsm.Kind]string{fsm.KindListener: "web", fsm.KindRoute: "app"}[k])
		o2, _ := after.Get(k, o1.Name)
		if o1.ModifyIndex != o2.ModifyIndex {
			t.Errorf("%s/%s modify_index %d -> %d", k, o1.Name, o1.ModifyIndex, o2.ModifyIndex)
		}
	}

	// Restoring the same snapshot again changes no object.
	r = do(t, a.srv.URL, "POST", "/v1/restore", rwToken, string(snap))
	r.decode(t, &res)
	if r.status != http.StatusOK || len(res.Changes) != 0 {
		t.Fatalf("second restore: %d %s", r.status, r.body)
	}
}

// An empty document snapshots and restores too: everything goes.
func TestRestoreEmptySnapshot(t *testing.T) {
	a := newTestAPI(t, "n1", nil)
	snap, _ := getSnapshot(t, a.srv.URL, "", "")
	seedSnapshotStore(t, a.store)
	r := do(t, a.srv.URL, "POST", "/v1/restore", "", string(snap))
	if r.status != http.StatusOK {
		t.Fatalf("restore: %d %s", r.status, r.body)
	}
	if objs := a.store.Config().Objects(); len(objs) != 0 {
		t.Fatalf("after restoring an empty snapshot: %+v", objs)
	}
}

func TestRestoreRefusesBadSnapshots(t *testing.T) {
	a := newTestAPI(t, "n1", withTokens)
	seedSnapshotStore(t, a.store)
	good, _ := getSnapshot(t, a.srv.URL, "", roToken)
	a.store.put(t, fsm.KindListener, "late", `{"port": 9090}`)

	mutate := func(f func(b []byte) []byte) string {
		return string(f(bytes.Clone(good)))
	}
	tests := []struct {
		name, body string
		message    string
	}{
		{"empty", "", "request body is empty"},
		{"not a snapshot", "kind: listener\nname: web\nspec: {port: 8080}\n", "bad magic"},
		{"short header", string(good[:10]), "header"},
		{"truncated payload", string(good[:len(good)/2]), "truncated payload"},
		{"truncated checksum", string(good[:len(good)-5]), "truncated checksum"},
		{"flipped byte", mutate(func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b }), "request body: corrupt snapshot: checksum mismatch"},
		{"trailing data", string(good) + "x", "trailing data"},
		{"future version", mutate(func(b []byte) []byte { binary.BigEndian.PutUint32(b[8:], 99); return b }), "snapshot format 99"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := a.store.Config()
			for _, q := range []string{"", "?dry_run"} {
				r := do(t, a.srv.URL, "POST", "/v1/restore"+q, rwToken, tc.body)
				if r.status != http.StatusBadRequest {
					t.Fatalf("%s: got %d %s, want 400", q, r.status, r.body)
				}
				if e := r.errorBody(t); e.Code != CodeInvalid || !strings.Contains(e.Message, tc.message) {
					t.Fatalf("%s: error %+v, want code %s naming %q", q, e, CodeInvalid, tc.message)
				}
			}
			if a.store.Config() != before {
				t.Fatal("a refused snapshot changed the store")
			}
		})
	}
}

func TestRestoreTooLarge(t *testing.T) {
	a := newTestAPI(t, "n1", func(c *Config) { c.MaxSnapshotBytes = 64 })
	seedSnapshotStore(t, a.store)
	snap, _ := getSnapshot(t, a.srv.URL, "", "")
	before := a.store.Config()
	r := do(t, a.srv.URL, "POST", "/v1/restore", "", string(snap))
	if r.status != http.StatusRequestEntityTooLarge || r.errorBody(t).Code != CodeTooLarge {
		t.Fatalf("got %d %s, want 413", r.status, r.body)
	}
	if a.store.Config() != before {
		t.Fatal("an oversized snapshot changed the store")
	}

	// The restore limit is its own: a manifest-sized limit does not apply.
	b := newTestAPI(t, "n1", func(c *Config) { c.MaxBodyBytes = 64 })
	seedSnapshotStore(t, b.store)
	snap, _ = getSnapshot(t, b.srv.URL, "", "")
	if r := do(t, b.srv.URL, "POST", "/v1/restore", "", string(snap)); r.status != http.StatusOK {
		t.Fatalf("restore under the default snapshot limit: %d %s", r.status, r.body)
	}
}

func TestSnapshotAuth(t *testing.T) {
	a := newTestAPI(t, "n1", withTokens)
	seedSnapshotStore(t, a.store)
	snap, _ := getSnapshot(t, a.srv.URL, "", roToken)
	a.store.put(t, fsm.KindListener, "late", `{"port": 9090}`)
	tests := []struct {
		name, method, path, token, body string
		status                          int
	}{
		{"snapshot without token", "GET", "/v1/snapshot", "", "", http.StatusUnauthorized},
		{"snapshot read-only", "GET", "/v1/snapshot", roToken, "", http.StatusOK},
		{"restore without token", "POST", "/v1/restore", "", string(snap), http.StatusUnauthorized},
		{"restore read-only", "POST", "/v1/restore", roToken, string(snap), http.StatusForbidden},
		{"restore dry run read-only", "POST", "/v1/restore?dry_run", roToken, string(snap), http.StatusForbidden},
		{"restore wrong method", "GET", "/v1/restore", rwToken, "", http.StatusMethodNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := a.store.Config()
			r := do(t, a.srv.URL, tc.method, tc.path, tc.token, tc.body)
			if r.status != tc.status {
				t.Fatalf("got %d %s, want %d", r.status, r.body, tc.status)
			}
			if a.store.Config() != before {
				t.Fatal("the store changed")
			}
		})
	}
}

// A follower relays a restore and a consistent snapshot to the leader; a
// plain snapshot is answered from its own state.
func TestSnapshotForwarded(t *testing.T) {
	rec := &recorder{}
	leader := newWrappedTestAPI(t, "n1", withTokens, rec.wrap)
	seedSnapshotStore(t, leader.store)
	follower := newTestAPI(t, "n2", withTokens)
	follower.store.setFollower("n1", leader.srv.Listener.Addr().String())

	// The follower is behind: it has nothing.
	local, cfg := getSnapshot(t, follower.srv.URL, "", roToken)
	if len(cfg.Objects()) != 0 || len(rec.requests()) != 0 {
		t.Fatalf("a local snapshot read was forwarded or came from elsewhere: %d objects", len(cfg.Objects()))
	}
	snap, cfg := getSnapshot(t, follower.srv.URL, "?consistent", roToken)
	if cfg.Index != leader.store.Config().Index || len(cfg.Objects()) != 4 {
		t.Fatalf("consistent snapshot at %d with %d objects, want the leader's", cfg.Index, len(cfg.Objects()))
	}
	if seen := rec.requests(); len(seen) != 1 || seen[0].uri != "/v1/snapshot?consistent" {
		t.Fatalf("leader saw %+v", seen)
	}

	// Restoring the follower's (empty) snapshot through the follower empties the leader.
	hdr := http.Header{"Content-Type": {ContentTypeSnapshot}}
	r := doCtx(t, t.Context(), follower.srv.URL, "POST", "/v1/restore", rwToken, string(local), hdr)
	if r.status != http.StatusOK {
		t.Fatalf("restore through the follower: %d %s", r.status, r.body)
	}
	seen := rec.requests()
	if len(seen) != 2 || seen[1].method != "POST" || seen[1].uri != "/v1/restore" || seen[1].body != string(local) ||
		seen[1].header.Get(HeaderForwarded) != "n2" || seen[1].header.Get("Authorization") != "Bearer "+rwToken {
		t.Fatalf("leader saw %+v", seen)
	}
	var res api.ApplyResult
	r.decode(t, &res)
	if res.Index != leader.store.Config().Index || len(leader.store.Config().Objects()) != 0 {
		t.Fatalf("leader after restore: index %d (answered %d), objects %v", leader.store.Config().Index, res.Index, leader.store.Config().Objects())
	}
	if follower.store.Config().Index != 0 {
		t.Fatal("the follower's store changed")
	}

	// And back: the leader's snapshot restores everything.
	r = doCtx(t, t.Context(), follower.srv.URL, "POST", "/v1/restore", rwToken, string(snap), hdr)
	if r.status != http.StatusOK || len(leader.store.Config().Objects()) != 4 {
		t.Fatalf("second restore: %d %s, leader has %d objects", r.status, r.body, len(leader.store.Config().Objects()))
	}
}
