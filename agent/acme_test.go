package agent

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"

	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rafterlb/rafter/client"
	"github.com/rafterlb/rafter/cluster/acme"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/testutil"
	"github.com/rafterlb/rafter/secrets"
)

// acmeCluster is three agents on 127.0.0.1-3 sharing a secrets key, with
// the ACME manager's timers shortened.
type acmeCluster struct {
	dc      *DevCluster
	clients map[string]*client.Client // by node id
	keyring *secrets.Keyring
}

func startACMECluster(t *testing.T) *acmeCluster {
	t.Helper()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "secrets.key")
	if _, err := secrets.WriteKeyFile(keyFile); err != nil {
		t.Fatal(err)
	}
	keyring, err := secrets.LoadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var lns []net.Listener
	var admins []string
	for i := range 3 {
		ln, err := net.Listen("tcp", DevIP(i)+":0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		lns = append(lns, ln)
		admins = append(admins, ln.Addr().String())
	}
	cfgs := DevConfigs(dir, 0, 0, admins)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	const token = "acme-t0ken"
	for i := range cfgs {
		cfgs[i].Token = token
		cfgs[i].AccessLog = "off"
		cfgs[i].AdminListener = lns[i]
		cfgs[i].Logger = log
		cfgs[i].SecretsKeyFile = keyFile
		cfgs[i].ACME = ACMETuning{Tick: 200 * time.Millisecond, RetryMin: time.Second, RetryMax: 5 * time.Second}
	}
	dc := NewDevCluster(cfgs)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		if err := dc.StopAll(); err != nil {
			t.Errorf("stopping: %v", err)
		}
	})
	if err := dc.StartAll(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	c := &acmeCluster{dc: dc, clients: map[string]*client.Client{}, keyring: keyring}
	var all []*client.Client
	for i, cfg := range cfgs {
		c.clients[cfg.NodeID] = client.New("http://"+admins[i], token, nil)
		all = append(all, c.clients[cfg.NodeID])
	}
	waitLeader(t, all)
	return c
}

// term is the Raft term node id reports.
func (c *acmeCluster) term(t *testing.T, id string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, _, err := c.clients[id].Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st.Term
}

// state is node id's replicated document.
func (c *acmeCluster) state(id string) *fsm.Config {
	c.dc.mu.Lock()
	defer c.dc.mu.Unlock()
	n := c.dc.nodes[id]
	if n == nil || n.agent == nil || n.agent.Node() == nil {
		return nil
	}
	return n.agent.Node().Config()
}

// leader is the id of the node that leads now, by the agents' own view.
func (c *acmeCluster) leader(t *testing.T) string {
	t.Helper()
	var id string
	testutil.Eventually(t, 30*time.Second, "a leader", func() error {
		c.dc.mu.Lock()
		defer c.dc.mu.Unlock()
		for nid, n := range c.dc.nodes {
			if n.agent != nil && n.agent.Node() != nil && n.agent.Node().IsLeader() {
				id = nid
				return nil
			}
		}
		return errors.New("no leader")
	})
	return id
}

func (c *acmeCluster) apply(t *testing.T, via, manifest string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.clients[via].Apply(ctx, []byte(manifest), false); err != nil {
		t.Fatalf("apply: %v\n%s", err, manifest)
	}
}

// waitIssued waits until node id sees certificate name valid and issued
// at an index above after, and returns its status and material.
func (c *acmeCluster) waitIssued(t *testing.T, id, name string, after uint64, within time.Duration) (*fsm.ACMEStatus, *fsm.CertificateStatus) {
	t.Helper()
	var st *fsm.ACMEStatus
	var cs *fsm.CertificateStatus
	testutil.Eventually(t, within, "certificate "+name+" issued on "+id, func() error {
		cfg := c.state(id)
		if cfg == nil {
			return errors.New("node not running")
		}
		st, cs = cfg.ACMEStatus[name], cfg.CertificateStatus[name]
		switch {
		case st == nil:
			return errors.New("no order yet")
		case st.State != fsm.ACMEValid || st.IssuedIndex <= after || cs == nil || cs.Cert == "":
			return fmt.Errorf("state %s, orders %d, last error %q", st.State, st.Orders, st.LastError)
		}
		return nil
	})
	return st, cs
}

