package dataplane

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/testutil"
)

// The trusted balancer of these tests dials from 127.0.0.2; clients from
// 127.0.0.1 are untrusted.
const (
	trustedSrc   = "127.0.0.2"
	untrustedSrc = "127.0.0.1"
)

func dialFrom(t testing.TB, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// xffBackend answers every request with the X-Forwarded-For it received.
func xffBackend(t testing.TB) *backend {
	return newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Header.Get("X-Forwarded-For"))
	})
}

// askXFF sends n requests on c and returns what X-Forwarded-For the
// backend saw for each.
func askXFF(t testing.TB, c net.Conn, br *bufio.Reader, n int) []string {
	t.Helper()
	var out []string
	for range n {
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: app\r\n\r\n"); err != nil {
			t.Fatalf("write: %v", err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("read response: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		out = append(out, string(b))
	}
	return out
}

// expectClosed: the proxy closes c without answering.
func expectClosed(t testing.TB, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	var ne net.Error
	if len(b) != 0 || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("connection not closed silently: read %q, %v", b, err)
	}
}

func ppConfig(be string, pp *fsm.ProxyProtocol) *fsm.Config {
	cfg := simpleConfig(be)
	cfg.listeners["web"] = fsm.ListenerSpec{ProxyProtocol: pp}
	return cfg.build()
}

func ppCount(t *testing.T, d *Dataplane, result string) float64 {
	return counterValue(t, d.pp.conns.WithLabelValues("web", result))
}

// Headers from the trusted source set the client address of every request
// on their connection, for X-Forwarded-For and the access log; untrusted
// sources that send one are closed; connections without a header keep
// their own address. The sequence repeats, so a header's address could
// only leak into a later connection through reused server state.
func TestProxyProtocolListener(t *testing.T) {
	be := xffBackend(t)
	var logBuf testutil.SyncBuffer
	reg := prometheus.NewRegistry()
	d := startDataplane(t, newFakeSource(ppConfig(be.addr, &fsm.ProxyProtocol{Trusted: []string{trustedSrc + "/32", "fd00::/8"}})), func(o *Options) {
		o.AccessLog = slog.New(slog.NewJSONHandler(&logBuf, nil))
		o.Registerer = reg
	})
	addr := d.ListenerAddr("web")
	v6 := netip.MustParseAddrPort("[2001:db8::5]:4000")
	to := netip.MustParseAddrPort("10.0.0.1:80")
	to6 := netip.MustParseAddrPort("[2001:db8::1]:80")
	type step struct {
		name, src string
		header    []byte
		split     bool // the header arrives in two writes
		want      string
	}
	steps := []step{
		{"v1 from trusted", trustedSrc, []byte("PROXY TCP4 203.0.113.7 10.0.0.1 5000 80\r\n"), false, "203.0.113.7"},
		{"no header from trusted", trustedSrc, nil, false, trustedSrc},
		{"v2 from trusted", trustedSrc, appendProxyV2(nil, v6, to6), true, "2001:db8::5"},
		{"plain from untrusted", untrustedSrc, nil, false, untrustedSrc},
		{"v2 local from trusted", trustedSrc, v2(0x20, 0x00, nil, -1), false, trustedSrc},
		{"v1 unknown from trusted", trustedSrc, []byte("PROXY UNKNOWN\r\n"), false, trustedSrc},
		{"v1 split from trusted", trustedSrc, []byte("PROXY TCP4 198.51.100.9 10.0.0.1 5001 80\r\n"), true, "198.51.100.9"},
		{"untrusted v1", untrustedSrc, []byte("PROXY TCP4 192.0.2.66 10.0.0.1 1 80\r\n"), false, ""},
		{"untrusted v2", untrustedSrc, appendProxyV2(nil, netip.MustParseAddrPort("192.0.2.67:1"), to), true, ""},
		{"malformed from trusted", trustedSrc, []byte("PROXY TCP4 192.0.2.68 10.0.0.1 99999 80\r\n"), false, ""},
		{"too long from trusted", trustedSrc, []byte("PROXY UNKNOWN " + strings.Repeat("x", 120) + "\r\n"), false, ""},
	}
	const rounds = 3
	var answered []string
	for round := range rounds {
		for _, s := range steps {
			c := dialFrom(t, s.src, addr)
			if s.split {
				_, _ = c.Write(s.header[:7])
				_, _ = c.Write(s.header[7:])
			} else if len(s.header) > 0 {
				_, _ = c.Write(s.header)
			}
			if s.want == "" {
				_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: app\r\n\r\n")
				expectClosed(t, c)
				continue
			}
			got := askXFF(t, c, bufio.NewReader(c), 2)
			for _, g := range got {
				if g != s.want {
					t.Errorf("round %d, %s: X-Forwarded-For %q, want %q", round, s.name, g, s.want)
				}
				answered = append(answered, s.want)
			}
			c.Close()
		}
	}
	for result, want := range map[string]float64{
		"header": 3 * rounds, "local": 2 * rounds, "none": 2 * rounds,
		"refused_untrusted": 2 * rounds, "refused_malformed": 2 * rounds,
	} {
		if got := ppCount(t, d, result); got != want {
			t.Errorf("rafter_proxy_protocol_connections_total{result=%q} = %v, want %v", result, got, want)
		}
	}
	// The access log names the same clients, in order.
	waitFor(t, "every request in the access log", func() bool { return len(jsonLines(logBuf.String())) == len(answered) })
	for i, r := range jsonLines(logBuf.String()) {
		if r["client"] != answered[i] {
			t.Errorf("access log record %d: client %v, want %s", i, r["client"], answered[i])
		}
	}
}

// With required, a trusted source must send a header; a silent or slow
// one is closed once the header's timeout passes. Untrusted sources need none.
func TestProxyProtocolRequiredAndTimeout(t *testing.T) {
	be := xffBackend(t)
	d := startDataplane(t, newFakeSource(ppConfig(be.addr, &fsm.ProxyProtocol{
		Trusted: []string{trustedSrc}, Required: true, Timeout: fsm.Duration(300 * time.Millisecond),
	})), nil)
	addr := d.ListenerAddr("web")
	for i := range 3 {
		c := dialFrom(t, trustedSrc, addr)
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: app\r\n\r\n")
		expectClosed(t, c)

		c = dialFrom(t, trustedSrc, addr)
		_, _ = io.WriteString(c, "PROXY TCP4 203.0.113.")
		start := time.Now()
		expectClosed(t, c)
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("a stalled header was closed after %v", took)
		}

		c = dialFrom(t, trustedSrc, addr)
		_, _ = fmt.Fprintf(c, "PROXY TCP4 203.0.113.%d 10.0.0.1 5000 80\r\n", i+1)
		if got := askXFF(t, c, bufio.NewReader(c), 1)[0]; got != fmt.Sprintf("203.0.113.%d", i+1) {
			t.Errorf("X-Forwarded-For %q", got)
		}

		c = dialFrom(t, untrustedSrc, addr)
		if got := askXFF(t, c, bufio.NewReader(c), 1)[0]; got != untrustedSrc {
			t.Errorf("untrusted: X-Forwarded-For %q", got)
		}
	}
	if got := ppCount(t, d, "refused_missing"); got != 3 {
		t.Errorf("refused_missing = %v, want 3", got)
	}
	if got := ppCount(t, d, "refused_io"); got != 3 {
		t.Errorf("refused_io = %v, want 3", got)
	}
}

