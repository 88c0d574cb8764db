package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rafterlb/rafter/internal/testutil"
)

// A certificate and key for a.example.com and *.a.example.com, made once.
var testCertPEM, testKeyPEM, otherKeyPEM string

// sealedCertSpec is a certificate spec as the admin API proposes it (the
// fsm cannot tell a real sealed value from this one).
var sealedCertSpec string

// fakeSealed stands for a sealed key.
const fakeSealed = "rs1:0123456789abcdef:c2VhbGVk"

// stringsBoundedElsewhere are string fields TestEveryStringIsBounded
// cannot reach through a sample Put accepts, with the test that bounds them.
var stringsBoundedElsewhere = map[string]string{
	// A spec with a plaintext key never passes Put (it must be sealed
	// first); TestCertificateValidation bounds it.
	"spec.key": "TestCertificateValidation",
	// Likewise an EAB HMAC key in the clear; TestACMEIssuerEABKeySealed
	// bounds it.
	"spec.eab.hmac_key": "TestACMEIssuerEABKeySealed",
}

func init() {
	var err error
	testCertPEM, testKeyPEM, err = testutil.MakeCert(testutil.CertOptions{Names: []string{"a.example.com", "*.a.example.com"}})
	if err != nil {
		panic(err)
	}
	if _, otherKeyPEM, err = testutil.MakeCert(testutil.CertOptions{Names: []string{"b.example.com"}}); err != nil {
		panic(err)
	}
	sealedCertSpec = certSpec(map[string]any{"cert": testCertPEM, "encrypted_key": fakeSealed})
	boundSamples["certificate"] = struct {
		kind Kind
		spec string
	}{KindCertificate, sealedCertSpec}
	boundSamples["certificate-acme"] = struct {
		kind Kind
		spec string
	}{KindCertificate, `{"acme":{"domains":["a.example.com","*.b.example.com"],"issuer":"letsencrypt"}}`}
	boundSamples["listener-certificates"] = struct {
		kind Kind
		spec string
	}{KindListener, `{"port":443,"protocol":"https","tls":{"certificates":["c1","c2"],"default":"c2",
		"policy":{"min_version":"1.2","cipher_suites":["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]},
		"hsts":{"max_age":31536000,"include_subdomains":true,"preload":true}}}`}
	boundSamples["listener-redirect"] = struct {
		kind Kind
		spec string
	}{KindListener, `{"port":80,"https_redirect":{"port":8443,"code":308}}`}
}

