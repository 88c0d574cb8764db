package ui

import (
	"io"
	"io/fs"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// The page and every file it references are served from the binary, with
// a Content-Security-Policy that keeps the page on its own origin.
func TestServesThePageAndItsFiles(t *testing.T) {
	h := Handler()
	get := func(path string) (int, string, string, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		b, _ := io.ReadAll(rec.Body)
		return rec.Code, rec.Header().Get("Content-Type"), rec.Header().Get("Content-Security-Policy"), string(b)
	}
	code, ctype, csp, index := get("/")
	if code != 200 || !strings.HasPrefix(ctype, "text/html") || !strings.Contains(csp, "default-src 'self'") {
		t.Fatalf("GET /: %d %q %q", code, ctype, csp)
	}
	refs := regexp.MustCompile(`(?:src|href)="([^"#:]+)"`).FindAllStringSubmatch(index, -1)
	imports := regexp.MustCompile(`from "\./([^"]+)"`)
	seen := map[string]bool{}
	for len(refs) > 0 {
		ref := refs[0][1]
		refs = refs[1:]
		if seen[ref] {
			continue
		}
		seen[ref] = true
		code, ctype, _, body := get("/" + ref)
		if code != 200 {
			t.Errorf("GET /%s: %d", ref, code)
			continue
		}
		if strings.HasSuffix(ref, ".js") {
			if !strings.Contains(ctype, "javascript") {
				t.Errorf("%s served as %q; modules need a JavaScript type", ref, ctype)
			}
			for _, m := range imports.FindAllStringSubmatch(body, -1) {
				refs = append(refs, []string{"", m[1]})
			}
		}
	}
	for _, want := range []string{"app.js", "style.css", "dom.js", "stream.js"} {
		if !seen[want] {
			t.Errorf("%s is not reached from index.html", want)
		}
	}
}

// Nothing in the page loads from elsewhere: no URL with a scheme and a
// host appears in the files.
func TestNoExternalReferences(t *testing.T) {
	external := regexp.MustCompile(`(?i)(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	err := fs.WalkDir(files, "static", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(path)
		if err != nil {
			return err
		}
		if m := external.Find(b); m != nil {
			t.Errorf("%s refers to %q", path, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
