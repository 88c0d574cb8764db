package fsm

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rafterlb/rafter/internal/testutil"
)

func init() {
	root, _, err := testutil.MakeCert(testutil.CertOptions{Names: []string{"ca.example.com"}})
	if err != nil {
		panic(err)
	}
	spec, _ := json.Marshal(map[string]any{
		"directory": "https://ca.example.com/dir", "email": "ops@example.com",
		"eab": map[string]string{"kid": "k1", "encrypted_hmac_key": fakeSealed}, "ca_roots": root,
		"challenge": "tls-alpn-01",
	})
	boundSamples["acme_issuer"] = struct {
		kind Kind
		spec string
	}{KindACMEIssuer, string(spec)}
}

func acmeIssuerBase(t *testing.T) *Config {
	t.Helper()
	return mustNext(t, Empty(), ApplyCommand([]Object{
		obj(KindACMEIssuer, "pebble", `{"directory":"https://127.0.0.1:14000/dir"}`),
		obj(KindCertificate, "web", `{"acme":{"domains":["a.example.com"],"issuer":"pebble"}}`),
	}))
}

func TestACMEIssuerValidation(t *testing.T) {
	for _, tt := range []struct {
		spec, field string
	}{
		{`{}`, "spec.directory"},
		{`{"directory":"http://ca/dir"}`, "spec.directory"},
		{`{"directory":"https://ca/dir","email":"nobody"}`, "spec.email"},
		{`{"directory":"https://ca/dir","challenge":"dns-01"}`, "spec.challenge"},
		{`{"directory":"https://ca/dir","eab":{"kid":"k"}}`, "spec.eab.hmac_key"},
		{`{"directory":"https://ca/dir","ca_roots":"not pem"}`, "spec.ca_roots"},
		{`{"directory":"https://ca/dir","colour":"red"}`, "spec.colour"},
	} {
		_, err := Next(Empty(), 1, PutCommand(obj(KindACMEIssuer, "x", tt.spec), nil))
		wantFieldError(t, err, tt.field, ErrInvalid)
	}
	c := acmeIssuerBase(t)
	if o, ok := c.Get(KindACMEIssuer, "pebble"); !ok || !strings.Contains(string(o.Spec), "14000") {
		t.Fatalf("issuer not stored: %+v", o)
	}
	if k, err := ParseKind("acme_issuers"); err != nil || k != KindACMEIssuer {
		t.Fatalf("ParseKind: %v %v", k, err)
	}
}

func order(c *Config, term uint64) *Command {
	var tok uint64
	if st := c.ACMEStatus["web"]; st != nil {
		tok = st.Token
	}
	return NewCommand(&ACMEOrder{Certificate: "web", SpecIndex: c.Certificates["web"].ModifyIndex,
		Token: tok, Term: term, Time: time.Unix(100, 0)})
}

func challenge(tok string) ACMEChallenge {
	return ACMEChallenge{Certificate: "web", Type: ChallengeHTTP01, Domain: "a.example.com", Token: tok, KeyAuth: tok + ".thumb"}
}