func certSpec(m map[string]any) string {
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestCertificateValidation(t *testing.T) {
	base := boundsBase(t)
	chain := strings.Repeat(testCertPEM, maxCertChain+1)
	manyDomains := make([]string, maxACMEDomains+1)
	for i := range manyDomains {
		manyDomains[i] = fmt.Sprintf("d%d.example.com", i)
	}
	for _, tt := range []struct {
		name  string
		spec  map[string]any
		field string
	}{
		{"empty", map[string]any{}, "spec.cert"},
		{"cert not PEM", map[string]any{"cert": "hello", "encrypted_key": fakeSealed}, "spec.cert"},
		{"cert is a key", map[string]any{"cert": testKeyPEM, "encrypted_key": fakeSealed}, "spec.cert"},
		{"cert garbage DER", map[string]any{"cert": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "encrypted_key": fakeSealed}, "spec.cert"},
		{"cert trailing data", map[string]any{"cert": testCertPEM + "junk", "encrypted_key": fakeSealed}, "spec.cert"},
		{"chain too long", map[string]any{"cert": chain, "encrypted_key": fakeSealed}, "spec.cert"},
		{"cert too big", map[string]any{"cert": strings.Repeat(" ", maxCertPEM+1), "encrypted_key": fakeSealed}, "spec.cert"},
		{"key not PEM", map[string]any{"cert": testCertPEM, "key": "nope"}, "spec.key"},
		{"key is a cert", map[string]any{"cert": testCertPEM, "key": testCertPEM}, "spec.key"},
		{"key garbage", map[string]any{"cert": testCertPEM, "key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}, "spec.key"},
		{"key two blocks", map[string]any{"cert": testCertPEM, "key": testKeyPEM + testKeyPEM}, "spec.key"},
		{"key mismatch", map[string]any{"cert": testCertPEM, "key": otherKeyPEM}, "spec.key"},
		{"key too big", map[string]any{"cert": testCertPEM, "key": strings.Repeat("a", maxKeyPEM+1)}, "spec.key"},
		{"key and sealed", map[string]any{"cert": testCertPEM, "key": testKeyPEM, "encrypted_key": fakeSealed}, "spec.key"},
		{"key unsealed", map[string]any{"cert": testCertPEM, "key": testKeyPEM}, "spec.key"},
		{"sealed not printable", map[string]any{"cert": testCertPEM, "encrypted_key": "rs1: x"}, "spec.encrypted_key"},
		{"no key for a new cert", map[string]any{"cert": testCertPEM}, "spec.key"},
		{"acme and cert", map[string]any{"cert": testCertPEM, "acme": map[string]any{"domains": []string{"a.com"}, "issuer": "le"}}, "spec.acme"},
		{"acme no domains", map[string]any{"acme": map[string]any{"issuer": "le"}}, "spec.acme.domains"},
		{"acme bad domain", map[string]any{"acme": map[string]any{"domains": []string{"a b"}, "issuer": "le"}}, "spec.acme.domains[0]"},
		{"acme inner wildcard", map[string]any{"acme": map[string]any{"domains": []string{"a.*.com"}, "issuer": "le"}}, "spec.acme.domains[0]"},
		{"acme duplicate", map[string]any{"acme": map[string]any{"domains": []string{"a.com", "A.com"}, "issuer": "le"}}, "spec.acme.domains[1]"},
		{"acme too many", map[string]any{"acme": map[string]any{"domains": manyDomains, "issuer": "le"}}, "spec.acme.domains"},
		{"acme no issuer", map[string]any{"acme": map[string]any{"domains": []string{"a.com"}}}, "spec.acme.issuer"},
		{"acme bad issuer", map[string]any{"acme": map[string]any{"domains": []string{"a.com"}, "issuer": "Le Issuer"}}, "spec.acme.issuer"},
		{"unknown field", map[string]any{"cert": testCertPEM, "chain": "x"}, "spec.chain"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Next(base, base.Index+1, PutCommand(obj(KindCertificate, "x", certSpec(tt.spec)), nil))
			wantFieldError(t, err, tt.field, ErrInvalid)
		})
	}
}

func TestCheckCertificateTime(t *testing.T) {
	now := time.Now()
	expired, _ := testutil.Cert(t, testutil.CertOptions{Names: []string{"a.com"}, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)})
	future, _ := testutil.Cert(t, testutil.CertOptions{Names: []string{"a.com"}, NotBefore: now.Add(time.Hour), NotAfter: now.Add(48 * time.Hour)})
	if err := CheckCertificateTime("spec.cert", testCertPEM, now); err != nil {
		t.Fatalf("valid certificate: %v", err)
	}
	err := CheckCertificateTime("spec.cert", expired, now)
	wantFieldError(t, err, "spec.cert", ErrInvalid)
	if !strings.Contains(err.Error(), "expired") {
		t.Fatalf("error %q does not say expired", err)
	}
	wantFieldError(t, CheckCertificateTime("spec.cert", future, now), "spec.cert", ErrInvalid)
}

func TestListenerTLSValidation(t *testing.T) {
	base := boundsBase(t)
	for _, tt := range []struct {
		name, spec, field string
		sentinel          error
	}{
		{"files and certificates", `{"port":1,"protocol":"https","tls":{"cert_file":"a","key_file":"b","certificates":["c1"]}}`, "spec.tls.certificates", ErrInvalid},
		{"nothing", `{"port":1,"protocol":"https","tls":{}}`, "spec.tls.certificates", ErrInvalid},
		{"cert file only", `{"port":1,"protocol":"https","tls":{"cert_file":"a"}}`, "spec.tls.key_file", ErrInvalid},
		{"key file only", `{"port":1,"protocol":"https","tls":{"key_file":"a"}}`, "spec.tls.cert_file", ErrInvalid},
		{"default with files", `{"port":1,"protocol":"https","tls":{"cert_file":"a","key_file":"b","default":"c1"}}`, "spec.tls.default", ErrInvalid},
		{"missing certificate", `{"port":1,"protocol":"https","tls":{"certificates":["c1","nope"]}}`, "spec.tls.certificates[1]", ErrInvalid},
		{"duplicate", `{"port":1,"protocol":"https","tls":{"certificates":["c1","c1"]}}`, "spec.tls.certificates[1]", ErrInvalid},
		{"bad name", `{"port":1,"protocol":"https","tls":{"certificates":["C 1"]}}`, "spec.tls.certificates[0]", ErrInvalid},
		{"default not listed", `{"port":1,"protocol":"https","tls":{"certificates":["c1"],"default":"c2"}}`, "spec.tls.default", ErrInvalid},
		{"old version", `{"port":1,"protocol":"https","tls":{"certificates":["c1"],"policy":{"min_version":"1.1"}}}`, "spec.tls.policy.min_version", ErrInvalid},
		{"cbc suite", `{"port":1,"protocol":"https","tls":{"certificates":["c1"],"policy":{"cipher_suites":["TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"]}}}`, "spec.tls.policy.cipher_suites[0]", ErrInvalid},
		{"duplicate suite", `{"port":1,"protocol":"https","tls":{"certificates":["c1"],"policy":{"cipher_suites":["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256","TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]}}}`, "spec.tls.policy.cipher_suites[1]", ErrInvalid},
		{"suites with 1.3", `{"port":1,"protocol":"https","tls":{"certificates":["c1"],"policy":{"min_version":"1.3","cipher_suites":["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]}}}`, "spec.tls.policy.cipher_suites", ErrInvalid},
		{"hsts too long", `{"port":1,"protocol":"https","tls":{"certificates":["c1"],"hsts":{"max_age":63072001}}}`, "spec.tls.hsts.max_age", ErrInvalid},
		{"hsts negative", `{"port":1,"protocol":"https","tls":{"certificates":["c1"],"hsts":{"max_age":-1}}}`, "spec.tls.hsts.max_age", ErrInvalid},
		{"preload short", `{"port":1,"protocol":"https","tls":{"certificates":["c1"],"hsts":{"max_age":600,"include_subdomains":true,"preload":true}}}`, "spec.tls.hsts.preload", ErrInvalid},
		{"preload no subdomains", `{"port":1,"protocol":"https","tls":{"certificates":["c1"],"hsts":{"max_age":31536000,"preload":true}}}`, "spec.tls.hsts.preload", ErrInvalid},
		{"redirect on https", `{"port":1,"protocol":"https","tls":{"certificates":["c1"]},"https_redirect":{}}`, "spec.https_redirect", ErrInvalid},
		{"redirect code", `{"port":1,"https_redirect":{"code":303}}`, "spec.https_redirect.code", ErrInvalid},
		{"redirect port", `{"port":1,"https_redirect":{"port":70000}}`, "spec.https_redirect.port", ErrInvalid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Next(base, base.Index+1, PutCommand(obj(KindListener, "x", tt.spec), nil))
			wantFieldError(t, err, tt.field, tt.sentinel)
		})
	}
	many := make([]string, maxListenerCertificates+1)
	for i := range many {
		many[i] = fmt.Sprintf("c%d", i)
	}
	spec, _ := json.Marshal(map[string]any{"port": 1, "protocol": "https", "tls": map[string]any{"certificates": many}})
	_, err := Next(base, base.Index+1, PutCommand(Object{Kind: KindListener, Name: "x", Spec: spec}, nil))
	wantFieldError(t, err, "spec.tls.certificates", ErrInvalid)
}