// checkKey opens the sealed key and checks it belongs to leaf.
func (c *acmeCluster) checkKey(t *testing.T, name, sealed string, leafPub crypto.PublicKey) {
	t.Helper()
	b, err := c.keyring.Open(sealed, secrets.CertificateKeyAAD(name))
	if err != nil {
		t.Fatalf("opening the certificate key: %v", err)
	}
	k, err := acme.ParseKey(b)
	if err != nil {
		t.Fatal(err)
	}
	if !k.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(leafPub) {
		t.Fatal("the sealed key does not belong to the issued certificate")
	}
}

func issuerManifest(env *pebbleEnv, challenge string) string {
	return fmt.Sprintf(`{"kind":"acme_issuer","name":"pebble","spec":{"directory":%q,"email":"ops@example.com","ca_roots":%q,"challenge":%q}}`,
		env.Directory, env.RootsPEM, challenge)
}

// TestACMEIssueAndRenewHTTP01: the leader orders a certificate for two
// names whose validation requests pebble sends to two different nodes,
// each of which answers the token from the replicated state; the
// certificate verifies against pebble's root, its key is sealed; at two
// thirds of its (short) lifetime it is renewed.
func TestACMEIssueAndRenewHTTP01(t *testing.T) {
	httpPort, httpsPort := freePort(t), freePort(t)
	env := startPebble(t, httpPort, freePort(t), 15*time.Second)
	env.dns.point("a.acme.test", DevIP(1))
	env.dns.point("b.acme.test", DevIP(2))
	c := startACMECluster(t)
	term0 := c.term(t, "n1")
	c.apply(t, "n1", fmt.Sprintf(`{"kind":"listener","name":"web","spec":{"port":%d}}`, httpPort)+"\n---\n"+
		issuerManifest(env, "http-01")+"\n---\n"+
		`{"kind":"certificate","name":"site","spec":{"acme":{"domains":["a.acme.test","b.acme.test"],"issuer":"pebble"}}}`+"\n---\n"+
		fmt.Sprintf(`{"kind":"listener","name":"secure","spec":{"port":%d,"protocol":"https","tls":{"certificates":["site"]}}}`, httpsPort))

	st, cs := c.waitIssued(t, "n3", "site", 0, 90*time.Second)
	leaf := env.verifyChain(t, cs.Cert, "a.acme.test")
	env.verifyChain(t, cs.Cert, "b.acme.test")
	c.checkKey(t, "site", cs.EncryptedKey, leaf.PublicKey)
	if want := acme.TwoThirds(leaf.NotBefore, leaf.NotAfter); !st.RenewAt.Equal(want) {
		t.Fatalf("renew_at %v, want two thirds into the lifetime (%v)", st.RenewAt, want)
	}
	if n := len(c.state("n3").ACMEChallenges); n != 0 {
		t.Fatalf("%d challenges left after the order", n)
	}
	// One order, unless the machine was so busy that leadership moved
	// meanwhile: each new leader may begin one more, never more.
	if o := env.orders.Load(); o < 1 || o > int64(st.Orders) || st.Orders > 1+st.Term-term0 {
		t.Fatalf("orders: pebble saw %d, status counts %d in term %d (term %d at the start)", o, st.Orders, st.Term, term0)
	}
	env.servedByEveryNode(t, httpsPort, "b.acme.test", leaf)

	// The API shows the order state on any node, and never the key.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	it, _, err := c.clients["n3"].Certificate(ctx, "site")
	if err != nil {
		t.Fatal(err)
	}
	// (A renewal may have begun since: the view must be consistent, with
	// the served chain's renewal time.)
	if v := it.Certificate; v == nil || v.ACME == nil || v.ACME.State == fsm.ACMEFailed || v.ACME.Orders < st.Orders ||
		!v.ACME.RenewAt.Equal(acme.TwoThirds(v.NotBefore, v.NotAfter)) || v.NotAfter.Before(leaf.NotAfter) || !v.Issued {
		t.Fatalf("GET /v1/certificates/site shows %+v (acme %+v)", it.Certificate, it.Certificate.ACME)
	}
	raw, _ := json.Marshal(it)
	if strings.Contains(string(raw), "rs1:") || strings.Contains(string(raw), "PRIVATE KEY") {
		t.Fatalf("GET /v1/certificates/site shows key material: %s", raw)
	}

	// Renewal: a new certificate, once the first is two thirds through.
	st2, cs2 := c.waitIssued(t, "n2", "site", st.IssuedIndex, 60*time.Second)
	leaf2 := env.verifyChain(t, cs2.Cert, "a.acme.test")
	if leaf2.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Fatal("renewal kept the old certificate")
	}
	if now := time.Now(); now.Before(st.RenewAt) {
		t.Fatalf("renewed at %v, before renew_at %v", now, st.RenewAt)
	}
	c.checkKey(t, "site", cs2.EncryptedKey, leaf2.PublicKey)
	env.servedByEveryNode(t, httpsPort, "a.acme.test", leaf2)
	if o := env.orders.Load(); o < 2 || o > int64(st2.Orders)+1 {
		t.Fatalf("orders: pebble saw %d, status counts %d", o, st2.Orders)
	}
}