// On an https listener the header comes before the TLS handshake.
func TestProxyProtocolHTTPS(t *testing.T) {
	be := xffBackend(t)
	certFile, keyFile, pool := writeSelfSigned(t, t.TempDir())
	cfg := simpleConfig(be.addr)
	cfg.listeners["web"] = fsm.ListenerSpec{Protocol: "https", TLS: &fsm.ListenerTLS{CertFile: certFile, KeyFile: keyFile},
		ProxyProtocol: &fsm.ProxyProtocol{Trusted: []string{trustedSrc}}}
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	addr := d.ListenerAddr("web")
	for i, src := range []string{trustedSrc, untrustedSrc, trustedSrc} {
		raw := dialFrom(t, src, addr)
		want := src
		if src == trustedSrc {
			want = fmt.Sprintf("2001:db8::%d", i+1)
			hdr := appendProxyV2(nil, netip.AddrPortFrom(netip.MustParseAddr(want), 999), netip.MustParseAddrPort("[::1]:443"))
			if _, err := raw.Write(hdr); err != nil {
				t.Fatal(err)
			}
		}
		c := tls.Client(raw, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if got := askXFF(t, c, bufio.NewReader(c), 2); got[0] != want || got[1] != want {
			t.Errorf("connection %d from %s: X-Forwarded-For %q, want %s", i, src, got, want)
		}
	}
	// A header from an untrusted source is refused before TLS.
	raw := dialFrom(t, untrustedSrc, addr)
	_, _ = raw.Write(appendProxyV1(nil, netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("10.0.0.1:443")))
	expectClosed(t, raw)
}

// The header may arrive a byte at a time (net.Pipe hands each write to
// one read): the connection waits for all of it, keeps what follows for
// the server, and leaves no byte of it behind in the reused buffer.
func TestProxyConnPartialReads(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newProxyMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	l := newProxyListener(nil, "web", &fsm.ProxyProtocol{Trusted: []string{"10.0.0.0/8"}, Required: true}, m, slog.New(slog.DiscardHandler))
	for i, hdr := range [][]byte{
		[]byte("PROXY TCP4 192.0.2.1 10.0.0.1 4000 80\r\n"),
		appendProxyV2(nil, netip.MustParseAddrPort("[2001:db8::9]:4001"), netip.MustParseAddrPort("[2001:db8::1]:80")),
		[]byte("PROXY TCP4 192.0.2.3 10.0.0.1 4002 80\r\n"),
	} {
		client, server := net.Pipe()
		pc := &proxyConn{Conn: server, l: l, trusted: true}
		payload := fmt.Sprintf("GET /%d HTTP/1.1\r\n\r\n", i)
		go func() {
			for _, b := range hdr {
				_, _ = client.Write([]byte{b})
			}
			_, _ = io.WriteString(client, payload)
			client.Close()
		}()
		_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(pc)
		if err != nil {
			t.Fatalf("header %d: %v", i, err)
		}
		if string(got) != payload {
			t.Fatalf("header %d: the server read %q, want %q", i, got, payload)
		}
		h, _ := parseProxy(hdr)
		if ra := pc.RemoteAddr().String(); ra != h.src.String() {
			t.Fatalf("header %d: remote address %s, want %s", i, ra, h.src)
		}
		if pc.buf != nil || pc.pending != nil {
			t.Fatalf("header %d: buffer still held after its bytes were read", i)
		}
	}
	// Buffers go back to the pool cleared.
	b := l.bufs.Get().(*[proxyBufSize]byte)
	for _, c := range b {
		if c != 0 {
			t.Fatalf("a pooled buffer holds a previous connection's bytes")
		}
	}
}

// Hash balancing on client_ip hashes the header's address: clients that
// all reach rafter from one balancer spread over the backends, and each
// client sticks to its backend.
func TestProxyProtocolHashClientIP(t *testing.T) {
	b1, b2 := newBackend(t, nil), newBackend(t, nil)
	cfg := simpleConfig(b1.addr, b2.addr)
	cfg.listeners["web"] = fsm.ListenerSpec{ProxyProtocol: &fsm.ProxyProtocol{Trusted: []string{trustedSrc}}}
	p := cfg.pools["app"]
	p.Balancer, p.Hash = fsm.BalancerHash, &fsm.HashPolicy{ClientIP: true}
	cfg.pools["app"] = p
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	backendOf := func(client string) string {
		c := dialFrom(t, trustedSrc, d.ListenerAddr("web"))
		defer c.Close()
		fmt.Fprintf(c, "PROXY TCP4 %s 10.0.0.1 5000 80\r\nGET / HTTP/1.1\r\nHost: app\r\n\r\n", client)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s: %v", client, err)
		}
		resp.Body.Close()
		return resp.Header.Get("X-Backend")
	}
	const clients = 40
	first := map[string]string{}
	used := map[string]int{}
	for round := range 2 {
		for i := range clients {
			client := fmt.Sprintf("198.51.100.%d", i+1)
			be := backendOf(client)
			if round == 0 {
				first[client] = be
				used[be]++
			} else if be != first[client] {
				t.Errorf("client %s moved from backend %s to %s", client, first[client], be)
			}
		}
	}
	if used[b1.addr] == 0 || used[b2.addr] == 0 {
		t.Fatalf("%d clients behind one balancer all hashed to one backend: %v", clients, used)
	}
}
