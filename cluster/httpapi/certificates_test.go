package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/internal/testutil"
	"github.com/rafterlb/rafter/secrets"
)

func certBody(t *testing.T, cert, key string) string {
	t.Helper()
	b, err := json.Marshal(map[string]string{"cert": cert, "key": key})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// keyBase64 is the base64 body of a PEM key, as it would appear if the
// key leaked in text form.
func keyBase64(t *testing.T, keyPEM string) []string {
	t.Helper()
	b, _ := pem.Decode([]byte(keyPEM))
	if b == nil {
		t.Fatal("test key is not PEM")
	}
	enc := base64.StdEncoding.EncodeToString(b.Bytes)
	// The PEM lines, and a stretch of the DER in base64 as one line.
	lines := strings.Split(strings.TrimSpace(keyPEM), "\n")
	return append(lines[1:len(lines)-1], enc[:40], string(b.Bytes[len(b.Bytes)-32:]))
}

func mustKeyFile(t *testing.T) []byte {
	t.Helper()
	text, err := secrets.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return text
}

func TestCertificateWrites(t *testing.T) {
	oldText := mustKeyFile(t)
	kr, err := secrets.Parse(oldText)
	if err != nil {
		t.Fatal(err)
	}
	a := newTestAPI(t, "n1", func(c *Config) { c.Secrets = kr })
	cert, key := testutil.Cert(t, testutil.CertOptions{Names: []string{"app.example.com", "*.app.example.com"}})
	_, otherKey := testutil.Cert(t, testutil.CertOptions{Names: []string{"x.example.com"}})
	now := time.Now()
	expired, expiredKey := testutil.Cert(t, testutil.CertOptions{Names: []string{"old.example.com"}, NotBefore: now.Add(-72 * time.Hour), NotAfter: now.Add(-time.Hour)})

	r := do(t, a.srv.URL, "PUT", "/v1/certificates/app", "", certBody(t, cert, key))
	if r.status != 200 {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	stored := a.store.Config().Certificates["app"]
	if stored == nil || stored.Spec.Key != "" || !strings.HasPrefix(stored.Spec.EncryptedKey, "rs1:"+kr.ID()+":") {
		t.Fatalf("stored certificate: %+v", stored)
	}
	if pt, err := kr.Open(stored.Spec.EncryptedKey, secrets.CertificateKeyAAD("app")); err != nil || string(pt) != key {
		t.Fatalf("sealed key does not open to the key: %v", err)
	}
	idx := stored.ModifyIndex
	// The same pair again changes nothing (the sealed key is reused).
	r = do(t, a.srv.URL, "PUT", "/v1/certificates/app", "", certBody(t, cert, key))
	if r.status != 200 || a.store.Config().Certificates["app"].ModifyIndex != idx {
		t.Fatalf("re-PUT of the same pair: %d %s, modify_index %d -> %d", r.status, r.body, idx, a.store.Config().Certificates["app"].ModifyIndex)
	}

	// After a secrets key rotation (a new sealing key, the old one kept to
	// open), the same pair is sealed again with the new key.
	rotated, err := secrets.Parse(append(mustKeyFile(t), oldText...))
	if err != nil {
		t.Fatal(err)
	}
	b := newTestAPI(t, "n1", func(c *Config) { c.Secrets = rotated })
	b.store.mu.Lock()
	b.store.cfg = a.store.Config()
	b.store.mu.Unlock()
	r = do(t, b.srv.URL, "PUT", "/v1/certificates/app", "", certBody(t, cert, key))
	if got := b.store.Config().Certificates["app"].Spec.EncryptedKey; r.status != 200 || !strings.HasPrefix(got, "rs1:"+rotated.ID()+":") {
		t.Fatalf("re-PUT after a key rotation: %d %s, sealed %q", r.status, r.body, got)
	}

	var item api.Item
	r = do(t, a.srv.URL, "GET", "/v1/certificates/app", "", "")
	r.decode(t, &item)
	if item.Certificate == nil || item.Certificate.Source != "inline" || strings.Join(item.Certificate.Domains, ",") != "app.example.com,*.app.example.com" || item.Certificate.NotAfter.IsZero() {
		t.Fatalf("certificate view: %+v", item.Certificate)
	}
	for _, leak := range append(keyBase64(t, key), stored.Spec.EncryptedKey, "encrypted_key") {
		if strings.Contains(string(r.body), leak) {
			t.Fatalf("GET shows key material %q:\n%s", leak, r.body)
		}
	}

	for _, tt := range []struct {
		name, body, field string
		status            int
	}{
		{"mismatched", certBody(t, cert, otherKey), "spec.key", 400},
		{"malformed key", certBody(t, cert, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "spec.key", 400},
		{"malformed cert", certBody(t, "not a cert", key), "spec.cert", 400},
		{"expired", certBody(t, expired, expiredKey), "spec.cert", 400},
		{"key without cert", `{"key":"x"}`, "spec.cert", 400},
		{"sealed by the client", `{"cert":` + jsonQuote(cert) + `,"encrypted_key":"rs1:0123456789abcdef:AAAA"}`, "spec.encrypted_key", 400},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, a.srv.URL, "PUT", "/v1/certificates/app", "", tt.body)
			var eb api.ErrorBody
			r.decode(t, &eb)
			if r.status != tt.status || eb.Error.Field != tt.field {
				t.Fatalf("%d %+v, want %d naming %s", r.status, eb.Error, tt.status, tt.field)
			}
			if a.store.Config().Certificates["app"].ModifyIndex != idx {
				t.Fatal("a refused write changed the stored certificate")
			}
		})
	}

	// A listener names it; deleting it is then refused naming the listener.
	r = do(t, a.srv.URL, "PUT", "/v1/listeners/tls", "", `{"port":8443,"protocol":"https","tls":{"certificates":["app"]}}`)
	if r.status != 200 {
		t.Fatalf("PUT listener: %d %s", r.status, r.body)
	}
	r = do(t, a.srv.URL, "DELETE", "/v1/certificates/app", "", "")
	if r.status != 409 || !strings.Contains(string(r.body), `listener \"tls\"`) {
		t.Fatalf("DELETE of a used certificate: %d %s", r.status, r.body)
	}
	r = do(t, a.srv.URL, "PUT", "/v1/listeners/tls2", "", `{"port":8444,"protocol":"https","tls":{"certificates":["nope"]}}`)
	var eb api.ErrorBody
	r.decode(t, &eb)
	if r.status != 400 || eb.Error.Field != "spec.tls.certificates[0]" {
		t.Fatalf("listener naming a missing certificate: %d %+v", r.status, eb.Error)
	}

	// Exported and applied back: nothing changes, and the export holds no key.
	r = do(t, a.srv.URL, "GET", "/v1/config?format=yaml", "", "")
	export := string(r.body)
	for _, leak := range append(keyBase64(t, key), stored.Spec.EncryptedKey) {
		if strings.Contains(export, leak) {
			t.Fatalf("export shows key material %q", leak)
		}
	}
	r = do(t, a.srv.URL, "POST", "/v1/apply", "", export)
	if r.status != 200 || a.store.Config().Certificates["app"].ModifyIndex != idx {
		t.Fatalf("re-applying the export: %d %s", r.status, r.body)
	}
	var res api.ApplyResult
	r.decode(t, &res)
	if len(res.Changes) != 0 {
		t.Fatalf("re-applying the export changed %+v", res.Changes)
	}
	// A manifest with a key is sealed too, at the field of its document.
	r = do(t, a.srv.URL, "POST", "/v1/apply", "", "kind: certificate\nname: other\nspec:\n  cert: "+jsonQuote(cert)+"\n  key: "+jsonQuote(otherKey)+"\n")
	r.decode(t, &eb)
	if r.status != 400 || eb.Error.Field != "documents[0].spec.key" {
		t.Fatalf("manifest with a mismatched key: %d %+v", r.status, eb.Error)
	}
}

func jsonQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestCertificateWithoutSecretsKey: a node without a secrets key refuses
// a certificate with a key (412 naming the flag) and stores nothing; ACME
// certificates, which carry no key, are fine.
func TestCertificateWithoutSecretsKey(t *testing.T) {
	a := newTestAPI(t, "n1", nil)
	cert, key := testutil.Cert(t, testutil.CertOptions{Names: []string{"app.example.com"}})
	r := do(t, a.srv.URL, "PUT", "/v1/certificates/app", "", certBody(t, cert, key))
	var eb api.ErrorBody
	r.decode(t, &eb)
	if r.status != 412 || eb.Error.Code != CodeNoSecretsKey || eb.Error.Field != "spec.key" || !strings.Contains(eb.Error.Message, "--secrets-key-file") {
		t.Fatalf("%d %+v", r.status, eb.Error)
	}
	if len(a.store.Config().Certificates) != 0 {
		t.Fatal("a refused certificate was stored")
	}
	r = do(t, a.srv.URL, "PUT", "/v1/certificates/auto", "", `{"acme":{"domains":["app.example.com"],"issuer":"le"}}`)
	if r.status != 200 {
		t.Fatalf("acme certificate: %d %s", r.status, r.body)
	}
	var item api.Item
	do(t, a.srv.URL, "GET", "/v1/certificates/auto", "", "").decode(t, &item)
	if item.Certificate == nil || item.Certificate.Source != "acme" || item.Certificate.Issued || item.Certificate.Domains[0] != "app.example.com" {
		t.Fatalf("acme view %+v", item.Certificate)
	}
}

// TestOpenAPICertificates: the certificate endpoints document 412 and the
// schema lists every field of the certificate view.
func TestOpenAPICertificates(t *testing.T) {
	var doc struct {
		Paths      map[string]map[string]map[string]any `json:"paths"`
		Components struct {
			Schemas map[string]struct {
				Properties map[string]any `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatal(err)
	}
	for _, op := range []struct{ path, method string }{{"/v1/certificates/{name}", "put"}, {"/v1/acme_issuers/{name}", "put"}, {"/v1/apply", "post"}} {
		resp, _ := doc.Paths[op.path][op.method]["responses"].(map[string]any)
		if _, ok := resp["412"]; !ok {
			t.Errorf("%s %s does not document 412 (no secrets key)", op.method, op.path)
		}
	}
	b, err := json.Marshal(api.CertificateView{Source: "acme", Domains: []string{"a"}, NotBefore: time.Unix(1, 0), NotAfter: time.Unix(1, 0),
		Subject: "s", Issuer: "i", Issued: true, IssuedAt: time.Unix(1, 0), Stale: true, Error: "e", ErrorAt: time.Unix(1, 0), Listeners: []string{"l"}})
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	schema := doc.Components.Schemas["CertificateView"].Properties
	for f := range fields {
		if _, ok := schema[f]; !ok {
			t.Errorf("CertificateView field %q is not in openapi.json", f)
		}
	}
	if _, ok := doc.Components.Schemas["Item"].Properties["certificate"]; !ok {
		t.Error("Item.certificate is not in openapi.json")
	}
}
