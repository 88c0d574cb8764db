package httpapi

import (
	"strings"
	"testing"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/secrets"
)

func issuerBody(kid, hmacKey string) string {
	return `{"directory":"https://ca.example.com/dir","eab":{"kid":` + jsonQuote(kid) + `,"hmac_key":` + jsonQuote(hmacKey) + `}}`
}

// TestACMEIssuerEABKeySealed: the node that takes an issuer seals its EAB
// HMAC key before proposing it, whether PUT or applied; the same key again
// changes nothing, reads and exports show neither the key nor its sealed
// form, and a client cannot send a sealed value itself.
func TestACMEIssuerEABKeySealed(t *testing.T) {
	kr, err := secrets.Parse(mustKeyFile(t))
	if err != nil {
		t.Fatal(err)
	}
	a := newTestAPI(t, "n1", func(c *Config) { c.Secrets = kr })
	const hmacKey = "c2VjcmV0LWhtYWMta2V5LWZvci10aGUtdGVzdA"
	r := do(t, a.srv.URL, "PUT", "/v1/acme_issuers/ca", "", issuerBody("k1", hmacKey))
	if r.status != 200 {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	stored := a.store.Config().ACMEIssuers["ca"]
	if stored == nil || stored.Spec.EAB == nil || stored.Spec.EAB.HMACKey != "" || !strings.HasPrefix(stored.Spec.EAB.EncryptedHMACKey, "rs1:"+kr.ID()+":") {
		t.Fatalf("stored issuer: %+v", stored)
	}
	sealed := stored.Spec.EAB.EncryptedHMACKey
	if pt, err := kr.Open(sealed, secrets.ACMEEABKeyAAD("ca")); err != nil || string(pt) != hmacKey {
		t.Fatalf("sealed key does not open to the key: %v", err)
	}
	idx := stored.ModifyIndex
	unchanged := func(what string, r result) {
		t.Helper()
		got := a.store.Config().ACMEIssuers["ca"]
		if r.status != 200 || got.ModifyIndex != idx || got.Spec.EAB.EncryptedHMACKey != sealed {
			t.Fatalf("%s: %d %s, modify_index %d -> %d", what, r.status, r.body, idx, got.ModifyIndex)
		}
	}
	unchanged("re-PUT of the same key", do(t, a.srv.URL, "PUT", "/v1/acme_issuers/ca", "", issuerBody("k1", hmacKey)))
	unchanged("applying the same key", do(t, a.srv.URL, "POST", "/v1/apply", "", `{"kind":"acme_issuer","name":"ca","spec":`+issuerBody("k1", hmacKey)+`}`))

	for _, path := range []string{"/v1/acme_issuers/ca", "/v1/acme_issuers", "/v1/config?format=yaml", "/v1/config", "/v1/snapshot"} {
		r := do(t, a.srv.URL, "GET", path, "", "")
		if r.status != 200 {
			t.Fatalf("GET %s: %d %s", path, r.status, r.body)
		}
		for _, leak := range []string{hmacKey, sealed, "encrypted_hmac_key"} {
			if strings.Contains(string(r.body), leak) {
				t.Fatalf("GET %s shows %q:\n%s", path, leak, r.body)
			}
		}
	}
	// The redacted export applied back keeps the stored key.
	export := do(t, a.srv.URL, "GET", "/v1/config?format=yaml", "", "")
	r = do(t, a.srv.URL, "POST", "/v1/apply", "", string(export.body))
	unchanged("re-applying the export", r)
	var res api.ApplyResult
	r.decode(t, &res)
	if len(res.Changes) != 0 {
		t.Fatalf("re-applying the export changed %+v", res.Changes)
	}

	// A new key through a manifest is sealed again; the answer's changes
	// show no key either.
	r = do(t, a.srv.URL, "POST", "/v1/apply", "", "kind: acme_issuer\nname: ca\nspec:\n  directory: https://ca.example.com/dir\n  eab: {kid: k1, hmac_key: bmV3LWtleQ}\n")
	got := a.store.Config().ACMEIssuers["ca"]
	if r.status != 200 || got.ModifyIndex == idx || got.Spec.EAB.EncryptedHMACKey == sealed || got.Spec.EAB.HMACKey != "" {
		t.Fatalf("applying a new key: %d %s, %+v", r.status, r.body, got.Spec.EAB)
	}
	if pt, err := kr.Open(got.Spec.EAB.EncryptedHMACKey, secrets.ACMEEABKeyAAD("ca")); err != nil || string(pt) != "bmV3LWtleQ" {
		t.Fatalf("the new sealed key does not open to the new key: %v", err)
	}
	if strings.Contains(string(r.body), "bmV3LWtleQ") || strings.Contains(string(r.body), got.Spec.EAB.EncryptedHMACKey) {
		t.Fatalf("the apply answer shows the key: %s", r.body)
	}
	idx, sealed = got.ModifyIndex, got.Spec.EAB.EncryptedHMACKey

	for _, tt := range []struct {
		name, method, path, body, field string
	}{
		{"sealed by the client", "PUT", "/v1/acme_issuers/ca",
			`{"directory":"https://ca.example.com/dir","eab":{"kid":"k1","encrypted_hmac_key":"rs1:0123456789abcdef:AAAA"}}`, "spec.eab.encrypted_hmac_key"},
		{"sealed by the client, applied", "POST", "/v1/apply",
			`{"kind":"acme_issuer","name":"ca","spec":{"directory":"https://ca.example.com/dir","eab":{"kid":"k1","encrypted_hmac_key":"rs1:0123456789abcdef:AAAA"}}}`, "documents[0].spec.eab.encrypted_hmac_key"},
		{"key too long", "PUT", "/v1/acme_issuers/ca", issuerBody("k1", strings.Repeat("a", 513)), "spec.eab.hmac_key"},
		{"new kid without a key", "PUT", "/v1/acme_issuers/ca", `{"directory":"https://ca.example.com/dir","eab":{"kid":"k2"}}`, "spec.eab.hmac_key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, a.srv.URL, tt.method, tt.path, "", tt.body)
			var eb api.ErrorBody
			r.decode(t, &eb)
			if r.status != 400 || eb.Error.Field != tt.field {
				t.Fatalf("%d %+v, want 400 naming %s", r.status, eb.Error, tt.field)
			}
			if got := a.store.Config().ACMEIssuers["ca"]; got.ModifyIndex != idx || got.Spec.EAB.EncryptedHMACKey != sealed {
				t.Fatal("a refused write changed the stored issuer")
			}
		})
	}
}

