package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rafterlb/rafter/client"
	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/testutil"
	"github.com/rafterlb/rafter/secrets"
)

// secretsCluster is testCluster with every node on the same secrets key
// (given as a key file, as operators do) and every log line, debug
// included, captured in logs.
func secretsCluster(t *testing.T, logs io.Writer) (*DevCluster, []string, string) {
	t.Helper()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "secrets.key")
	if _, err := secrets.WriteKeyFile(keyFile); err != nil {
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
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for i := range cfgs {
		cfgs[i].AccessLog = "stdout"
		cfgs[i].Stdout = logs
		cfgs[i].AdminListener = lns[i]
		cfgs[i].SecretsKeyFile = keyFile
		cfgs[i].Logger = log
	}
	dc := NewDevCluster(cfgs)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := false
	t.Cleanup(func() {
		cancel()
		if !stopped {
			if err := dc.StopAll(); err != nil {
				t.Errorf("stopping: %v", err)
			}
		}
		if t.Failed() {
			logProblems(t, logs)
		}
	})
	if err := dc.StartAll(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	return dc, admins, dir
}

// logProblems logs the warnings and errors among the nodes' log lines,
// which say why a listener did not bind or a ticket key did not rotate.
func logProblems(t *testing.T, logs io.Writer) {
	lb, ok := logs.(*testutil.SyncBuffer)
	if !ok {
		return
	}
	for line := range strings.Lines(string(lb.Bytes())) {
		if strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`) {
			t.Log(strings.TrimSpace(line))
		}
	}
}

// raftNode is node id's Raft node in dc.
func raftNode(dc *DevCluster, id string) *cluster.Node {
	dc.mu.Lock()
	a := dc.nodes[id].agent
	dc.mu.Unlock()
	return a.Node()
}

// applyHTTPS stores certificate web (a fresh pair for app.example.com)
// and an https listener on a free port naming it, and returns the port
// and the key's PEM.
func applyHTTPS(t *testing.T, c *client.Client) (port int, keyPEM string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	certPEM, keyPEM := testutil.Cert(t, testutil.CertOptions{Names: []string{"app.example.com"}})
	eventually(t, "certificate stored", func() error {
		_, err := c.PutCertificate(ctx, "web", certPEM, keyPEM, nil)
		return err
	})
	port = freePort(t)
	manifest := fmt.Sprintf(`kind: listener
name: tls
spec: {port: %d, protocol: https, tls: {certificates: [web]}}
---
kind: route
name: tls
spec:
  listener: tls
  action: {respond: {status: 200, body: "hello over tls\n"}}
`, port)
	// Writes are retried: under load a leader election may come between.
	eventually(t, "listener applied", func() error {
		_, err := c.Apply(ctx, []byte(manifest), false)
		return err
	})
	return port, keyPEM
}

// getOverTLS does one request on a new TLS connection to addr and reports
// whether the session was resumed.
func getOverTLS(addr string, conf *tls.Config) (bool, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, conf)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n"); err != nil {
		return false, err
	}
	// Reading the answer also takes in the TLS 1.3 tickets sent after
	// the handshake.
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return false, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello over tls\n" {
		return false, fmt.Errorf("answer %d %q", resp.StatusCode, body)
	}
	return conn.ConnectionState().DidResume, nil
}

// TestTLSSessionResumesOnAnotherNode: a client that got its session from
// one node resumes it on each other node (TLS 1.3 and 1.2): the leader's
// session-ticket keys reach every node through the log.
func TestTLSSessionResumesOnAnotherNode(t *testing.T) {
	var logs testutil.SyncBuffer
	_, admins, _ := secretsCluster(t, &logs)
	var clients []*client.Client
	for _, a := range admins {
		clients = append(clients, client.New("http://"+a, "", nil))
	}
	waitLeader(t, clients)
	port, _ := applyHTTPS(t, clients[0])
	addr := func(i int) string { return net.JoinHostPort(DevIP(i), strconv.Itoa(port)) }
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		for from := range 3 {
			to := (from + 1) % 3
			eventually(t, fmt.Sprintf("TLS %x: a session from n%d resumes on n%d", v, from+1, to+1), func() error {
				conf := &tls.Config{ServerName: "app.example.com", InsecureSkipVerify: true, MaxVersion: v,
					ClientSessionCache: tls.NewLRUClientSessionCache(4)}
				resumed, err := getOverTLS(addr(from), conf)
				if err != nil {
					return err
				}
				if resumed {
					return errors.New("the first connection resumed")
				}
				if resumed, err = getOverTLS(addr(to), conf); err != nil {
					return err
				}
				if !resumed {
					return errors.New("not resumed")
				}
				return nil
			})
		}
	}
}

// TestCertificateRotationReachesEveryNode: storing a certificate again
// makes every node serve the new chain on the same listener.
func TestCertificateRotationReachesEveryNode(t *testing.T) {
	var logs testutil.SyncBuffer
	_, admins, _ := secretsCluster(t, &logs)
	c := client.New("http://"+admins[2], "", nil)
	waitLeader(t, []*client.Client{c})
	port, _ := applyHTTPS(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for round := range 3 {
		certPEM, keyPEM := testutil.Cert(t, testutil.CertOptions{Names: []string{"app.example.com"}})
		pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "certificate replaced", func() error {
			_, err := c.PutCertificate(ctx, "web", certPEM, keyPEM, nil)
			return err
		})
		for i := range 3 {
			addr := net.JoinHostPort(DevIP(i), strconv.Itoa(port))
			eventually(t, fmt.Sprintf("round %d: n%d serves the new certificate", round, i+1), func() error {
				conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
					&tls.Config{ServerName: "app.example.com", InsecureSkipVerify: true})
				if err != nil {
					return err
				}
				defer conn.Close()
				if got := conn.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(pair.Leaf.SerialNumber) != 0 {
					return fmt.Errorf("serial %s, want %s", got, pair.Leaf.SerialNumber)
				}
				return nil
			})
		}
	}
}

// TestCertificateKeyNeverInClear writes certificates and an acme_issuer
// with an EAB HMAC key through the API (PUT and a manifest), makes every
// node take a Raft snapshot, stops the cluster, then looks for the private
// keys and the HMAC key in every file of the data directories (the bolt
// log and stable store, the snapshots, decoded), in every log line and in
// the answers of the read endpoints: neither the PEM text, its base64
// body, nor the raw DER is anywhere; nor the HMAC key, encoded or raw.
func TestCertificateKeyNeverInClear(t *testing.T) {
	var logs testutil.SyncBuffer
	dc, admins, dir := secretsCluster(t, &logs)
	c := client.New("http://"+admins[1], "", nil)
	waitLeader(t, []*client.Client{c})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, key1 := applyHTTPS(t, c)
	cert2, key2 := testutil.Cert(t, testutil.CertOptions{Names: []string{"other.example.com"}, RSA: true})
	hmacRaw := make([]byte, 32)
	if _, err := rand.Read(hmacRaw); err != nil {
		t.Fatal(err)
	}
	hmacKey := base64.RawURLEncoding.EncodeToString(hmacRaw)
	manifest, _ := json.Marshal([]map[string]any{
		{"kind": "certificate", "name": "other", "spec": map[string]string{"cert": cert2, "key": key2}},
		// No certificate names the issuer, so the leader never calls it.
		{"kind": "acme_issuer", "name": "ca", "spec": map[string]any{"directory": "https://127.0.0.1:1/dir",
			"eab": map[string]string{"kid": "kid-1", "hmac_key": hmacKey}}},
	})
	eventually(t, "certificate applied", func() error {
		_, err := c.Apply(ctx, manifest, false)
		return err
	})
	// A refused write must not echo the key either.
	_, mismatched := testutil.Cert(t, testutil.CertOptions{Names: []string{"x.example.com"}})
	var refused *client.APIError
	eventually(t, "mismatched pair refused", func() error {
		_, err := c.PutCertificate(ctx, "bad", cert2, mismatched, nil)
		if !errors.As(err, &refused) || refused.Status != http.StatusBadRequest {
			return fmt.Errorf("want a 400, got %v", err)
		}
		return nil
	})

	var answers [][]byte
	for _, p := range []string{"/v1/config", "/v1/config?format=yaml", "/v1/certificates", "/v1/certificates/web",
		"/v1/certificates/other", "/v1/acme_issuers", "/v1/acme_issuers/ca", "/v1/listeners", "/v1/history", "/v1/status", "/v1/snapshot", "/metrics"} {
		for _, a := range admins {
			eventually(t, "GET "+p, func() error {
				resp, err := http.Get("http://" + a + p)
				if err != nil {
					return err
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					return fmt.Errorf("%d %v", resp.StatusCode, err)
				}
				if p == "/v1/snapshot" {
					// Compressed: look at what it decodes to.
					cfg, err := fsm.ReadSnapshot(bytes.NewReader(b))
					if err != nil {
						return err
					}
					if b, err = json.Marshal(cfg); err != nil {
						return err
					}
					if !bytes.Contains(b, []byte(`"certificates"`)) || len(cfg.Certificates) != 2 || cfg.ACMEIssuers["ca"] == nil {
						return errors.New("the snapshot holds no certificates or no issuer")
					}
				}
				answers = append(answers, b)
				return nil
			})
		}
	}
	// The dry run of a manifest with a key answers its diff.
	eventually(t, "dry run", func() error {
		dry, err := c.Apply(ctx, manifest, true)
		if err != nil {
			return err
		}
		b, _ := json.Marshal(dry)
		answers = append(answers, b)
		return nil
	})

	// Every node snapshots, so the state is in snapshot files as well as
	// in the log.
	for _, id := range []string{"n1", "n2", "n3"} {
		n := raftNode(dc, id)
		eventually(t, id+" has applied the certificates", func() error {
			if cfg := n.Config(); len(cfg.Certificates) != 2 || cfg.ACMEIssuers["ca"] == nil {
				return errors.New("not yet")
			}
			return nil
		})
		if err := n.TakeSnapshot(); err != nil {
			t.Fatalf("%s snapshot: %v", id, err)
		}
	}
	if err := dc.StopAll(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	needles := map[string][]byte{}
	for i, k := range []string{key1, key2} {
		blk, _ := pem.Decode([]byte(k))
		if blk == nil {
			t.Fatal("test key is not PEM")
		}
		der := blk.Bytes
		needles[fmt.Sprintf("key %d PEM", i)] = []byte(k)
		needles[fmt.Sprintf("key %d base64 DER", i)] = []byte(base64.StdEncoding.EncodeToString(der)[:48])
		for j, line := range strings.Split(strings.TrimSpace(k), "\n") {
			if strings.HasPrefix(line, "-----") {
				continue
			}
			needles[fmt.Sprintf("key %d PEM line %d", i, j)] = []byte(line)
		}
		needles[fmt.Sprintf("key %d raw DER", i)] = der[len(der)-48:]
		// As JSON carries strings: with \n escaped.
		esc, _ := json.Marshal(k)
		needles[fmt.Sprintf("key %d JSON", i)] = esc[1:60]
	}
	needles["PEM key marker"] = []byte("PRIVATE KEY")
	needles["EAB HMAC key"] = []byte(hmacKey)
	needles["EAB HMAC key prefix"] = []byte(hmacKey[:24])
	needles["EAB HMAC key raw"] = hmacRaw[:24]
	needles["EAB HMAC key std base64"] = []byte(base64.StdEncoding.EncodeToString(hmacRaw)[:24])

	var haystacks []struct {
		what string
		b    []byte
	}
	add := func(what string, b []byte) {
		haystacks = append(haystacks, struct {
			what string
			b    []byte
		}{what, b})
	}
	files := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Base(p) == "secrets.key" {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		add(p, b)
		if cfg, err := fsm.ReadSnapshot(bytes.NewReader(b)); err == nil {
			// A Raft snapshot: search its decompressed document too.
			js, _ := json.Marshal(cfg)
			if len(cfg.Certificates) != 2 || cfg.ACMEIssuers["ca"] == nil {
				t.Errorf("%s: a snapshot without the certificates or the issuer", p)
			}
			add(p+" (decoded)", js)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	snapshots := 0
	for _, h := range haystacks {
		if strings.HasSuffix(h.what, "(decoded)") {
			snapshots++
		}
	}
	if snapshots < 3 || files < 6 {
		t.Fatalf("found %d files and %d snapshots in %s; want the log and a snapshot of each node", files, snapshots, dir)
	}
	add("logs", logs.Bytes())
	for i, a := range answers {
		add(fmt.Sprintf("answer %d", i), a)
	}
	for _, h := range haystacks {
		for what, n := range needles {
			if bytes.Contains(h.b, n) {
				t.Errorf("%s holds %s in clear", h.what, what)
			}
		}
	}
	// No answer holds a sealed key either.
	for i, a := range answers {
		if bytes.Contains(a, []byte("rs1:")) || bytes.Contains(a, []byte("encrypted_key")) || bytes.Contains(a, []byte("encrypted_hmac_key")) {
			t.Errorf("answer %d holds a sealed key", i)
		}
	}
	// The sealed keys are there: the check above looked where they are.
	var sealed int
	for _, h := range haystacks {
		if strings.HasSuffix(h.what, "(decoded)") && bytes.Contains(h.b, []byte(`"encrypted_key":"rs1:`)) &&
			bytes.Contains(h.b, []byte(`"encrypted_hmac_key":"rs1:`)) {
			sealed++
		}
	}
	if sealed < 3 {
		t.Fatalf("only %d decoded snapshots hold sealed keys", sealed)
	}
}