// TestCertificateKeySealed: a plaintext key never enters the document,
// reads never show the sealed one, and re-applying an export (which has
// no key) keeps the stored key and changes nothing.
func TestCertificateKeySealed(t *testing.T) {
	base := boundsBase(t)
	// A manifest may carry the plaintext key (the CLI parses it before
	// the admin API seals it)...
	objs, err := ParseManifest([]byte("kind: certificate\nname: web\nspec:\n  cert: " + jsonString(testCertPEM) + "\n  key: " + jsonString(testKeyPEM) + "\n"))
	if err != nil {
		t.Fatalf("ParseManifest: %v", err)
	}
	// ...but no command may.
	_, err = Next(base, base.Index+1, ApplyCommand(objs))
	wantFieldError(t, err, "documents[0].spec.key", ErrInvalid)
	if !strings.Contains(err.Error(), "--secrets-key-file") {
		t.Fatalf("error %q does not name --secrets-key-file", err)
	}

	c := mustNext(t, base, PutCommand(obj(KindCertificate, "web", sealedCertSpec), nil))
	if c.Certificates["web"].Spec.EncryptedKey != fakeSealed {
		t.Fatal("sealed key not stored")
	}
	o, ok := c.Get(KindCertificate, "web")
	if !ok {
		t.Fatal("certificate not found")
	}
	if bytes.Contains(o.Spec, []byte(fakeSealed)) || bytes.Contains(o.Spec, []byte("encrypted_key")) {
		t.Fatalf("Get shows the sealed key: %s", o.Spec)
	}
	for _, o := range c.Objects() {
		if bytes.Contains(o.Spec, []byte(fakeSealed)) {
			t.Fatalf("export shows the sealed key: %s", o.Spec)
		}
	}
	idx := c.Certificates["web"].ModifyIndex
	again := mustNext(t, c, ApplyCommand([]Object{o}))
	if got := again.Certificates["web"]; got.ModifyIndex != idx || got.Spec.EncryptedKey != fakeSealed {
		t.Fatalf("re-applying the export changed the certificate: %+v", got)
	}
	// A different chain without a key is refused: its key is unknown.
	other, _ := testutil.Cert(t, testutil.CertOptions{Names: []string{"c.example.com"}})
	_, err = Next(c, c.Index+1, PutCommand(obj(KindCertificate, "web", certSpec(map[string]any{"cert": other})), nil))
	wantFieldError(t, err, "spec.key", ErrInvalid)
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestCertificateReferences(t *testing.T) {
	base := boundsBase(t)
	c := mustNext(t, base, PutCommand(obj(KindListener, "tls", `{"port":443,"protocol":"https","tls":{"certificates":["c2","c1"]}}`), nil))
	if got := c.Listeners["tls"].Spec.TLS.DefaultCertificate(); got != "c2" {
		t.Fatalf("default certificate %q, want the first, c2", got)
	}
	_, err := Next(c, c.Index+1, DeleteCommand(KindCertificate, "c1", nil))
	wantFieldError(t, err, "name", ErrConflict)
	if !strings.Contains(err.Error(), `listener "tls"`) {
		t.Fatalf("error %q does not name the listener", err)
	}
	if _, ok := c.Certificates["c1"]; !ok {
		t.Fatal("refused delete lost the certificate")
	}
	c = mustNext(t, c, PutCommand(obj(KindListener, "tls", `{"port":443,"protocol":"https","tls":{"certificates":["c2"]}}`), nil))
	c = mustNext(t, c, DeleteCommand(KindCertificate, "c1", nil))
	if _, ok := c.Certificates["c1"]; ok {
		t.Fatal("certificate not deleted")
	}
	// One manifest may bring a certificate and the listener naming it.
	c = mustNext(t, c, ApplyCommand([]Object{
		obj(KindListener, "tls2", `{"port":444,"protocol":"https","tls":{"certificates":["c3"]}}`),
		obj(KindCertificate, "c3", sealedCertSpec),
	}))
	if c.Listeners["tls2"] == nil || c.Certificates["c3"] == nil {
		t.Fatal("manifest not applied")
	}
}

func acmeBase(t *testing.T) *Config {
	t.Helper()
	return mustNext(t, boundsBase(t), PutCommand(obj(KindCertificate, "auto", `{"acme":{"domains":["a.example.com"],"issuer":"le"}}`), nil))
}

func TestCertificateIssue(t *testing.T) {
	c := acmeBase(t)
	idx := c.Certificates["auto"].ModifyIndex
	at := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name     string
		cmd      CertificateIssue
		field    string
		sentinel error
	}{
		{"missing", CertificateIssue{Name: "nope", SpecIndex: idx, Cert: testCertPEM, EncryptedKey: fakeSealed}, "name", ErrNotFound},
		{"inline", CertificateIssue{Name: "c1", SpecIndex: c.Certificates["c1"].ModifyIndex, Cert: testCertPEM, EncryptedKey: fakeSealed}, "name", ErrInvalid},
		{"stale", CertificateIssue{Name: "auto", SpecIndex: idx - 1, Cert: testCertPEM, EncryptedKey: fakeSealed}, "spec_index", ErrConflict},
		{"bad cert", CertificateIssue{Name: "auto", SpecIndex: idx, Cert: "x", EncryptedKey: fakeSealed}, "cert", ErrInvalid},
		{"no key", CertificateIssue{Name: "auto", SpecIndex: idx, Cert: testCertPEM}, "encrypted_key", ErrInvalid},
		{"nothing", CertificateIssue{Name: "auto", SpecIndex: idx}, "cert", ErrInvalid},
		{"both", CertificateIssue{Name: "auto", SpecIndex: idx, Cert: testCertPEM, EncryptedKey: fakeSealed, Error: "x"}, "error", ErrInvalid},
		{"long error", CertificateIssue{Name: "auto", SpecIndex: idx, Error: strings.Repeat("e", maxIssueError+1)}, "error", ErrInvalid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd := tt.cmd
			_, err := Next(c, c.Index+1, NewCommand(&cmd))
			wantFieldError(t, err, tt.field, tt.sentinel)
		})
	}
	c = mustNext(t, c, NewCommand(&CertificateIssue{Name: "auto", SpecIndex: idx, Cert: testCertPEM, EncryptedKey: fakeSealed, Time: at}))
	st := c.CertificateStatus["auto"]
	info, err := ParseCertInfo(testCertPEM)
	if err != nil {
		t.Fatal(err)
	}
	if st == nil || st.Cert != testCertPEM || !st.NotAfter.Equal(info.NotAfter) || !st.IssuedAt.Equal(at) || st.SpecIndex != idx || st.ModifyIndex != c.Index {
		t.Fatalf("status after issue: %+v", st)
	}
	if st.Redacted().EncryptedKey != "" {
		t.Fatal("Redacted keeps the sealed key")
	}
	c = mustNext(t, c, NewCommand(&CertificateIssue{Name: "auto", SpecIndex: idx, Error: "rate limited", Time: at.Add(time.Hour)}))
	if st := c.CertificateStatus["auto"]; st.Cert != testCertPEM || st.Error != "rate limited" || !st.ErrorAt.Equal(at.Add(time.Hour)) {
		t.Fatalf("an error lost the material: %+v", st)
	}
	// A spec change keeps the material (it still serves) and makes it stale.
	c = mustNext(t, c, PutCommand(obj(KindCertificate, "auto", `{"acme":{"domains":["a.example.com","b.example.com"],"issuer":"le"}}`), nil))
	if st := c.CertificateStatus["auto"]; st == nil || st.SpecIndex >= c.Certificates["auto"].ModifyIndex {
		t.Fatalf("status after a spec change: %+v", st)
	}
	// Restoring the document keeps the material of an unchanged certificate.
	r := mustNext(t, c, NewCommand(&Restore{Config: c}))
	if st := r.CertificateStatus["auto"]; st == nil || st.Cert != testCertPEM {
		t.Fatalf("restore lost the issued material: %+v", st)
	}
	// So does restoring a redacted backup (GET /v1/snapshot): the keys
	// of unchanged chains come from the current document.
	red := c.Redacted()
	if red.Certificates["c1"].Spec.EncryptedKey != "" || red.CertificateStatus["auto"].EncryptedKey != "" || red.TicketKeys != nil ||
		c.Certificates["c1"].Spec.EncryptedKey == "" {
		t.Fatal("Redacted keeps a sealed value or changes the original")
	}
	r = mustNext(t, c, NewCommand(&Restore{Config: red}))
	if r.Certificates["c1"].Spec.EncryptedKey != fakeSealed || r.CertificateStatus["auto"].EncryptedKey != fakeSealed {
		t.Fatalf("restoring a redacted backup lost keys: %+v %+v", r.Certificates["c1"].Spec, r.CertificateStatus["auto"])
	}
	// Into a document without the certificate, the key is missing.
	_, err = Next(Empty(), 1, NewCommand(&Restore{Config: red}))
	wantFieldError(t, err, "certificates/c1.spec.key", ErrInvalid)
	// Turning it inline drops the status; so does deleting it.
	inl := mustNext(t, c, PutCommand(obj(KindCertificate, "auto", sealedCertSpec), nil))
	if _, ok := inl.CertificateStatus["auto"]; ok {
		t.Fatal("inline certificate kept an acme status")
	}
	del := mustNext(t, c, DeleteCommand(KindCertificate, "auto", nil))
	if _, ok := del.CertificateStatus["auto"]; ok {
		t.Fatal("deleted certificate kept its status")
	}
}

