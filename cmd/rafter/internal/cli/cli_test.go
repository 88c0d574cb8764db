package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rafterlb/rafter/fsm"
)

// fakeAPI is an httptest server answering canned bodies per "METHOD PATH".
type fakeAPI struct {
	srv     *httptest.Server
	mu      sync.Mutex
	answers map[string]answer
	seen    []string // "METHOD PATH?QUERY BODY"
}

type answer struct {
	status int
	body   string
}

func newFakeAPI(t *testing.T, answers map[string]answer) *fakeAPI {
	t.Helper()
	f := &fakeAPI{answers: answers}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		key := r.Method + " " + r.URL.EscapedPath()
		f.mu.Lock()
		f.seen = append(f.seen, strings.TrimSpace(key+"?"+r.URL.RawQuery+" "+string(b)))
		a, ok := f.answers[key]
		f.mu.Unlock()
		if !ok {
			a = answer{404, `{"error":{"code":"not_found","message":"no such thing"}}`}
		}
		w.Header().Set("X-Rafter-Index", "42")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		io.WriteString(w, a.body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.seen...)
}

// runCLI runs the command line against the fake API (through RAFTER_ADDR)
// and returns stdout and the error the command returned.
func runCLI(t *testing.T, addr string, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := map[string]string{"RAFTER_ADDR": addr, "RAFTER_TOKEN": "tok"}
	s := Streams{In: strings.NewReader(stdin), Out: &out, Err: &errOut, Getenv: func(k string) string { return env[k] }}
	err := Execute(context.Background(), NewRoot(s), args)
	return out.String(), err
}

const statusJSON = `{"node_id":"n1","zone":"a","state":"Leader","leader":"n1","leader_addr":"127.0.0.1:7700","term":3,"commit_index":12,"applied_index":12,
"members":[{"id":"n1","zone":"a","raft_addr":"127.0.0.1:7701","admin_addr":"127.0.0.1:7700","suffrage":"Voter","leader":true,"healthy":true},
{"id":"n2","zone":"b","raft_addr":"127.0.0.2:7701","admin_addr":"127.0.0.2:7700","suffrage":"Voter","healthy":false}]}`

const statusWithProxyJSON = `{"node_id":"n1","zone":"a","state":"Leader","leader":"n1","term":3,"commit_index":12,"applied_index":12,
"members":[{"id":"n1","zone":"a","raft_addr":"127.0.0.1:7701","suffrage":"Voter","leader":true,"healthy":true},
{"id":"p1","zone":"b","raft_addr":"127.0.0.2:7701","suffrage":"Nonvoter","healthy":true}]}`

const routesJSON = `{"index":42,"items":[
{"kind":"route","name":"app","spec":{"listener":"web","match":{"hosts":["app.example.com"],"path":{"prefix":"/api"}},"action":{"split":[{"pool":"a","weight":90},{"pool":"b","weight":10}]}},"modify_index":7},
{"kind":"route","name":"old","spec":{"listener":"web","match":{"path":{"exact":"/old"}},"action":{"redirect":{"scheme":"https","host":"x.example.com","code":301}}},"modify_index":9}]}`

