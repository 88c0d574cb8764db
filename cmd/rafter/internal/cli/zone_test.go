package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

const zonesJSON = `{"index":42,"items":[
{"zone":"a","evacuated":false,"modify_index":0,"nodes":["n1"],"backends":2},
{"zone":"b","evacuated":true,"modify_index":40,"nodes":["n2","n4"],"backends":3},
{"zone":"d","evacuated":false,"modify_index":0,"nodes":[],"backends":1}]}`

func TestZoneCommands(t *testing.T) {
	tests := []struct {
		name     string
		answers  map[string]answer
		args     []string
		wantOut  []string // substrings of stdout, in order
		wantErrS string   // substring of stderr; "" = stderr empty
		wantErr  string   // exact error line; "" = success
		wantReqs []string
	}{
		{
			name:     "evacuate",
			answers:  map[string]answer{"POST /v1/zones/b/evacuate": {200, `{"index":43,"zone":"b","evacuated":true}`}},
			args:     []string{"zone", "evacuate", "b"},
			wantOut:  []string{"zone b evacuated at index 43\n"},
			wantReqs: []string{"POST /v1/zones/b/evacuate?"},
		},
		{
			name: "evacuate with a warning",
			answers: map[string]answer{"POST /v1/zones/a/evacuate": {200,
				`{"index":44,"zone":"a","evacuated":true,"warning":"evacuating zone \"a\" leaves no backend outside evacuated zones in pool(s) app","stranded_pools":["app"]}`}},
			args:     []string{"zone", "evacuate", "a"},
			wantOut:  []string{"zone a evacuated at index 44\n"},
			wantErrS: `warning: evacuating zone "a" leaves no backend outside evacuated zones in pool(s) app`,
		},
		{
			name:     "restore",
			answers:  map[string]answer{"DELETE /v1/zones/b/evacuate": {200, `{"index":45,"zone":"b","evacuated":false}`}},
			args:     []string{"zone", "restore", "b"},
			wantOut:  []string{"zone b restored at index 45\n"},
			wantReqs: []string{"DELETE /v1/zones/b/evacuate?"},
		},
		{
			name:    "list table",
			answers: map[string]answer{"GET /v1/zones": {200, zonesJSON}},
			args:    []string{"zone", "list"},
			wantOut: []string{"ZONE", "EVACUATED", "NODES", "BACKENDS", "INDEX",
				"a", "no", "n1", "2", "-",
				"b", "yes", "n2,n4", "3", "40",
				"d", "no", "-", "1", "-"},
			wantReqs: []string{"GET /v1/zones?"},
		},
		{
			name:    "list json",
			answers: map[string]answer{"GET /v1/zones": {200, zonesJSON}},
			args:    []string{"zone", "ls", "-o", "json"},
			wantOut: []string{`"zone": "a"`, `"zone": "b"`, `"evacuated": true`, `"modify_index": 40`},
		},
		{
			name:    "list bad output",
			args:    []string{"zone", "list", "-o", "xml"},
			wantErr: `-o/--output: want table, json or yaml, got "xml"`,
		},
		{
			name:    "invalid zone name",
			answers: map[string]answer{"POST /v1/zones/a:b/evacuate": {400, `{"error":{"code":"invalid","message":"\"a:b\" is not a valid zone name","field":"zone"}}`}},
			args:    []string{"zone", "evacuate", "a:b"},
			wantErr: `400 invalid: zone: "a:b" is not a valid zone name`,
		},
		{
			name:    "read-only token",
			answers: map[string]answer{"DELETE /v1/zones/b/evacuate": {403, `{"error":{"code":"forbidden","message":"read-only token used for a write"}}`}},
			args:    []string{"zone", "restore", "b"},
			wantErr: "403 forbidden: read-only token used for a write",
		},
		{
			name:    "no leader",
			answers: map[string]answer{"POST /v1/zones/b/evacuate": {503, `{"error":{"code":"no_leader","message":"no leader"}}`}},
			args:    []string{"zone", "evacuate", "b"},
			wantErr: "503 no_leader: no leader",
		},
		{
			name:    "zone name required",
			args:    []string{"zone", "evacuate"},
			wantErr: "accepts 1 arg(s), received 0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, reqs, err := runAgainst(t, tt.answers, tt.args)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v\nout:\n%s", err, out)
			}
			wantInOrder(t, out, tt.wantOut)
			if tt.wantErrS == "" && errOut != "" || !strings.Contains(errOut, tt.wantErrS) {
				t.Fatalf("stderr %q, want %q", errOut, tt.wantErrS)
			}
			for i, w := range tt.wantReqs {
				if i >= len(reqs) || reqs[i] != w {
					t.Fatalf("request %d = %q, want %q (all: %q)", i, at(reqs, i), w, reqs)
				}
			}
		})
	}
}

// runAgainst runs the CLI with args against a fake API answering answers,
// and returns stdout, stderr, the requests the API saw and the error.
func runAgainst(t *testing.T, answers map[string]answer, args []string) (out, errOut string, reqs []string, err error) {
	t.Helper()
	api := newFakeAPI(t, answers)
	var o, e bytes.Buffer
	env := map[string]string{"RAFTER_ADDR": api.srv.URL, "RAFTER_TOKEN": "tok"}
	s := Streams{In: strings.NewReader(""), Out: &o, Err: &e, Getenv: func(k string) string { return env[k] }}
	err = Execute(context.Background(), NewRoot(s), args)
	return o.String(), e.String(), api.requests(), err
}

// wantInOrder fails unless out contains every one of want, in order.
func wantInOrder(t *testing.T, out string, want []string) {
	t.Helper()
	rest := out
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Fatalf("output lacks %q (in order); output:\n%s", w, out)
		}
		rest = rest[i+len(w):]
	}
}
