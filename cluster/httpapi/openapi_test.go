package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/fsm"
)

type openAPIDocument struct {
	OpenAPI string                                `json:"openapi"`
	Paths   map[string]map[string]json.RawMessage `json:"paths"`
}

// Every route the mux serves is in openapi.json, and every operation in
// openapi.json is served.
func TestOpenAPICoversRoutes(t *testing.T) {
	a := newTestAPI(t, "n1", nil)
	r := do(t, a.srv.URL, "GET", "/v1/openapi.json", "", "")
	if r.status != 200 {
		t.Fatalf("GET /v1/openapi.json: %d", r.status)
	}
	var doc openAPIDocument
	r.decode(t, &doc)
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}

	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			switch method {
			case "get", "put", "post", "delete", "patch", "head", "options":
				documented[strings.ToUpper(method)+" "+path] = true
			}
		}
	}
	served := map[string]bool{}
	for _, rt := range a.api.routes {
		served[rt.method+" "+rt.path] = true
		// The route must really be what the mux dispatches to.
		probe, _ := http.NewRequest(rt.method, strings.ReplaceAll(strings.ReplaceAll(rt.path, "{name}", "x"), "{id}", "x"), nil)
		if _, pattern := a.api.mux.Handler(probe); pattern != rt.method+" "+rt.path {
			t.Errorf("%s %s is dispatched to %q", rt.method, rt.path, pattern)
		}
	}
	var missing, extra []string
	for k := range served {
		if !documented[k] {
			missing = append(missing, k)
		}
	}
	for k := range documented {
		if !served[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("served but not in openapi.json: %v", missing)
	}
	if len(extra) > 0 {
		t.Errorf("in openapi.json but not served: %v", extra)
	}
	if len(served) == 0 {
		t.Fatal("no routes registered")
	}
}

// Every $ref in openapi.json resolves.
func TestOpenAPIRefsResolve(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatal(err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, val := range x {
				if ref, ok := val.(string); ok && k == "$ref" {
					var cur any = doc
					for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
						m, ok := cur.(map[string]any)
						if !ok {
							cur = nil
							break
						}
						cur = m[part]
					}
					if cur == nil {
						t.Errorf("unresolved $ref %s", ref)
					}
					continue
				}
				walk(val)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(doc)
}

func TestErrorStatus(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status int
		code   string
		field  string
		retry  bool
	}{
		{"field error", fmt.Errorf("put: %w", &fsm.FieldError{Field: "spec.port", Message: "out of range", Err: fsm.ErrInvalid}), 400, CodeInvalid, "spec.port", false},
		{"field error without sentinel", &fsm.FieldError{Field: "kind", Message: "unknown"}, 400, CodeInvalid, "kind", false},
		{"invalid", fmt.Errorf("x: %w", fsm.ErrInvalid), 400, CodeInvalid, "", false},
		{"corrupt snapshot", fmt.Errorf("request body: %w: checksum mismatch", fsm.ErrCorruptSnapshot), 400, CodeInvalid, "", false},
		{"snapshot version", fmt.Errorf("%w: snapshot format 9", fsm.ErrUnsupportedVersion), 400, CodeInvalid, "", false},
		{"not found", fmt.Errorf("x: %w", fsm.ErrNotFound), 404, CodeNotFound, "", false},
		{"field not found", &fsm.FieldError{Field: "spec.listener", Message: "no such listener", Err: fsm.ErrNotFound}, 404, CodeNotFound, "spec.listener", false},
		{"conflict", fmt.Errorf("x: %w", fsm.ErrConflict), 409, CodeConflict, "", false},
		{"field conflict", &fsm.FieldError{Field: "cas", Message: "stale", Err: fsm.ErrConflict}, 409, CodeConflict, "cas", false},
		{"no leader", fmt.Errorf("x: %w", cluster.ErrNoLeader), 503, CodeNoLeader, "", true},
		{"not leader", cluster.ErrNotLeader, 503, CodeNoLeader, "", true},
		{"leader unreachable", errLeaderUnreachable, 503, CodeNoLeader, "", true},
		{"shutdown", cluster.ErrShutdown, 503, CodeUnavailable, "", true},
		{"timeout", fmt.Errorf("x: %w", cluster.ErrTimeout), 504, CodeTimeout, "", false},
		{"deadline", context.DeadlineExceeded, 504, CodeTimeout, "", false},
		{"too large", fmt.Errorf("body: %w", &http.MaxBytesError{Limit: 1}), 413, CodeTooLarge, "", false},
		{"unauthorized", errUnauthorized, 401, CodeUnauthorized, "", false},
		{"forbidden", errForbidden, 403, CodeForbidden, "", false},
		{"no route", errNoRoute, 404, CodeNotFound, "", false},
		{"method", errMethodNotAllowed, 405, CodeMethodNotAllowed, "", false},
		{"no secrets key", &fsm.FieldError{Field: "spec.key", Message: errNoSecretsKey.Error(), Err: errNoSecretsKey}, 412, CodeNoSecretsKey, "spec.key", false},
		{"other", errors.New("disk on fire"), 500, CodeInternal, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, d, retry := errorStatus(tc.err)
			if status != tc.status || d.Code != tc.code || d.Field != tc.field || retry != tc.retry || d.Message == "" {
				t.Fatalf("errorStatus = %d %+v %v; want %d %s field %q retry %v", status, d, retry, tc.status, tc.code, tc.field, tc.retry)
			}
		})
	}
}