func TestCommands(t *testing.T) {
	manifest := filepath.Join(t.TempDir(), "m.yaml")
	if err := os.WriteFile(manifest, []byte("kind: listener\nname: web\nspec: {port: 8080}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		answers  map[string]answer
		args     []string
		stdin    string
		wantOut  []string // substrings, in order
		wantErr  string   // exact error line; "" = success
		wantReqs []string
	}{
		{
			name:    "status table",
			answers: map[string]answer{"GET /v1/status": {200, statusJSON}},
			args:    []string{"status"},
			wantOut: []string{"Node:", "n1 (zone a)", "Leader, term 3", "n1 (127.0.0.1:7700)", "commit 12, applied 12",
				"MEMBER", "HEALTH", "n1", "leader", "healthy", "n2", "follower", "unhealthy"},
		},
		{
			name:    "get routes table",
			answers: map[string]answer{"GET /v1/routes": {200, routesJSON}},
			args:    []string{"get", "routes"},
			wantOut: []string{"NAME", "LISTENER", "HOSTS", "PATH", "ACTION", "INDEX",
				"app", "web", "app.example.com", "/api*", "split a=90,b=10", "7",
				"old", "*", "=/old", "redirect 301 https://x.example.com", "9"},
			wantReqs: []string{"GET /v1/routes?"},
		},
		{
			name:     "get one route by singular kind",
			answers:  map[string]answer{"GET /v1/routes/app": {200, `{"kind":"route","name":"app","spec":{"listener":"web","action":{"respond":{"status":204}}},"modify_index":3}`}},
			args:     []string{"get", "Route", "app", "-o", "json"},
			wantOut:  []string{`"kind": "route"`, `"name": "app"`, `"modify_index": 3`},
			wantReqs: []string{"GET /v1/routes/app?"},
		},
		{
			name:    "get listeners yaml",
			answers: map[string]answer{"GET /v1/listeners": {200, `{"index":1,"items":[{"kind":"listener","name":"web","spec":{"port":8080},"modify_index":1}]}`}},
			args:    []string{"get", "listeners", "-o", "yaml"},
			wantOut: []string{"kind: listener", "name: web", "port: 8080"},
		},
		{
			name:    "get unknown kind",
			args:    []string{"get", "widgets"},
			wantErr: `KIND "widgets": want listener, route, pool, vip, rollout or certificate`,
		},
		{
			name:    "get missing object: one error line",
			args:    []string{"get", "pool", "nope"},
			wantErr: "404 not_found: no such thing",
		},
		{
			name:     "apply prints changes",
			answers:  map[string]answer{"POST /v1/apply": {200, `{"index":43,"changes":[{"op":"create","kind":"listener","name":"web"},{"op":"update","kind":"route","name":"app"}]}`}},
			args:     []string{"apply", "-f", manifest},
			wantOut:  []string{"created listener/web\n", "updated route/app\n", "applied at index 43"},
			wantReqs: []string{"POST /v1/apply? kind: listener\nname: web\nspec: {port: 8080}"},
		},
		{
			name:     "apply dry run from stdin, nothing to do",
			answers:  map[string]answer{"POST /v1/apply": {200, `{"changes":[]}`}},
			args:     []string{"apply", "-f", "-", "--dry-run"},
			stdin:    `{"kind":"listener","name":"web","spec":{"port":8080}}`,
			wantOut:  []string{"unchanged (dry run)"},
			wantReqs: []string{`POST /v1/apply?dry_run=true {"kind":"listener","name":"web","spec":{"port":8080}}`},
		},
		{
			name:    "apply validation error",
			answers: map[string]answer{"POST /v1/apply": {400, `{"error":{"code":"invalid","message":"must be 1..65535","field":"spec.port"}}`}},
			args:    []string{"apply", "-f", manifest},
			wantErr: "400 invalid: spec.port: must be 1..65535",
		},
		{
			name:    "apply without file",
			args:    []string{"apply"},
			wantErr: "-f/--file: required",
		},
		{
			name:     "delete",
			answers:  map[string]answer{"DELETE /v1/pools/demo": {200, `{"index":50}`}},
			args:     []string{"delete", "pools", "demo", "--cas", "7"},
			wantOut:  []string{"deleted pool/demo at index 50"},
			wantReqs: []string{"DELETE /v1/pools/demo?cas=7"},
		},
		{
			name:    "delete conflict",
			answers: map[string]answer{"DELETE /v1/pools/demo": {409, `{"error":{"code":"conflict","message":"pool demo is used by route app"}}`}},
			args:    []string{"delete", "pool", "demo"},
			wantErr: "409 conflict: pool demo is used by route app",
		},
		{
			name:     "node join",
			answers:  map[string]answer{"POST /v1/nodes": {200, `{"index":51}`}},
			args:     []string{"node", "join", "n4", "--raft-addr", "127.0.0.4:7701", "--admin-addr", "127.0.0.4:7700", "--zone", "d"},
			wantOut:  []string{"node n4 joined"},
			wantReqs: []string{`POST /v1/nodes? {"id":"n4","zone":"d","raft_addr":"127.0.0.4:7701","admin_addr":"127.0.0.4:7700","bootstrapped":false}`},
		},
		{
			name:    "node join records the AWS identity",
			answers: map[string]answer{"POST /v1/nodes": {200, `{"index":51}`}},
			args: []string{"node", "join", "n4", "--raft-addr", "10.0.4.4:7701", "--zone", "d",
				"--aws-instance-id", "i-04", "--aws-eni", "eni-04", "--aws-private-ip", "10.0.4.4"},
			wantOut:  []string{"node n4 joined"},
			wantReqs: []string{`POST /v1/nodes? {"id":"n4","zone":"d","raft_addr":"10.0.4.4:7701","admin_addr":"","instance_id":"i-04","eni":"eni-04","private_ip":"10.0.4.4","bootstrapped":false}`},
		},
		{
			name:     "node join as a proxy",
			answers:  map[string]answer{"POST /v1/nodes": {200, `{"index":51}`}},
			args:     []string{"node", "join", "p1", "--raft-addr", "127.0.0.5:7701", "--zone", "d", "--role", "proxy"},
			wantOut:  []string{"node p1 joined"},
			wantReqs: []string{`POST /v1/nodes? {"id":"p1","zone":"d","raft_addr":"127.0.0.5:7701","admin_addr":"","role":"proxy","bootstrapped":false}`},
		},
		{
			name:     "node promote one",
			answers:  map[string]answer{"POST /v1/nodes/p1/promote": {200, `{"index":60,"voters":["n1","n2","n3","p1"]}`}},
			args:     []string{"node", "promote", "p1"},
			wantOut:  []string{"promoted p1; voters now n1, n2, n3, p1 (index 60)"},
			wantReqs: []string{"POST /v1/nodes/p1/promote?"},
		},
		{
			name:     "node promote two",
			answers:  map[string]answer{"POST /v1/nodes/promote": {200, `{"index":61,"voters":["n1","n2","n3","p1","p2"]}`}},
			args:     []string{"node", "promote", "p1", "p2"},
			wantOut:  []string{"promoted p1, p2; voters now n1, n2, n3, p1, p2 (index 61)"},
			wantReqs: []string{`POST /v1/nodes/promote? {"ids":["p1","p2"]}`},
		},
		{
			name: "node demote refused",
			answers: map[string]answer{"POST /v1/nodes/n3/demote": {409,
				`{"error":{"code":"conflict","field":"ids","message":"ids: that would make 2 voters"}}`}},
			args:    []string{"node", "demote", "n3"},
			wantErr: "409 conflict: ids: that would make 2 voters",
		},
		{
			name:    "status shows proxies",
			answers: map[string]answer{"GET /v1/status": {200, statusWithProxyJSON}},
			args:    []string{"status"},
			wantOut: []string{"Members:", "1 voters (quorum 1), 1 proxies", "MEMBER", "SUFFRAGE", "n1", "Voter", "leader", "p1", "Nonvoter", "proxy"},
		},
		{
			name:    "node join needs raft addr",
			args:    []string{"node", "join", "n4"},
			wantErr: "--raft-addr: required",
		},
		{
			name:     "node remove",
			answers:  map[string]answer{"DELETE /v1/nodes/n3": {200, `{"index":52}`}},
			args:     []string{"node", "remove", "n3"},
			wantOut:  []string{"node n3 removed"},
			wantReqs: []string{"DELETE /v1/nodes/n3?"},
		},
		{
			name:    "no leader",
			answers: map[string]answer{"GET /v1/status": {503, `{"error":{"code":"no_leader","message":"no leader"}}`}},
			args:    []string{"status"},
			wantErr: "503 no_leader: no leader",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := newFakeAPI(t, tt.answers)
			out, err := runCLI(t, api.srv.URL, tt.stdin, tt.args...)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Fatalf("error spans lines: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v\nout:\n%s", err, out)
			}
			rest := out
			for _, w := range tt.wantOut {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("output lacks %q (in order); output:\n%s", w, out)
				}
				rest = rest[i+len(w):]
			}
			reqs := api.requests()
			for i, w := range tt.wantReqs {
				if i >= len(reqs) || reqs[i] != w {
					t.Fatalf("request %d = %q, want %q (all: %q)", i, at(reqs, i), w, reqs)
				}
			}
		})
	}
}

