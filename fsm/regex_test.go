package fsm

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestRegexBounds(t *testing.T) {
	tests := []struct {
		name, re string
		want     string // substring of the message; "" = accepted
	}{
		{"typical", `/api/v[0-9]+/users/[a-z0-9-]{1,64}/orders/[0-9]+`, ""},
		{"static", `(?i)/static/.*\.(css|js|png|jpg|gif|svg|woff2?)`, ""},
		{"repeat at bound", `/\pL{1,100}`, ""},
		{"length at bound", strings.Repeat("[a-z]+", 170) + "/abc", ""},
		{"length over", "/" + strings.Repeat("a", 1024), "1025 bytes long, at most 1024"},
		{"repeat over", `/a{101}`, "repeat count 101, at most 100"},
		{"open repeat over", `/a{101,}`, "repeat count 101, at most 100"},
		{"go repeat limit", `/\pL{1,1000}`, "repeat count 1000, at most 100"},
		{"program", strings.Repeat(`\pL{1,100}`, 6), "at most 1000"},
		{"nested", `/((a{1,30}){1,30})`, "at most 1000"},
		{"syntax", `/(a`, "missing closing )"},
		{"lookahead", `/(?=a)`, "invalid or unsupported Perl syntax"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := regexProblem(tt.re)
			if tt.want == "" && got != "" {
				t.Fatalf("refused: %s", got)
			}
			if !strings.Contains(got, tt.want) {
				t.Fatalf("message %q does not contain %q", got, tt.want)
			}
		})
	}
}

// TestRegexProgramMessage: the message says how large the program is.
func TestRegexProgramMessage(t *testing.T) {
	// Within the estimate's reach, so the exact size is reported.
	got := regexProblem(strings.Repeat(`[a-z]{1,100}`, 6))
	if !strings.HasPrefix(got, "compiled program has ") || !strings.HasSuffix(got, " instructions, at most 1000") {
		t.Fatalf("message %q", got)
	}
}

// TestEveryRegexIsBounded: path, header and query regexes all get the
// cost bound, and the API's error names the field.
func TestEveryRegexIsBounded(t *testing.T) {
	costly := strings.Repeat(`\pL{1,100}`, 6)
	q, _ := json.Marshal(costly)
	base := boundsBase(t)
	for _, tt := range []struct{ match, field string }{
		{`{"path":{"regex":` + string(q) + `}}`, "spec.match.path.regex"},
		{`{"headers":[{"name":"x-a","regex":` + string(q) + `}]}`, "spec.match.headers[0].regex"},
		{`{"query":[{"name":"a","regex":` + string(q) + `}]}`, "spec.match.query[0].regex"},
	} {
		spec := `{"listener":"web","match":` + tt.match + `,"action":{"respond":{"status":200}}}`
		_, err := Next(base, base.Index+1, PutCommand(obj(KindRoute, "r", spec), nil))
		wantFieldError(t, err, tt.field, ErrInvalid)
		if !strings.Contains(err.Error(), "instructions, at most 1000") {
			t.Fatalf("message %q does not say why", err)
		}
	}
}

// TestPathologicalRegexIsCheap: the pattern that once took every node
// from 22 MB to 587 MB is refused quickly and without compiling it, and
// so are the costliest patterns that fit in the length bound.
func TestPathologicalRegexIsCheap(t *testing.T) {
	patterns := map[string]string{
		"4096 bytes of \\pL{1,1000}": strings.Repeat(`\pL{1,1000}`, 4096/len(`\pL{1,1000}`)),
		"1024 bytes of \\pL{1,100}":  strings.Repeat(`\pL{1,100}`, 1024/len(`\pL{1,100}`)),
		"nested within Go's limits":  `(?:` + strings.Repeat(`\pL{1,100}`, 90) + `){1,10}`,
		"nested repeats":             strings.Repeat(`(?:(?:\pL{1,10}){1,10}){1,10}`, 30),
	}
	for name, re := range patterns {
		t.Run(name, func(t *testing.T) {
			if len(re) > 4096 {
				t.Fatalf("pattern is %d bytes", len(re))
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			msg := regexProblem(re)
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			if msg == "" {
				t.Fatal("accepted")
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%s: refused in %v, %d bytes allocated: %s", name, took, alloc, msg)
			// Generous for -race on a loaded machine; compiling these takes
			// hundreds of megabytes and seconds.
			if alloc > 4<<20 {
				t.Errorf("validation allocated %d bytes", alloc)
			}
			if took > 2*time.Second {
				t.Errorf("validation took %v", took)
			}
		})
	}
}
