package dataplane

import (
	"net/http"
	"strings"
	"testing"

	"github.com/rafterlb/rafter/fsm"
)

// proxyFixture is a dataplane in front of one recording backend.
type proxyFixture struct {
	be   *backend
	d    *Dataplane
	addr string
}

func newProxyFixture(t *testing.T, h func(w http.ResponseWriter, r *http.Request), mod func(*config)) *proxyFixture {
	be := newBackend(t, h)
	cfg := simpleConfig(be.addr)
	if mod != nil {
		mod(&cfg)
	}
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	addr := d.ListenerAddr("web")
	if addr == "" {
		t.Fatalf("listener web not bound")
	}
	return &proxyFixture{be: be, d: d, addr: addr}
}

func TestForwardingHygiene(t *testing.T) {
	noCT := func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = nil // net/http would sniff one
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Proxy-Authenticate", "Basic")
		w.Header().Set("X-Resp-Kept", "1")
		_, _ = w.Write([]byte("hello"))
	}
	f := newProxyFixture(t, noCT, nil)
	hopHeaders := "Connection: keep-alive, X-Custom-Hop\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n" +
		"Proxy-Authorization: Basic Zm9v\r\nTE: trailers\r\nTrailer: X-T\r\nUpgrade: h2c\r\nX-Custom-Hop: secret\r\n"
	cases := []struct {
		name       string
		req        string
		wantStatus int
		check      func(t *testing.T, s seen, resp *http.Response)
	}{
		{
			name:       "raw path and query forwarded byte for byte",
			req:        "GET /public/../admin/%2e%2e/x//y?a=%2F&b HTTP/1.1\r\nHost: app\r\n\r\n",
			wantStatus: 200,
			check: func(t *testing.T, s seen, _ *http.Response) {
				if s.URI != "/public/../admin/%2e%2e/x//y?a=%2F&b" {
					t.Errorf("backend URI = %q", s.URI)
				}
			},
		},
		{
			name:       "hop-by-hop request fields and Connection-listed fields stripped",
			req:        "GET / HTTP/1.1\r\nHost: app\r\n" + hopHeaders + "X-Kept: yes\r\nx-lower-case: v\r\n\r\n",
			wantStatus: 200,
			check: func(t *testing.T, s seen, resp *http.Response) {
				for _, h := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "Te", "Trailer", "Upgrade", "X-Custom-Hop"} {
					if v, ok := s.Header[http.CanonicalHeaderKey(h)]; ok {
						t.Errorf("backend saw %s: %q", h, v)
					}
				}
				if s.Header.Get("X-Kept") != "yes" || s.Header.Get("X-Lower-Case") != "v" {
					t.Errorf("end-to-end fields lost: %v", s.Header)
				}
				for _, h := range []string{"X-Resp-Hop", "Keep-Alive", "Proxy-Authenticate"} {
					if v, ok := resp.Header[h]; ok {
						t.Errorf("client saw response %s: %q", h, v)
					}
				}
				if resp.Header.Get("X-Resp-Kept") != "1" {
					t.Errorf("end-to-end response field lost: %v", resp.Header)
				}
				if got := resp.Header.Get("Via"); got != "1.1 rafter" {
					t.Errorf("response Via = %q", got)
				}
			},
		},
		{
			name:       "no default Content-Type or User-Agent either way",
			req:        "POST /x HTTP/1.1\r\nHost: app\r\nContent-Length: 3\r\n\r\nabc",
			wantStatus: 200,
			check: func(t *testing.T, s seen, resp *http.Response) {
				if _, ok := s.Header["Content-Type"]; ok {
					t.Errorf("backend saw Content-Type %q", s.Header["Content-Type"])
				}
				if _, ok := s.Header["User-Agent"]; ok {
					t.Errorf("backend saw User-Agent %q", s.Header["User-Agent"])
				}
				if s.Body != "abc" {
					t.Errorf("body = %q", s.Body)
				}
				if _, ok := resp.Header["Content-Type"]; ok {
					t.Errorf("client saw Content-Type %q", resp.Header["Content-Type"])
				}
			},
		},
		{
			name:       "X-Forwarded-* appended on an internal listener, Via added",
			req:        "GET / HTTP/1.1\r\nHost: app.example.com\r\nX-Forwarded-For: 10.0.0.1\r\nVia: 1.0 edge\r\n\r\n",
			wantStatus: 200,
			check: func(t *testing.T, s seen, _ *http.Response) {
				if got := s.Header.Get("X-Forwarded-For"); got != "10.0.0.1, 127.0.0.1" {
					t.Errorf("X-Forwarded-For = %q", got)
				}
				if got := s.Header.Get("X-Forwarded-Proto"); got != "http" {
					t.Errorf("X-Forwarded-Proto = %q", got)
				}
				if got := s.Header.Get("X-Forwarded-Host"); got != "app.example.com" {
					t.Errorf("X-Forwarded-Host = %q", got)
				}
				if got := s.Header.Get("Via"); got != "1.0 edge, 1.1 rafter" {
					t.Errorf("Via = %q", got)
				}
				if s.Host != "app.example.com" {
					t.Errorf("Host = %q", s.Host)
				}
			},
		},
		{
			name:       "client Connection: close is not forwarded",
			req:        "GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n",
			wantStatus: 200,
			check: func(t *testing.T, s seen, _ *http.Response) {
				if v, ok := s.Header["Connection"]; ok {
					t.Errorf("backend saw Connection %q", v)
				}
			},
		},
		{
			name:       "HTTP/1.0 without Host",
			req:        "GET /old HTTP/1.0\r\n\r\n",
			wantStatus: 200,
			check: func(t *testing.T, s seen, _ *http.Response) {
				if s.URI != "/old" || s.Host != f.be.addr {
					t.Errorf("backend saw %s %s Host %q", s.Method, s.URI, s.Host)
				}
			},
		},
		{
			name:       "absolute-form target routes and forwards origin-form",
			req:        "GET http://abs.example/p?q=1 HTTP/1.1\r\nHost: other\r\n\r\n",
			wantStatus: 200,
			check: func(t *testing.T, s seen, _ *http.Response) {
				if s.URI != "/p?q=1" || s.Host != "abs.example" {
					t.Errorf("backend saw %s Host %q", s.URI, s.Host)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.be.requests())
			resp, _ := rawExchange(t, f.addr, tc.req)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			reqs := f.be.requests()
			if len(reqs) != before+1 {
				t.Fatalf("backend saw %d requests, want 1", len(reqs)-before)
			}
			tc.check(t, reqs[len(reqs)-1], resp)
		})
	}
}