func TestTicketKeysRotate(t *testing.T) {
	c := baseConfig(t)
	at := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	_, err := Next(c, c.Index+1, NewCommand(&TicketKeysRotate{Time: at}))
	wantFieldError(t, err, "key", ErrInvalid)
	_, err = Next(c, c.Index+1, NewCommand(&TicketKeysRotate{Key: fakeSealed, Prev: 7}))
	wantFieldError(t, err, "prev", ErrConflict)
	var prev uint64
	for i := range MaxTicketKeys + 2 {
		c = mustNext(t, c, NewCommand(&TicketKeysRotate{Key: fmt.Sprintf("rs1:000000000000000%d:k", i), Prev: prev, Time: at.Add(time.Duration(i) * time.Hour)}))
		prev = c.TicketKeys.ModifyIndex
	}
	tk := c.TicketKeys
	want := []string{"rs1:0000000000000004:k", "rs1:0000000000000003:k", "rs1:0000000000000002:k"}
	if strings.Join(tk.Keys, ",") != strings.Join(want, ",") || !tk.RotatedAt.Equal(at.Add(4*time.Hour)) || tk.ModifyIndex != c.Index {
		t.Fatalf("ticket keys %+v, want %v", tk, want)
	}
	// The same decision made twice commits once.
	_, err = Next(c, c.Index+1, NewCommand(&TicketKeysRotate{Key: fakeSealed, Prev: prev - 1}))
	wantFieldError(t, err, "prev", ErrConflict)
	r := mustNext(t, c, NewCommand(&Restore{Config: Empty()}))
	if r.TicketKeys != tk {
		t.Fatal("restore dropped the ticket keys")
	}
}