// TestACMEFencing: once a leader of a later term begins an order, every
// command of the earlier order is refused, so a deposed leader can
// neither serve challenges for nor store the certificate of its order.
func TestACMEFencing(t *testing.T) {
	c := acmeIssuerBase(t)
	c1 := mustNext(t, c, order(c, 2))
	st1 := c1.ACMEStatus["web"]
	if st1.State != ACMEOrdering || st1.Token != c1.Index || st1.Orders != 1 {
		t.Fatalf("status after order: %+v", st1)
	}
	c2 := mustNext(t, c1, NewCommand(&ACMEChallenges{Certificate: "web", Token: st1.Token, Term: 2,
		Add: []ACMEChallenge{challenge("tok1")}}))
	if ch := c2.ACMEChallenges["tok1"]; ch == nil || ch.KeyAuth != "tok1.thumb" {
		t.Fatalf("challenge not stored: %+v", c2.ACMEChallenges)
	}

	// An order of term 1 after one of term 2: refused.
	_, err := Next(c2, c2.Index+1, order(c2, 1))
	wantFieldError(t, err, "term", ErrConflict)

	// The leader of term 3 takes over: challenges of the old order go.
	c3 := mustNext(t, c2, order(c2, 3))
	if len(c3.ACMEChallenges) != 0 || c3.ACMEStatus["web"].Orders != 2 {
		t.Fatalf("new order kept old challenges or miscounted: %+v %+v", c3.ACMEChallenges, c3.ACMEStatus["web"])
	}
	// The deposed leader's commands carry the old token.
	_, err = Next(c3, c3.Index+1, NewCommand(&ACMEChallenges{Certificate: "web", Token: st1.Token, Term: 2,
		Add: []ACMEChallenge{challenge("tok2")}}))
	wantFieldError(t, err, "token", ErrConflict)
	_, err = Next(c3, c3.Index+1, NewCommand(&ACMEResult{Certificate: "web", Token: st1.Token, Term: 2,
		CertPEM: testCertPEM, SealedKey: fakeSealed}))
	wantFieldError(t, err, "token", ErrConflict)
	// The same token with an older term: refused as well.
	_, err = Next(c3, c3.Index+1, NewCommand(&ACMEResult{Certificate: "web", Token: c3.ACMEStatus["web"].Token, Term: 2,
		CertPEM: testCertPEM, SealedKey: fakeSealed}))
	wantFieldError(t, err, "term", ErrConflict)

	tok := c3.ACMEStatus["web"].Token
	c4 := mustNext(t, c3, NewCommand(&ACMEChallenges{Certificate: "web", Token: tok, Term: 3,
		Add: []ACMEChallenge{challenge("tok3")}}))
	c5 := mustNext(t, c4, NewCommand(&ACMEResult{Certificate: "web", Token: tok, Term: 3,
		CertPEM: testCertPEM, SealedKey: fakeSealed, RenewAt: time.Unix(3000, 0), Time: time.Unix(200, 0)}))
	st := c5.ACMEStatus["web"]
	if st.State != ACMEValid || st.NotAfter.IsZero() || st.IssuedIndex != c5.Index || len(c5.ACMEChallenges) != 0 {
		t.Fatalf("after result: %+v challenges %v", st, c5.ACMEChallenges)
	}
	if cs := c5.CertificateStatus["web"]; cs == nil || cs.EncryptedKey != fakeSealed || cs.Cert != testCertPEM ||
		!cs.NotAfter.Equal(st.NotAfter) || cs.SpecIndex != c5.Certificates["web"].ModifyIndex {
		t.Fatalf("certificate status: %+v", cs)
	}
	// A result after the order ended: refused.
	_, err = Next(c5, c5.Index+1, NewCommand(&ACMEResult{Certificate: "web", Token: tok, Term: 3, Error: "late"}))
	wantFieldError(t, err, "token", ErrConflict)

	// A failure keeps the issued certificate and records the back-off.
	c6 := mustNext(t, c5, order(c5, 3))
	next := time.Unix(5000, 0)
	c7 := mustNext(t, c6, NewCommand(&ACMEResult{Certificate: "web", Token: c6.ACMEStatus["web"].Token, Term: 3,
		Error: "rate limited", NextAttempt: next}))
	st = c7.ACMEStatus["web"]
	if st.State != ACMEFailed || st.LastError != "rate limited" || !st.NextAttempt.Equal(next) || st.Failures != 1 {
		t.Fatalf("after failure: %+v", st)
	}
	if cs := c7.CertificateStatus["web"]; cs.Cert != testCertPEM || cs.Error != "rate limited" {
		t.Fatalf("a failed renewal changed the issued certificate or hid the error: %+v", cs)
	}

	// A spec changed mid-order: the result is refused, the next order
	// names the new spec.
	c8 := mustNext(t, c7, order(c7, 3))
	c9 := mustNext(t, c8, PutCommand(obj(KindCertificate, "web", `{"acme":{"domains":["b.example.com"],"issuer":"pebble"}}`), nil))
	_, err = Next(c9, c9.Index+1, NewCommand(&ACMEResult{Certificate: "web", Token: c8.ACMEStatus["web"].Token, Term: 3,
		CertPEM: testCertPEM, SealedKey: fakeSealed}))
	wantFieldError(t, err, "spec_index", ErrConflict)
	c10 := mustNext(t, c9, order(c9, 3))
	if d := c10.ACMEStatus["web"].Domains; len(d) != 1 || d[0] != "b.example.com" {
		t.Fatalf("order for the new spec has domains %v", d)
	}
	// Deleting the certificate forgets its order and challenges.
	c11 := mustNext(t, c10, NewCommand(&ACMEChallenges{Certificate: "web", Token: c10.ACMEStatus["web"].Token, Term: 3,
		Add: []ACMEChallenge{{Certificate: "web", Type: ChallengeHTTP01, Domain: "b.example.com", Token: "tok9", KeyAuth: "tok9.x"}}}))
	c12 := mustNext(t, c11, DeleteCommand(KindCertificate, "web", nil))
	if len(c12.ACMEStatus) != 0 || len(c12.ACMEChallenges) != 0 {
		t.Fatalf("deleted certificate kept ACME state: %+v %+v", c12.ACMEStatus, c12.ACMEChallenges)
	}
}

