package systemtest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rafterlb/rafter/internal/testutil"
)

// idleConns is how many idle keep-alive client connections
// BenchmarkAgentMemory holds open.
const idleConns = 2000

// vmRSS reads VmRSS of process pid from /proc, in bytes.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// peakRSS samples pid's RSS every 100 ms for the given span and returns
// the highest sample: what the idle agent holds, its garbage included.
func peakRSS(tb testing.TB, pid int, span time.Duration) int64 {
	tb.Helper()
	var rss int64
	for end := time.Now().Add(span); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		v, err := vmRSS(pid)
		if err != nil {
			tb.Fatal(err)
		}
		rss = max(rss, v)
	}
	return rss
}

// packagedRafter builds rafter as the .deb and .rpm packages ship it
// (make package: static, CGO_ENABLED=0, -trimpath -ldflags='-s -w').
func packagedRafter(tb testing.TB) string {
	tb.Helper()
	out := filepath.Join(tb.TempDir(), "rafter")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "github.com/rafterlb/rafter/cmd/rafter")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("building rafter: %v\n%s", err, b)
	}
	return out
}

// BenchmarkAgentMemory starts one `rafter agent` (a one-node cluster) as
// the packages ship it and reports its resident memory from
// /proc/PID/status: idle-KiB, the peak over 5 s after start;
// settled-KiB, the peak over the 3 s after a further 3 s, once the agent
// has trimmed again after settling (agent.settleDelay); then, with
// a listener and a route added, conns-KiB with 2,000 idle keep-alive
// client connections open (each sent one request), and conn-bytes, the
// growth per connection.
func BenchmarkAgentMemory(b *testing.B) {
	rafter := packagedRafter(b)
	var idle, settled, perConn, withConns float64
	for b.Loop() {
		i, s, pc, wc := agentMemory(b, rafter)
		idle, settled, perConn, withConns = idle+i, settled+s, perConn+pc, withConns+wc
	}
	n := float64(b.N)
	b.ReportMetric(idle/n/1024, "idle-KiB")
	b.ReportMetric(settled/n/1024, "settled-KiB")
	b.ReportMetric(withConns/n/1024, "conns-KiB")
	b.ReportMetric(perConn/n, "conn-bytes")
}

func agentMemory(b *testing.B, rafter string) (idle, settled, perConn, withConns float64) {
	c := StartCluster(b, rafter, 1)
	a := c.Leader(60 * time.Second)
	pid := a.process().Pid()
	idleRSS := peakRSS(b, pid, 5*time.Second)
	peakRSS(b, pid, 3*time.Second)
	settledRSS := peakRSS(b, pid, 3*time.Second)

	ports, err := testutil.FreePorts([]string{a.IP}, 1)
	if err != nil {
		b.Fatal(err)
	}
	port := ports[0]
	manifest := fmt.Sprintf("kind: listener\nname: web\nspec: {port: %d, limits: {idle_timeout: 5m}}\n---\n"+
		"kind: route\nname: hello\nspec: {listener: web, action: {respond: {status: 200, body: hello}}}\n", port)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if r, err := c.Do(ctx, a, "POST", "/v1/apply", []byte(manifest)); err != nil || r.Status != http.StatusOK {
		b.Fatalf("apply: %v %+v", err, r)
	}
	addr := net.JoinHostPort(a.IP, strconv.Itoa(port))
	testutil.Eventually(b, 30*time.Second, "listener serving", func() error {
		conn, err := oneRequest(addr)
		if err == nil {
			conn.Close()
		}
		return err
	})
	before := peakRSS(b, pid, 2*time.Second)
	conns := make([]net.Conn, 0, idleConns)
	defer func() {
		for _, conn := range conns {
			conn.Close()
		}
	}()
	for range idleConns {
		conn, err := oneRequest(addr)
		if err != nil {
			b.Fatalf("connection %d: %v", len(conns), err)
		}
		conns = append(conns, conn)
	}
	after := peakRSS(b, pid, 3*time.Second)
	// Every connection must still be open (none closed by the proxy).
	for i, conn := range conns {
		if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			b.Fatalf("connection %d closed while idle: %v", i, err)
		}
	}
	return float64(idleRSS), float64(settledRSS), float64(after-before) / idleConns, float64(after)
}

// oneRequest opens a connection to addr, sends one keep-alive request
// and reads the whole answer; the connection stays open.
func oneRequest(addr string) (net.Conn, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		conn.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	var body bytes.Buffer
	_, err = body.ReadFrom(resp.Body)
	resp.Body.Close()
	if err == nil && (resp.StatusCode != http.StatusOK || body.String() != "hello") {
		err = fmt.Errorf("answer %d %q", resp.StatusCode, body.String())
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}