// TestACMELeaderStopsMidOrder: the leader is stopped while the CA is
// being asked to validate its challenge; the next leader fences the old
// order, orders again and finishes. At most one extra order reaches the
// CA.
func TestACMELeaderStopsMidOrder(t *testing.T) {
	httpPort := freePort(t)
	env := startPebble(t, httpPort, freePort(t), 3600*time.Second)
	c := startACMECluster(t)
	first := c.leader(t)
	var survivor string
	for _, id := range []string{"n1", "n2", "n3"} {
		if id != first {
			survivor = id
			break
		}
	}
	env.dns.point("c.acme.test", DevIP(int(survivor[1]-'1')))
	env.holdNextChallenge()
	c.apply(t, survivor, fmt.Sprintf(`{"kind":"listener","name":"web","spec":{"port":%d}}`, httpPort)+"\n---\n"+
		issuerManifest(env, "http-01")+"\n---\n"+
		`{"kind":"certificate","name":"mid","spec":{"acme":{"domains":["c.acme.test"],"issuer":"pebble"}}}`)
	select {
	case <-env.held:
	case <-time.After(90 * time.Second):
		t.Fatal("the leader never asked the CA to validate")
	}
	before := c.state(survivor).ACMEStatus["mid"]
	if before == nil || before.State != fsm.ACMEOrdering {
		t.Fatalf("status while the order runs: %+v", before)
	}
	if err := c.dc.Stop(first); err != nil {
		t.Fatalf("stopping the leader %s: %v", first, err)
	}
	env.releaseHold()

	st, cs := c.waitIssued(t, survivor, "mid", 0, 120*time.Second)
	if st.Term <= before.Term {
		t.Fatalf("issued in term %d, the stopped leader's order was term %d", st.Term, before.Term)
	}
	// The stopped leader's order and the new leader's: one extra order
	// per leader change (a busy machine may add elections of its own).
	extraTerms := st.Term - before.Term
	if st.Orders < 2 || st.Orders > 1+extraTerms {
		t.Fatalf("status counts %d orders over %d leader changes", st.Orders, extraTerms)
	}
	if o := env.orders.Load(); o > int64(st.Orders) {
		t.Fatalf("pebble saw %d orders, the cluster began %d", o, st.Orders)
	}
	t.Logf("orders at pebble: %d, begun: %d, leader changes: %d", env.orders.Load(), st.Orders, extraTerms)
	leaf := env.verifyChain(t, cs.Cert, "c.acme.test")
	c.checkKey(t, "mid", cs.EncryptedKey, leaf.PublicKey)
}

