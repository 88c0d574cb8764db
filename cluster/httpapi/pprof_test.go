package httpapi

import (
	"bytes"
	"testing"
)

// /debug/pprof answers only a read-write token: no token gets 401, a
// read-only one 403, and the read-write one the profile index, a named
// profile and a short CPU profile. ?seconds past the bound is refused.
func TestPprofNeedsReadWriteToken(t *testing.T) {
	a := newTestAPI(t, "n1", withTokens)
	for _, tc := range []struct {
		name, path, token string
		status            int
		want              string // in the body
	}{
		{"no token", "/debug/pprof/", "", 401, ""},
		{"unknown token", "/debug/pprof/", "nope", 401, ""},
		{"read-only token", "/debug/pprof/", roToken, 403, ""},
		{"read-only heap", "/debug/pprof/heap", roToken, 403, ""},
		{"read-only cpu", "/debug/pprof/profile?seconds=1", roToken, 403, ""},
		{"no token cmdline", "/debug/pprof/cmdline", "", 401, ""},
		{"read-write index", "/debug/pprof/", rwToken, 200, "goroutine"},
		{"read-write goroutines", "/debug/pprof/goroutine?debug=1", rwToken, 200, "goroutine profile:"},
		{"read-write cpu", "/debug/pprof/profile?seconds=1", rwToken, 200, ""},
		{"seconds out of range", "/debug/pprof/profile?seconds=100000", rwToken, 400, ""},
		{"seconds not a number", "/debug/pprof/trace?seconds=x", rwToken, 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, a.srv.URL, "GET", tc.path, tc.token, "")
			if r.status != tc.status {
				t.Fatalf("GET %s: %d %.200s, want %d", tc.path, r.status, r.body, tc.status)
			}
			switch {
			case tc.status == 401 && r.errorBody(t).Code != CodeUnauthorized,
				tc.status == 403 && r.errorBody(t).Code != CodeForbidden,
				tc.status == 400 && r.errorBody(t).Code != CodeInvalid:
				t.Fatalf("GET %s: error body %s", tc.path, r.body)
			case tc.status == 200 && !bytes.Contains(r.body, []byte(tc.want)):
				t.Fatalf("GET %s: body lacks %q: %.300s", tc.path, tc.want, r.body)
			case tc.status == 200 && len(r.body) == 0:
				t.Fatalf("GET %s: empty body", tc.path)
			case tc.status != 200 && bytes.Contains(r.body, []byte("goroutine")):
				t.Fatalf("GET %s: refused but the body has profile data: %.200s", tc.path, r.body)
			}
		})
	}
}
