package dataplane

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/asn1"
	"io"
	"net/http"
	"testing"

	"github.com/rafterlb/rafter/fsm"
)

func withChallenges(cfg *fsm.Config, chs ...fsm.ACMEChallenge) *fsm.Config {
	cfg.ACMEChallenges = map[string]*fsm.ACMEChallenge{}
	for i := range chs {
		cfg.ACMEChallenges[chs[i].Token] = &chs[i]
	}
	return cfg
}

// A pending HTTP-01 token is answered on every http listener before
// routing; other paths, unknown tokens and removed tokens go to routing.
func TestACMEHTTP01AnsweredBeforeRouting(t *testing.T) {
	be := newBackend(t, nil)
	cfg := simpleConfig(be.addr)
	src := newFakeSource(withChallenges(cfg.build(), fsm.ACMEChallenge{Certificate: "web", Type: fsm.ChallengeHTTP01,
		Domain: "a.example.com", Token: "tok_1", KeyAuth: "tok_1.thumb"}))
	d := startDataplane(t, src, nil)
	addr := d.ListenerAddr("web")
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/.well-known/acme-challenge/tok_1"); code != 200 || body != "tok_1.thumb" {
		t.Fatalf("challenge answered %d %q", code, body)
	}
	if n := len(be.requests()); n != 0 {
		t.Fatalf("the challenge reached the backend (%d requests)", n)
	}
	for _, p := range []string{"/.well-known/acme-challenge/other", "/.well-known/acme-challenge/tok_1/x", "/x"} {
		if code, _ := get(p); code != 200 {
			t.Fatalf("%s: %d", p, code)
		}
	}
	if n := len(be.requests()); n != 3 {
		t.Fatalf("backend saw %d requests, want 3 routed ones", n)
	}
	src.Set(simpleConfig(be.addr).build())
	waitFor(t, "token removed", func() bool {
		get("/.well-known/acme-challenge/tok_1")
		return len(be.requests()) == 4
	})
}

// A ClientHello offering acme-tls/1 for a name with a pending TLS-ALPN-01
// challenge gets the challenge certificate; ordinary clients get the
// listener's certificate.
func TestACMETLSALPN01(t *testing.T) {
	be := newBackend(t, nil)
	certFile, keyFile, pool := writeSelfSigned(t, t.TempDir())
	cfg := simpleConfig(be.addr)
	cfg.listeners["web"] = fsm.ListenerSpec{Protocol: "https", TLS: &fsm.ListenerTLS{CertFile: certFile, KeyFile: keyFile}}
	const ka = "tok2.thumbprint"
	src := newFakeSource(withChallenges(cfg.build(), fsm.ACMEChallenge{Certificate: "web", Type: fsm.ChallengeTLSALPN01,
		Domain: "b.example.com", Token: "tok2", KeyAuth: ka}))
	d := startDataplane(t, src, nil)
	addr := d.ListenerAddr("web")

	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "b.example.com", NextProtos: []string{ACMEALPNProto},
		InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("acme-tls/1 handshake: %v", err)
	}
	st := conn.ConnectionState()
	conn.Close()
	if st.NegotiatedProtocol != ACMEALPNProto {
		t.Fatalf("negotiated %q", st.NegotiatedProtocol)
	}
	leaf := st.PeerCertificates[0]
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "b.example.com" {
		t.Fatalf("challenge certificate names %v", leaf.DNSNames)
	}
	var got []byte
	for _, e := range leaf.Extensions {
		if e.Id.Equal(idPeACMEIdentifier) {
			if !e.Critical {
				t.Fatal("acmeIdentifier not critical")
			}
			if _, err := asn1.Unmarshal(e.Value, &got); err != nil {
				t.Fatal(err)
			}
		}
	}
	if sum := sha256.Sum256([]byte(ka)); !bytes.Equal(got, sum[:]) {
		t.Fatalf("acmeIdentifier %x, want %x", got, sum)
	}

	// Only acme-tls/1 for a name without a challenge: refused.
	if c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "c.example.com", NextProtos: []string{ACMEALPNProto},
		InsecureSkipVerify: true}); err == nil {
		c.Close()
		t.Fatal("acme-tls/1 without a challenge completed a handshake")
	}
	// An ordinary client gets the listener's own certificate.
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatalf("ordinary handshake: %v", err)
	}
	if p := c.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
		t.Fatalf("ordinary client negotiated %q", p)
	}
	c.Close()
}

func TestACMEAnswersReuseCertificates(t *testing.T) {
	var a acmeAnswers
	ch := fsm.ACMEChallenge{Certificate: "w", Type: fsm.ChallengeTLSALPN01, Domain: "d.example.com", Token: "t", KeyAuth: "t.k"}
	cfg := withChallenges(&fsm.Config{}, ch)
	if err := a.update(cfg); err != nil {
		t.Fatal(err)
	}
	first := a.cur.Load().alpn["d.example.com"]
	cfg2 := withChallenges(&fsm.Config{Index: 2}, ch)
	if err := a.update(cfg2); err != nil {
		t.Fatal(err)
	}
	if a.cur.Load().alpn["d.example.com"] != first {
		t.Fatal("an unchanged challenge got a new certificate")
	}
	if err := a.update(&fsm.Config{}); err != nil || a.cur.Load() != nil {
		t.Fatal("answers kept after every challenge went")
	}
}