// TestACMETLSALPN01: an issuer using TLS-ALPN-01 gets its challenge
// answered by a node's https listener.
func TestACMETLSALPN01(t *testing.T) {
	tlsPort := freePort(t)
	env := startPebble(t, freePort(t), tlsPort, 3600*time.Second)
	env.dns.point("d.acme.test", DevIP(2))
	dir := t.TempDir()
	certPEM, keyPEM, _ := loopbackCert(t)
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	writeFile(t, certFile, certPEM)
	writeFile(t, keyFile, keyPEM)
	c := startACMECluster(t)
	c.apply(t, "n2", fmt.Sprintf(`{"kind":"listener","name":"secure","spec":{"port":%d,"protocol":"https","tls":{"cert_file":%q,"key_file":%q}}}`,
		tlsPort, certFile, keyFile)+"\n---\n"+
		issuerManifest(env, "tls-alpn-01")+"\n---\n"+
		`{"kind":"certificate","name":"alpn","spec":{"acme":{"domains":["d.acme.test"],"issuer":"pebble"}}}`)
	_, cs := c.waitIssued(t, "n1", "alpn", 0, 90*time.Second)
	leaf := env.verifyChain(t, cs.Cert, "d.acme.test")
	c.checkKey(t, "alpn", cs.EncryptedKey, leaf.PublicKey)
}

// servedByEveryNode checks that each node's https listener on port
// answers a handshake with SNI name with leaf, verified against pebble's
// root.
func (e *pebbleEnv) servedByEveryNode(t *testing.T, port int, name string, leaf *x509.Certificate) {
	t.Helper()
	roots := e.roots(t)
	for i := range 3 {
		addr := net.JoinHostPort(DevIP(i), strconv.Itoa(port))
		testutil.Eventually(t, 30*time.Second, "node "+addr+" serves the issued certificate", func() error {
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr,
				&tls.Config{ServerName: name, RootCAs: roots})
			if err != nil {
				return err
			}
			defer conn.Close()
			got := conn.ConnectionState().PeerCertificates[0]
			if got.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
				return fmt.Errorf("serves serial %x, want %x", got.SerialNumber, leaf.SerialNumber)
			}
			return nil
		})
	}
}

// TestACMEExternalAccountBinding: against a CA that requires EAB, an
// issuer with a wrong HMAC key fails and says so in the status, with a
// retry time; once the operator fixes the key the next attempt issues.
func TestACMEExternalAccountBinding(t *testing.T) {
	httpPort := freePort(t)
	const kid, hmacKey = "kid-1", "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
	env := startPebbleEAB(t, httpPort, freePort(t), 3600*time.Second, map[string]string{kid: hmacKey})
	env.dns.point("e.acme.test", DevIP(0))
	c := startACMECluster(t)
	issuer := func(key string) string {
		return fmt.Sprintf(`{"kind":"acme_issuer","name":"pebble","spec":{"directory":%q,"ca_roots":%q,"eab":{"kid":%q,"hmac_key":%q}}}`,
			env.Directory, env.RootsPEM, kid, key)
	}
	c.apply(t, "n3", fmt.Sprintf(`{"kind":"listener","name":"web","spec":{"port":%d}}`, httpPort)+"\n---\n"+
		issuer("d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5")+"\n---\n"+
		`{"kind":"certificate","name":"eab","spec":{"acme":{"domains":["e.acme.test"],"issuer":"pebble"}}}`)
	testutil.Eventually(t, 90*time.Second, "the wrong binding fails the order", func() error {
		st := c.state("n2").ACMEStatus["eab"]
		if st == nil || st.State != fsm.ACMEFailed || st.LastError == "" || st.NextAttempt.IsZero() {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	if cs := c.state("n2").CertificateStatus["eab"]; cs == nil || cs.Error == "" || cs.Cert != "" {
		t.Fatalf("certificate status after the failure: %+v", cs)
	}
	c.apply(t, "n1", issuer(hmacKey))
	_, cs := c.waitIssued(t, "n2", "eab", 0, 90*time.Second)
	leaf := env.verifyChain(t, cs.Cert, "e.acme.test")
	c.checkKey(t, "eab", cs.EncryptedKey, leaf.PublicKey)
}