func TestACMEChallengeValidation(t *testing.T) {
	c := acmeIssuerBase(t)
	c = mustNext(t, c, order(c, 1))
	tok := c.ACMEStatus["web"].Token
	long := strings.Repeat("a", maxACMEToken+1)
	for _, tt := range []struct {
		ch    ACMEChallenge
		field string
	}{
		{ACMEChallenge{Certificate: "web", Type: "dns-01", Domain: "a.example.com", Token: "t", KeyAuth: "t.x"}, "add[0].type"},
		{ACMEChallenge{Certificate: "web", Type: ChallengeHTTP01, Domain: "a b", Token: "t", KeyAuth: "t.x"}, "add[0].domain"},
		{ACMEChallenge{Certificate: "web", Type: ChallengeHTTP01, Domain: "a.example.com", Token: "../x", KeyAuth: "../x.y"}, "add[0].token"},
		{ACMEChallenge{Certificate: "web", Type: ChallengeHTTP01, Domain: "a.example.com", Token: long, KeyAuth: long + ".x"}, "add[0].token"},
		{ACMEChallenge{Certificate: "web", Type: ChallengeHTTP01, Domain: "a.example.com", Token: "t", KeyAuth: "u.x"}, "add[0].key_auth"},
		{ACMEChallenge{Certificate: "other", Type: ChallengeHTTP01, Domain: "a.example.com", Token: "t", KeyAuth: "t.x"}, "add[0].certificate"},
	} {
		_, err := Next(c, c.Index+1, NewCommand(&ACMEChallenges{Certificate: "web", Token: tok, Term: 1, Add: []ACMEChallenge{tt.ch}}))
		wantFieldError(t, err, tt.field, ErrInvalid)
	}
	many := make([]ACMEChallenge, maxACMEDomains+1)
	_, err := Next(c, c.Index+1, NewCommand(&ACMEChallenges{Certificate: "web", Token: tok, Term: 1, Add: many}))
	wantFieldError(t, err, "add", ErrInvalid)
	_, err = Next(c, c.Index+1, NewCommand(&ACMEOrder{Certificate: "nope", SpecIndex: 1, Token: 0, Term: 1}))
	wantFieldError(t, err, "certificate", ErrNotFound)
	_, err = Next(c, c.Index+1, NewCommand(&ACMEOrder{Certificate: "web", SpecIndex: 999, Token: tok, Term: 1}))
	wantFieldError(t, err, "spec_index", ErrConflict)
	_, err = Next(c, c.Index+1, NewCommand(&ACMEResult{Certificate: "web", Token: tok, Term: 1, CertPEM: "junk", SealedKey: "k"}))
	wantFieldError(t, err, "cert_pem", ErrInvalid)
	// The issuer of a running order cannot be deleted.
	_, err = Next(c, c.Index+1, DeleteCommand(KindACMEIssuer, "pebble", nil))
	wantFieldError(t, err, "name", ErrConflict)
}

func TestACMEAccountCAS(t *testing.T) {
	c := acmeIssuerBase(t)
	set := func(cas uint64, dir string) *Command {
		return NewCommand(&ACMEAccountSet{Issuer: "pebble", Directory: dir, SealedKey: "k", CAS: cas, Term: 1})
	}
	c1 := mustNext(t, c, set(0, "https://127.0.0.1:14000/dir"))
	if a := c1.ACMEAccounts["pebble"]; a == nil || a.Index != c1.Index {
		t.Fatalf("account: %+v", a)
	}
	// A second leader racing to create the account loses.
	_, err := Next(c1, c1.Index+1, set(0, "https://127.0.0.1:14000/dir"))
	wantFieldError(t, err, "cas", ErrConflict)
	_, err = Next(c1, c1.Index+1, set(c1.Index, "https://other/dir"))
	wantFieldError(t, err, "directory", ErrConflict)
	c2 := mustNext(t, c1, DeleteCommand(KindACMEIssuer, "pebble", nil))
	if len(c2.ACMEAccounts) != 0 {
		t.Fatal("deleting the issuer kept its account")
	}
}