func at(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return "<none>"
}

func TestTokenAndAddrFlags(t *testing.T) {
	var gotAuth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth = r.Header.Get("Authorization")
		io.WriteString(w, statusJSON)
	}))
	t.Cleanup(srv.Close)
	// --addr and --token beat the environment (RAFTER_ADDR points nowhere).
	if _, err := runCLI(t, "http://127.0.0.1:1", "", "status", "--addr", srv.URL, "--token", "flagtok"); err != nil {
		t.Fatal(err)
	}
	if gotAuth != "Bearer flagtok" {
		t.Fatalf("Authorization = %q", gotAuth)
	}
	if _, err := runCLI(t, srv.URL, "", "status"); err != nil {
		t.Fatal(err)
	}
	if gotAuth != "Bearer tok" {
		t.Fatalf("Authorization from RAFTER_TOKEN = %q", gotAuth)
	}
}

// testSnapshot is a snapshot of a listener, a pool and a route at index 41.
func testSnapshot(t *testing.T) []byte {
	t.Helper()
	objs, err := fsm.ParseManifest([]byte(`[{"kind":"listener","name":"web","spec":{"port":8080}},
{"kind":"pool","name":"demo","spec":{"backends":[{"addr":"127.0.0.1:9000"}]}},
{"kind":"route","name":"demo","spec":{"listener":"web","action":{"split":[{"pool":"demo","weight":100}]}}}]`))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := fsm.Next(fsm.Empty(), 41, fsm.ApplyCommand(objs))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := fsm.WriteSnapshot(&buf, cfg); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestSnapshotSaveRestore(t *testing.T) {
	snap := testSnapshot(t)
	api := newFakeAPI(t, map[string]answer{
		"GET /v1/snapshot": {200, string(snap)},
		"POST /v1/restore": {200, `{"index":60,"changes":[{"op":"delete","kind":"route","name":"late"}]}`},
	})
	dir := t.TempDir()
	file := filepath.Join(dir, "backup.snap")
	out, err := runCLI(t, api.srv.URL, "", "snapshot", "save", file)
	if err != nil {
		t.Fatalf("save: %v", err)
	}
	if !strings.Contains(out, "saved 3 objects at index 41 to "+file) {
		t.Fatalf("save output: %q", out)
	}
	if b, err := os.ReadFile(file); err != nil || !bytes.Equal(b, snap) {
		t.Fatalf("saved file differs from the snapshot served (%d vs %d bytes): %v", len(b), len(snap), err)
	}
	if _, err := os.Stat(file + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("temporary file left behind: %v", err)
	}

	out, err = runCLI(t, api.srv.URL, "", "snapshot", "restore", file)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if !strings.Contains(out, "deleted route/late") || !strings.Contains(out, "applied at index 60") {
		t.Fatalf("restore output: %q", out)
	}
	out, err = runCLI(t, api.srv.URL, "", "snapshot", "restore", file, "--dry-run")
	if err != nil || !strings.Contains(out, "deleted route/late (dry run)") {
		t.Fatalf("restore --dry-run: %q %v", out, err)
	}
	reqs := api.requests()
	want := []string{"GET /v1/snapshot?consistent=true", "POST /v1/restore? ", "POST /v1/restore?dry_run=true "}
	if len(reqs) != len(want) {
		t.Fatalf("requests: %q", reqs)
	}
	for i, w := range want {
		if !strings.HasPrefix(reqs[i], w) {
			t.Fatalf("request %d = %.60q, want %q...", i, reqs[i], w)
		}
	}
	// The file goes to the server byte for byte.
	if body := strings.TrimPrefix(reqs[1], want[1]); body != strings.TrimSpace(string(snap)) {
		t.Fatalf("restore sent %d bytes, want the file's %d", len(body), len(snap))
	}

	// A corrupted file is refused and nothing is sent.
	b := bytes.Clone(snap)
	b[len(b)/2] ^= 0xff
	bad := filepath.Join(dir, "bad.snap")
	if err := os.WriteFile(bad, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"snapshot", "restore", bad}, {"snapshot", "restore", bad, "--dry-run"}} {
		if _, err := runCLI(t, api.srv.URL, "", args...); err == nil || !errors.Is(err, fsm.ErrCorruptSnapshot) || !strings.Contains(err.Error(), bad) {
			t.Fatalf("%v: err %v, want a corrupt snapshot refusal naming %s", args, err, bad)
		}
	}
	if n := len(api.requests()); n != len(want) {
		t.Fatalf("a request was sent for a corrupt snapshot (%d requests)", n)
	}
}