// TestCertificateSnapshotAndCommands: the new state survives a snapshot
// and the new commands survive their encoding.
func TestCertificateSnapshotAndCommands(t *testing.T) {
	c := acmeBase(t)
	cmds := []*Command{
		NewCommand(&CertificateIssue{Name: "auto", SpecIndex: c.Certificates["auto"].ModifyIndex, Cert: testCertPEM, EncryptedKey: fakeSealed, Time: time.Unix(1, 0).UTC()}),
		NewCommand(&TicketKeysRotate{Key: fakeSealed, Time: time.Unix(2, 0).UTC()}),
	}
	for _, cmd := range cmds {
		b, err := EncodeCommand(cmd)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeCommand(b)
		if err != nil {
			t.Fatalf("decode %s: %v", cmd.Type, err)
		}
		c = mustNext(t, c, got)
	}
	var buf bytes.Buffer
	if err := WriteSnapshot(&buf, c); err != nil {
		t.Fatal(err)
	}
	back, err := ReadSnapshot(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if back.Certificates["c1"].Spec.EncryptedKey != fakeSealed || back.CertificateStatus["auto"].Cert != testCertPEM ||
		back.TicketKeys == nil || back.TicketKeys.Keys[0] != fakeSealed {
		t.Fatalf("snapshot lost certificate state: %+v %+v %+v", back.Certificates["c1"], back.CertificateStatus["auto"], back.TicketKeys)
	}
}