// TestACMEIssuerWithoutSecretsKey: a node without a secrets key refuses an
// issuer with an EAB HMAC key (412 naming the flag) and stores nothing;
// an issuer without a binding is fine.
func TestACMEIssuerWithoutSecretsKey(t *testing.T) {
	a := newTestAPI(t, "n1", nil)
	for _, tt := range []struct{ method, path, body, field string }{
		{"PUT", "/v1/acme_issuers/ca", issuerBody("k1", "c2VjcmV0"), "spec.eab.hmac_key"},
		{"POST", "/v1/apply", `{"kind":"acme_issuer","name":"ca","spec":` + issuerBody("k1", "c2VjcmV0") + `}`, "documents[0].spec.eab.hmac_key"},
	} {
		r := do(t, a.srv.URL, tt.method, tt.path, "", tt.body)
		var eb api.ErrorBody
		r.decode(t, &eb)
		if r.status != 412 || eb.Error.Code != CodeNoSecretsKey || eb.Error.Field != tt.field || !strings.Contains(eb.Error.Message, "--secrets-key-file") {
			t.Fatalf("%s %s: %d %+v", tt.method, tt.path, r.status, eb.Error)
		}
	}
	if len(a.store.Config().ACMEIssuers) != 0 {
		t.Fatal("a refused issuer was stored")
	}
	if r := do(t, a.srv.URL, "PUT", "/v1/acme_issuers/ca", "", `{"directory":"https://ca.example.com/dir"}`); r.status != 200 {
		t.Fatalf("issuer without a binding: %d %s", r.status, r.body)
	}
}