func TestACMECommandsRoundTrip(t *testing.T) {
	for _, cmd := range []*Command{
		NewCommand(&ACMEOrder{Certificate: "web", SpecIndex: 4, Token: 3, Term: 2}),
		NewCommand(&ACMEChallenges{Certificate: "web", Token: 3, Term: 2, Add: []ACMEChallenge{challenge("t")}, Remove: []string{"u"}}),
		NewCommand(&ACMEResult{Certificate: "web", Token: 3, Term: 2, Error: "x", NextAttempt: time.Unix(9, 0).UTC()}),
		NewCommand(&ACMEAccountSet{Issuer: "p", Directory: "https://d/", SealedKey: "k", CAS: 1, Term: 2}),
	} {
		b, err := EncodeCommand(cmd)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeCommand(b)
		if err != nil {
			t.Fatalf("%s: %v", cmd.Type, err)
		}
		a, _ := json.Marshal(cmd)
		g, _ := json.Marshal(got)
		if string(a) != string(g) {
			t.Fatalf("round trip changed %s into %s", a, g)
		}
	}
}

// TestACMERestoreFences: a restore ends running orders with a new token.
func TestACMERestoreFences(t *testing.T) {
	c := acmeIssuerBase(t)
	c = mustNext(t, c, order(c, 1))
	old := c.ACMEStatus["web"].Token
	r := mustNext(t, c, NewCommand(&Restore{Config: c}))
	st := r.ACMEStatus["web"]
	if st.Token == old || st.State != ACMEFailed {
		t.Fatalf("restore kept the running order: %+v", st)
	}
}

// TestACMEIssuerEABKeyNeverRead: reads, exports and diffs leave out the
// EAB HMAC key (sealed) and the sealed account keys; re-applying what a
// read returned, or a redacted export, keeps the stored sealed key.
func TestACMEIssuerEABKeyNeverRead(t *testing.T) {
	const sealedHMAC = "rs1:0123456789abcdef:c2VjcmV0LWhtYWM"
	put := `{"directory":"https://ca.example.com/dir","eab":{"kid":"k1","encrypted_hmac_key":"` + sealedHMAC + `"}}`
	base := mustNext(t, Empty(), PutCommand(obj(KindACMEIssuer, "ca", `{"directory":"https://ca.example.com/dir"}`), nil))
	if ch := Diff(base, mustNext(t, base, PutCommand(obj(KindACMEIssuer, "ca", put), nil))); len(ch) != 1 ||
		strings.Contains(string(ch[0].After), "c2VjcmV0LWhtYWM") || strings.Contains(string(ch[0].After), "hmac") {
		t.Fatalf("the diff shows the HMAC key: %+v", ch)
	}
	c := mustNext(t, Empty(), PutCommand(obj(KindACMEIssuer, "ca", put), nil))
	c = mustNext(t, c, NewCommand(&ACMEAccountSet{Issuer: "ca", Directory: "https://ca.example.com/dir", SealedKey: fakeSealed, Term: 1}))
	o, _ := c.Get(KindACMEIssuer, "ca")
	if strings.Contains(string(o.Spec), "c2VjcmV0LWhtYWM") || strings.Contains(string(o.Spec), "hmac") {
		t.Fatalf("GET shows the HMAC key: %s", o.Spec)
	}
	if l := c.List(KindACMEIssuer); len(l) != 1 || strings.Contains(string(l[0].Spec), "c2VjcmV0LWhtYWM") {
		t.Fatalf("list shows the HMAC key: %+v", l)
	}
	raw, _ := json.Marshal(c.Redacted())
	if strings.Contains(string(raw), "c2VjcmV0LWhtYWM") || strings.Contains(string(raw), fakeSealed) {
		t.Fatalf("the redacted document shows a key: %s", raw)
	}
	again := mustNext(t, c, PutCommand(o, nil))
	if got := again.ACMEIssuers["ca"]; got.Spec.EAB.EncryptedHMACKey != sealedHMAC || got.ModifyIndex != c.ACMEIssuers["ca"].ModifyIndex {
		t.Fatalf("re-applying the read spec changed the issuer: %+v", got)
	}
	// The redacted export, applied and restored, keeps the stored key.
	var doc Config
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	applied := mustNext(t, c, ApplyCommand(doc.List(KindACMEIssuer)))
	if got := applied.ACMEIssuers["ca"]; got.Spec.EAB.EncryptedHMACKey != sealedHMAC || got.ModifyIndex != c.ACMEIssuers["ca"].ModifyIndex {
		t.Fatalf("applying the export changed the issuer: %+v", got)
	}
	restored := mustNext(t, c, NewCommand(&Restore{Config: &doc}))
	if got := restored.ACMEIssuers["ca"]; got.Spec.EAB.EncryptedHMACKey != sealedHMAC {
		t.Fatalf("restoring the export lost the key: %+v", got.Spec.EAB)
	}
	// Another key id without its key: refused.
	_, err := Next(c, c.Index+1, PutCommand(obj(KindACMEIssuer, "ca", `{"directory":"https://ca.example.com/dir","eab":{"kid":"k2"}}`), nil))
	wantFieldError(t, err, "spec.eab.hmac_key", ErrInvalid)
}

