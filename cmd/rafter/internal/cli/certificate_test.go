package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rafterlb/rafter/internal/testutil"
)

func TestGetCertificatesTable(t *testing.T) {
	f := newFakeAPI(t, map[string]answer{
		"GET /v1/certificates": {200, `{"index":9,"items":[
			{"kind":"certificate","name":"auto","spec":{"acme":{"domains":["a.example.com"],"issuer":"le"}},"modify_index":8,
			 "certificate":{"source":"acme","domains":["a.example.com"]}},
			{"kind":"certificate","name":"web","spec":{"cert":"-----BEGIN CERTIFICATE-----"},"modify_index":7,
			 "certificate":{"source":"inline","domains":["app.example.com","*.app.example.com"],"not_after":"2030-01-02T03:04:05Z","listeners":["tls"]}},
			{"kind":"certificate","name":"old","spec":{"cert":"x"},"modify_index":5,
			 "certificate":{"source":"inline","domains":["old.example.com"],"not_after":"2001-01-01T00:00:00Z"}}]}`},
	})
	out, err := runCLI(t, f.srv.URL, "", "get", "certificates")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(lines[0], "NOT AFTER") {
		t.Fatalf("table:\n%s", out)
	}
	for i, want := range [][]string{
		{"auto", "acme (pending)", "a.example.com", "-"},
		{"web", "inline", "app.example.com,*.app.example.com", "2030-01-02T03:04:05Z", "tls", "7"},
		{"old", "inline", "(expired)"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i+1], w) {
				t.Errorf("row %d %q lacks %q", i+1, lines[i+1], w)
			}
		}
	}
}

func TestCertificateSet(t *testing.T) {
	f := newFakeAPI(t, map[string]answer{"PUT /v1/certificates/web": {200, `{"index":12}`}})
	dir := t.TempDir()
	cert, key := testutil.Cert(t, testutil.CertOptions{Names: []string{"app.example.com"}})
	cf, kf := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(cf, []byte(cert), 0o600)
	os.WriteFile(kf, []byte(key), 0o600)
	out, err := runCLI(t, f.srv.URL, "", "certificate", "set", "web", "--cert", cf, "--key", kf)
	if err != nil || !strings.Contains(out, "index 12") {
		t.Fatalf("%q %v", out, err)
	}
	reqs := f.requests()
	if len(reqs) != 1 || !strings.HasPrefix(reqs[0], "PUT /v1/certificates/web? ") {
		t.Fatalf("requests %v", reqs)
	}
	var spec map[string]string
	if err := json.Unmarshal([]byte(strings.SplitN(reqs[0], " ", 3)[2]), &spec); err != nil {
		t.Fatal(err)
	}
	if spec["cert"] != cert || spec["key"] != key || len(spec) != 2 {
		t.Fatalf("sent spec %v", spec)
	}
	if _, err := runCLI(t, f.srv.URL, "", "certificate", "set", "web", "--cert", cf, "--key", filepath.Join(dir, "none")); err == nil {
		t.Fatal("a missing key file was accepted")
	}
	if _, err := runCLI(t, f.srv.URL, "", "certificate", "set", "web", "--cert", cf); err == nil {
		t.Fatal("no --key was accepted")
	}
}