func TestRejectedBeforeBackend(t *testing.T) {
	f := newProxyFixture(t, nil, func(c *config) {
		l := c.listeners["web"]
		l.Limits.MaxHeaderBytes = 4096
		l.Limits.MaxBodyBytes = 1000
		c.listeners["web"] = l
	})
	cases := []struct {
		name string
		req  string
		want int
	}{
		{"CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"TE and CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", 400},
		{"duplicate CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400},
		{"conflicting CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
		{"CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", 400},
		{"bad chunk size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400},
		{"chunk longer than declared", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcdef\r\n0\r\n\r\n", 400},
		{"TE not chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
		{"TE on HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"missing Host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"duplicate Host", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"header too large", "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("a", 5000) + "\r\n\r\n", 431},
		{"body too large", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n" + strings.Repeat("b", 2000), 413},
		{"chunked body too large", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n" + strings.Repeat("b", 2000) + "\r\n0\r\n\r\n", 413},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, _ := rawExchange(t, f.addr, tc.req)
			if resp.StatusCode != tc.want {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.want)
			}
			if n := len(f.be.requests()); n != 0 {
				t.Errorf("backend saw %d requests: %+v", n, f.be.requests())
			}
		})
	}
}

func TestChunkedRequestForwarded(t *testing.T) {
	f := newProxyFixture(t, nil, nil)
	resp, _ := rawExchange(t, f.addr, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	reqs := f.be.requests()
	if len(reqs) != 1 || reqs[0].Body != "abcde" {
		t.Fatalf("backend saw %+v", reqs)
	}
}

func TestEdgeListenerOverwritesForwarded(t *testing.T) {
	f := newProxyFixture(t, nil, func(c *config) {
		l := c.listeners["web"]
		l.Edge = true
		c.listeners["web"] = l
	})
	resp, _ := rawExchange(t, f.addr, "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\n"+
		"x-forwarded-proto: https\r\nX_Forwarded_Proto: https\r\nX_Forwarded_Host: evil\r\nx_forwarded_for: 6.6.6.6\r\nForwarded: for=6.6.6.6;proto=https;host=evil\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	s := f.be.requests()[0]
	if got := s.Header.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q", got)
	}
	if got := s.Header.Values("X-Forwarded-Proto"); len(got) != 1 || got[0] != "http" {
		t.Errorf("X-Forwarded-Proto = %q", got)
	}
	if got := s.Header.Values("X-Forwarded-Host"); len(got) != 1 || got[0] != "a" {
		t.Errorf("X-Forwarded-Host = %q", got)
	}
	for _, k := range []string{"X_Forwarded_Proto", "X_Forwarded_Host", "x_forwarded_for", "Forwarded"} {
		if got, ok := s.Header[k]; ok {
			t.Errorf("client-supplied %s reached the backend: %q", k, got)
		}
	}
}

func TestActions(t *testing.T) {
	f := newProxyFixture(t, nil, func(c *config) {
		c.routes["redir"] = fsm.RouteSpec{Listener: "web", Match: fsm.RouteMatch{Path: fsm.PathMatch{Prefix: "/old"}},
			Action: fsm.RouteAction{Redirect: &fsm.Redirect{Scheme: "https", Code: 308}}}
		c.routes["teapot"] = fsm.RouteSpec{Listener: "web", Match: fsm.RouteMatch{Path: fsm.PathMatch{Exact: "/tea"}},
			Action: fsm.RouteAction{Respond: &fsm.Respond{Status: 418, Body: "short and stout", Headers: map[string]string{"X-Tea": "1"}}}}
		c.routes["rewrite"] = fsm.RouteSpec{Listener: "web", Match: fsm.RouteMatch{Path: fsm.PathMatch{Prefix: "/v1/"}},
			Rewrite:            &fsm.Rewrite{PathPrefix: "/internal/", Host: "svc.internal"},
			HeadersAdd:         map[string]string{"X-Added": "yes"},
			HeadersRemove:      []string{"x-secret"},
			ResponseHeadersAdd: map[string]string{"X-Resp-Added": "1"}, ResponseHeadersRemove: []string{"x-backend"},
			Action: fsm.RouteAction{Split: []fsm.WeightedPool{{Pool: "app", Weight: 1}}}}
	})
	resp, _ := rawExchange(t, f.addr, "GET /old/x?y=1 HTTP/1.1\r\nHost: site.example\r\n\r\n")
	if resp.StatusCode != 308 || resp.Header.Get("Location") != "https://site.example/old/x?y=1" {
		t.Errorf("redirect = %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body := rawExchange(t, f.addr, "GET /tea HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp.StatusCode != 418 || body != "short and stout" || resp.Header.Get("X-Tea") != "1" {
		t.Errorf("respond = %d %q %v", resp.StatusCode, body, resp.Header)
	}
	resp, _ = rawExchange(t, f.addr, "GET /v1/users?id=2 HTTP/1.1\r\nHost: a\r\nX-Secret: s\r\n\r\n")
	if resp.StatusCode != 200 || resp.Header.Get("X-Resp-Added") != "1" || resp.Header.Get("X-Backend") != "" {
		t.Errorf("rewrite response = %d %v", resp.StatusCode, resp.Header)
	}
	if n := len(f.be.requests()); n != 1 {
		t.Fatalf("backend saw %d requests", n)
	}
	s := f.be.requests()[0]
	if s.URI != "/internal/users?id=2" || s.Host != "svc.internal" || s.Header.Get("X-Added") != "yes" || s.Header.Get("X-Secret") != "" {
		t.Errorf("backend saw %s Host %q %v", s.URI, s.Host, s.Header)
	}
}