// TestACMEIssuerEABKeySealed: only a sealed EAB HMAC key reaches the
// state; a plaintext one is refused by every command that puts a spec,
// and both forms stay bounded.
func TestACMEIssuerEABKeySealed(t *testing.T) {
	spec := func(eab string) string { return `{"directory":"https://ca.example.com/dir","eab":` + eab + `}` }
	plain := spec(`{"kid":"k1","hmac_key":"c2VjcmV0LWhtYWM"}`)
	for _, tt := range []struct {
		name, spec, field, msg string
	}{
		{"plaintext", plain, "spec.eab.hmac_key", "must be sealed"},
		{"both", spec(`{"kid":"k1","hmac_key":"c2VjcmV0LWhtYWM","encrypted_hmac_key":"` + fakeSealed + `"}`), "spec.eab.hmac_key", "not both"},
		{"plaintext too long", spec(`{"kid":"k1","hmac_key":"` + strings.Repeat("a", maxACMEEABHMAC+1) + `"}`), "spec.eab.hmac_key", "at most"},
		{"sealed too long", spec(`{"kid":"k1","encrypted_hmac_key":"` + strings.Repeat("a", maxSealedKey+1) + `"}`), "spec.eab.encrypted_hmac_key", "at most"},
		{"sealed not printable", spec(`{"kid":"k1","encrypted_hmac_key":"rs1: x"}`), "spec.eab.encrypted_hmac_key", "not a sealed value"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Next(Empty(), 1, PutCommand(obj(KindACMEIssuer, "ca", tt.spec), nil))
			wantFieldError(t, err, tt.field, ErrInvalid)
			if !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %q does not say %q", err, tt.msg)
			}
		})
	}
	// Apply and restore refuse the plaintext too.
	_, err := Next(Empty(), 1, ApplyCommand([]Object{obj(KindACMEIssuer, "ca", plain)}))
	wantFieldError(t, err, "documents[0].spec.eab.hmac_key", ErrInvalid)
	var is ACMEIssuerSpec
	if err := json.Unmarshal([]byte(plain), &is); err != nil {
		t.Fatal(err)
	}
	_, err = Next(Empty(), 1, NewCommand(&Restore{Config: &Config{ACMEIssuers: map[string]*ACMEIssuer{"ca": {Name: "ca", Spec: is}}}}))
	wantFieldError(t, err, "acme_issuers/ca.spec.eab.hmac_key", ErrInvalid)
	// The sealed form is stored as sent.
	c := mustNext(t, Empty(), PutCommand(obj(KindACMEIssuer, "ca", spec(`{"kid":"k1","encrypted_hmac_key":"`+fakeSealed+`"}`)), nil))
	if e := c.ACMEIssuers["ca"].Spec.EAB; e.EncryptedHMACKey != fakeSealed || e.HMACKey != "" {
		t.Fatalf("stored binding %+v", e)
	}
}
