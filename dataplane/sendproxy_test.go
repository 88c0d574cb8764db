package dataplane

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

// proxyAwareBackend reads a PROXY header at the start of each connection
// and answers every request on it with "<header source> <X-Forwarded-For>".
func proxyAwareBackend(t testing.TB) (string, *atomic.Int64) {
	var conns atomic.Int64
	addr := serveConns(t, 10*time.Second, func(c net.Conn, br *bufio.Reader) {
		conns.Add(1)
		first, err := br.Peek(len(proxyV2Sig))
		if err != nil {
			return
		}
		var raw []byte
		if string(first) == proxyV2Sig {
			fixed, err := br.Peek(16)
			if err != nil {
				return
			}
			raw = make([]byte, 16+int(binary.BigEndian.Uint16(fixed[14:16])))
			if _, err := io.ReadFull(br, raw); err != nil {
				return
			}
		} else {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			raw = line
		}
		h, err := parseProxy(raw)
		if err != nil || h.n != len(raw) {
			_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
			return
		}
		src := "local"
		if !h.local {
			src = h.src.Addr().String()
		}
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			body := src + " " + req.Header.Get("X-Forwarded-For")
			_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		}
	})
	return addr, &conns
}

// A pool with send_proxy_protocol tells its backend each client's address
// in a PROXY header, on backend connections no other client shares: the
// requests of two clients interleaved arrive on two connections, each
// with its own client's header, even when the client address came from
// a trusted balancer's own header.
func TestSendProxyProtocol(t *testing.T) {
	for _, v := range []string{fsm.ProxyProtocolV1, fsm.ProxyProtocolV2} {
		t.Run(v, func(t *testing.T) {
			addr, conns := proxyAwareBackend(t)
			cfg := simpleConfig(addr)
			cfg.listeners["web"] = fsm.ListenerSpec{ProxyProtocol: &fsm.ProxyProtocol{Trusted: []string{trustedSrc}}}
			cfg.pools["app"] = fsm.PoolSpec{Backends: []fsm.Backend{{Addr: addr}}, SendProxyProtocol: v}
			d := startDataplane(t, newFakeSource(cfg.build()), nil)
			proxy := d.ListenerAddr("web")
			const rounds = 3
			for round := range rounds {
				a := dialFrom(t, trustedSrc, proxy)
				fmt.Fprintf(a, "PROXY TCP4 203.0.113.%d 10.0.0.1 5000 80\r\n", round+1)
				b := dialFrom(t, untrustedSrc, proxy)
				ar, br := bufio.NewReader(a), bufio.NewReader(b)
				wantA := fmt.Sprintf("203.0.113.%d 203.0.113.%d", round+1, round+1)
				wantB := untrustedSrc + " " + untrustedSrc
				for i := range 3 {
					if got := askXFF(t, a, ar, 1)[0]; got != wantA {
						t.Errorf("round %d, request %d of the balanced client: backend saw %q, want %q", round, i, got, wantA)
					}
					if got := askXFF(t, b, br, 1)[0]; got != wantB {
						t.Errorf("round %d, request %d of the direct client: backend saw %q, want %q", round, i, got, wantB)
					}
				}
				a.Close()
				b.Close()
				if got, want := conns.Load(), int64(2*(round+1)); got != want {
					t.Errorf("after round %d: %d backend connections, want %d (one per client connection)", round, got, want)
				}
			}
			waitFor(t, "private clients dropped with their client connections", func() bool { return d.private.n.Load() == 0 })
		})
	}
}

// A pool without send_proxy_protocol sends no header and shares its
// connections between clients, as before.
func TestNoSendProxyProtocolSharesConnections(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.Header.Get("X-Forwarded-For"), "PROXY") {
			w.WriteHeader(500)
		}
	})
	d := startDataplane(t, newFakeSource(simpleConfig(be.addr).build()), nil)
	for range 3 {
		c := dialFrom(t, untrustedSrc, d.ListenerAddr("web"))
		if got := askXFF(t, c, bufio.NewReader(c), 1); len(got) != 1 {
			t.Fatal("no answer")
		}
		c.Close()
	}
	if n := d.private.n.Load(); n != 0 {
		t.Fatalf("%d client connections got private backend clients", n)
	}
}

// A client connection balanced over many backends holds at most
// maxPrivatePerConn of their connections at a time.
func TestSendProxyProtocolBoundsConnectionsPerClient(t *testing.T) {
	var addrs []string
	var counts []*atomic.Int64
	for range maxPrivatePerConn + 3 {
		a, n := proxyAwareBackend(t)
		addrs, counts = append(addrs, a), append(counts, n)
	}
	cfg := simpleConfig(addrs...)
	p := cfg.pools["app"]
	p.SendProxyProtocol = fsm.ProxyProtocolV1
	cfg.pools["app"] = p
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	c := dialFrom(t, untrustedSrc, d.ListenerAddr("web"))
	br := bufio.NewReader(c)
	for i := range 3 * len(addrs) {
		if got := askXFF(t, c, br, 1)[0]; got != untrustedSrc+" "+untrustedSrc {
			t.Fatalf("request %d: backend saw %q", i, got)
		}
		if held := privateHeld(d); held > maxPrivatePerConn {
			t.Fatalf("request %d: one client connection holds %d private clients", i, held)
		}
	}
	total := int64(0)
	for _, n := range counts {
		total += n.Load()
	}
	if total <= int64(len(addrs)) {
		t.Fatalf("%d backend connections for %d backends: the bound never closed one", total, len(addrs))
	}
}

// privateHeld is the most private clients any client connection holds.
func privateHeld(d *Dataplane) int {
	d.private.mu.Lock()
	defer d.private.mu.Unlock()
	most := 0
	for _, cs := range d.private.byConn {
		most = max(most, len(cs))
	}
	return most
}
