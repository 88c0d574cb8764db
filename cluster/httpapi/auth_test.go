package httpapi

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/rafterlb/rafter/fsm"
)

func TestAuth(t *testing.T) {
	extra := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "extra") })
	a := newTestAPI(t, "n1", func(c *Config) {
		withTokens(c)
		c.Extra = map[string]http.Handler{"/metrics": extra, "/ui/": extra, "GET /v1/health": extra}
		c.MetricsNoAuth = true
	})
	manifest := "kind: listener\nname: web\nspec: {port: 8080}\n"
	tests := []struct {
		name         string
		method, path string
		auth         string // the raw Authorization header
		body         string
		status       int
	}{
		{"no token read", "GET", "/v1/listeners", "", "", 401},
		{"no token write", "PUT", "/v1/listeners/web", "", `{"port": 8080}`, 401},
		{"unknown token", "GET", "/v1/listeners", "Bearer nope", "", 401},
		{"token prefix", "GET", "/v1/listeners", "Bearer " + rwToken[:5], "", 401},
		{"token with suffix", "GET", "/v1/listeners", "Bearer " + rwToken + "x", "", 401},
		{"basic scheme", "GET", "/v1/listeners", "Basic " + rwToken, "", 401},
		{"empty bearer", "GET", "/v1/listeners", "Bearer ", "", 401},
		{"read-only read", "GET", "/v1/listeners", "Bearer " + roToken, "", 200},
		{"read-only status", "GET", "/v1/status", "Bearer " + roToken, "", 200},
		{"read-only write", "PUT", "/v1/listeners/web", "Bearer " + roToken, `{"port": 8080}`, 403},
		{"read-only delete", "DELETE", "/v1/listeners/web", "Bearer " + roToken, "", 403},
		{"read-only apply", "POST", "/v1/apply", "Bearer " + roToken, manifest, 403},
		{"read-only join", "POST", "/v1/nodes", "Bearer " + roToken, `{"id": "n4", "raft_addr": "127.0.0.4:7701"}`, 403},
		{"read-only dry run", "POST", "/v1/apply?dry_run", "Bearer " + roToken, manifest, 200},
		{"read-write write", "PUT", "/v1/listeners/web", "Bearer " + rwToken, `{"port": 8080}`, 200},
		{"second read-write token", "PUT", "/v1/listeners/web2", "Bearer another-rw", `{"port": 8081}`, 200},
		{"lowercase scheme", "GET", "/v1/listeners", "bearer " + rwToken, "", 200},
		{"extra needs a token", "GET", "/ui/", "", "", 401},
		{"extra read-only", "GET", "/ui/index.html", "Bearer " + roToken, "", 200},
		{"extra with method", "GET", "/v1/health", "Bearer " + roToken, "", 200},
		{"extra without token", "GET", "/v1/health", "", "", 401},
		{"metrics public", "GET", "/metrics", "", "", 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hdr := http.Header{}
			if tc.auth != "" {
				hdr.Set("Authorization", tc.auth)
			}
			r := doCtx(t, t.Context(), a.srv.URL, tc.method, tc.path, "", tc.body, hdr)
			if r.status != tc.status {
				t.Fatalf("got %d %s, want %d", r.status, r.body, tc.status)
			}
			switch tc.status {
			case 401:
				if r.errorBody(t).Code != CodeUnauthorized || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
					t.Fatalf("401 answer: %v %s", r.header, r.body)
				}
			case 403:
				if r.errorBody(t).Code != CodeForbidden {
					t.Fatalf("403 answer: %s", r.body)
				}
			}
		})
	}
	if _, ok := a.store.Config().Get(fsm.KindListener, "web"); !ok {
		t.Fatalf("the read-write PUT did not store the listener")
	}
}

func TestAuthOffWithoutTokens(t *testing.T) {
	a := newTestAPI(t, "n1", nil)
	if r := do(t, a.srv.URL, "PUT", "/v1/listeners/web", "", `{"port": 8080}`); r.status != http.StatusOK {
		t.Fatalf("write without tokens configured: %d %s", r.status, r.body)
	}
	if r := do(t, a.srv.URL, "GET", "/v1/listeners", "whatever", ""); r.status != http.StatusOK {
		t.Fatalf("read with a token while auth is off: %d %s", r.status, r.body)
	}
}

func TestAuthenticatorCheck(t *testing.T) {
	a := newAuthenticator([]string{"w1", "w2"}, []string{"r1"})
	tests := []struct {
		token     string
		ok, write bool
	}{
		{"w1", true, true},
		{"w2", true, true},
		{"r1", true, false},
		{"r", false, false},
		{"", false, false},
		{"w1w1", false, false},
	}
	for _, tc := range tests {
		ok, write := a.check(tc.token)
		if ok != tc.ok || write != tc.write {
			t.Errorf("check(%q) = %v, %v; want %v, %v", tc.token, ok, write, tc.ok, tc.write)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	st := newFakeStore("n1")
	tests := []struct {
		name  string
		mod   func(*Config)
		field string // "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"no store", func(c *Config) { c.Store = nil }, "store"},
		{"negative body limit", func(c *Config) { c.MaxBodyBytes = -1 }, "max_body_bytes"},
		{"bad scheme", func(c *Config) { c.ForwardScheme = "ftp" }, "forward_scheme"},
		{"empty rw token", func(c *Config) { c.ReadWriteTokens = []string{"a", ""} }, "read_write_tokens[1]"},
		{"empty ro token", func(c *Config) { c.ReadOnlyTokens = []string{""} }, "read_only_tokens[0]"},
		{"token in both lists", func(c *Config) { c.ReadWriteTokens, c.ReadOnlyTokens = []string{"x"}, []string{"x"} }, "read_only_tokens[0]"},
		{"nil extra", func(c *Config) { c.Extra = map[string]http.Handler{"/x": nil} }, "extra"},
		{"extra not a path", func(c *Config) { c.Extra = map[string]http.Handler{"metrics": http.NotFoundHandler()} }, "extra"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			c.Store = st
			tc.mod(&c)
			err := c.Validate()
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.field != "" && (err == nil || !strings.Contains(err.Error(), tc.field)):
				t.Fatalf("Validate = %v, want an error naming %s", err, tc.field)
			}
			if _, nerr := New(c); (nerr == nil) != (err == nil) {
				t.Fatalf("New = %v, Validate = %v", nerr, err)
			}
		})
	}

	// A pattern the mux refuses (it clashes with an API route) is an
	// error from New, not a panic.
	c := DefaultConfig()
	c.Store = st
	c.Extra = map[string]http.Handler{"GET /v1/status": http.NotFoundHandler()}
	if _, err := New(c); err == nil || !strings.Contains(err.Error(), "extra") {
		t.Fatalf("New with a clashing extra pattern = %v", err)
	}
}