// A damaged snapshot from the server is not written: the previous file stays.
func TestSnapshotSaveRefusesCorruptAnswer(t *testing.T) {
	snap := testSnapshot(t)
	tests := []struct {
		name string
		body []byte
	}{
		{"truncated", snap[:len(snap)-10]},
		{"flipped", func() []byte { b := bytes.Clone(snap); b[30] ^= 0x01; return b }()},
		{"not a snapshot", []byte(`{"kind":"listener"}`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			api := newFakeAPI(t, map[string]answer{"GET /v1/snapshot": {200, string(tc.body)}})
			file := filepath.Join(t.TempDir(), "backup.snap")
			if err := os.WriteFile(file, []byte("previous"), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := runCLI(t, api.srv.URL, "", "snapshot", "save", file); !errors.Is(err, fsm.ErrCorruptSnapshot) {
				t.Fatalf("err %v, want a corrupt snapshot refusal", err)
			}
			if b, _ := os.ReadFile(file); string(b) != "previous" {
				t.Fatalf("the previous file was replaced: %q", b)
			}
			if _, err := os.Stat(file + ".tmp"); !os.IsNotExist(err) {
				t.Fatalf("temporary file written: %v", err)
			}
		})
	}
}

func TestTLSInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	out, err := runCLI(t, "", "", "tls", "init", "--dir", dir, "--nodes", "n1=127.0.0.1,n2=127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.pem", "ca-key.pem", "n1.pem", "n1-key.pem", "n2.pem", "n2-key.pem"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if !strings.Contains(out, "n2-key.pem") {
		t.Errorf("output: %q", out)
	}
	_, err = runCLI(t, "", "", "tls", "init", "--dir", dir, "--nodes", "n1=127.0.0.1")
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second init: %v, want a refusal naming --force", err)
	}
	if _, err := runCLI(t, "", "", "tls", "init", "--dir", dir, "--nodes", "n1=127.0.0.1", "--force"); err != nil {
		t.Fatalf("init --force: %v", err)
	}
	if _, err := runCLI(t, "", "", "tls", "init", "--dir", dir, "--nodes", "bad"); err == nil || !strings.HasPrefix(err.Error(), "--nodes:") {
		t.Fatalf("bad --nodes: %v", err)
	}
}

func TestVersion(t *testing.T) {
	out, err := runCLI(t, "", "", "version")
	if err != nil || !strings.HasPrefix(out, "rafter ") {
		t.Fatalf("version = %q, %v", out, err)
	}
}
