package dataplane

import (
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/rafterlb/rafter/internal/testutil"
)

const (
	clientTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientParent = "00f067aa0ba902b7"
	clientTP     = "00-" + clientTrace + "-" + clientParent + "-01"
)

func TestParseTraceparent(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{clientTP, true},
		{"00-" + clientTrace + "-" + clientParent + "-00", true},
		{"01-" + clientTrace + "-" + clientParent + "-01-future", true}, // a later version may add fields
		{"01-" + clientTrace + "-" + clientParent + "-01", true},
		{"00-" + clientTrace + "-" + clientParent + "-01-x", false}, // version 00 is exactly 55 bytes
		{"01-" + clientTrace + "-" + clientParent + "-01x", false},
		{"ff-" + clientTrace + "-" + clientParent + "-01", false},
		{"00-" + strings.ToUpper(clientTrace) + "-" + clientParent + "-01", false},
		{"00-00000000000000000000000000000000-" + clientParent + "-01", false},
		{"00-" + clientTrace + "-0000000000000000-01", false},
		{"00-" + clientTrace + "-" + clientParent + "-0g", false},
		{"00_" + clientTrace + "-" + clientParent + "-01", false},
		{"00-" + clientTrace[:31] + "-" + clientParent + "-01", false},
		{"", false},
		{"garbage", false},
	} {
		var c traceContext
		if got := parseTraceparent([]byte(tc.in), &c); got != tc.ok {
			t.Errorf("parseTraceparent(%q) = %v, want %v", tc.in, got, tc.ok)
			continue
		}
		if tc.ok && hex.EncodeToString(c.traceID[:]) != clientTrace {
			t.Errorf("parseTraceparent(%q): trace id %x", tc.in, c.traceID)
		}
	}
}

func TestValidRequestID(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"abc-123", true},
		{"f47ac10b-58cc-4372-a567-0e02b2c3d479", true},
		{"01HZX3V8Q9J5W2K7Y4T6R1M0NB", true},
		{"dGVzdA==/+:._@", true},
		{strings.Repeat("a", MaxRequestIDLen), true},
		{strings.Repeat("a", MaxRequestIDLen+1), false},
		{"", false},
		{"a b", false},
		{`a"b`, false},
		{"<script>", false},
		{"a,b", false},
		{"é", false},
	} {
		if got := validRequestID([]byte(tc.in)); got != tc.ok {
			t.Errorf("validRequestID(%q) = %v, want %v", tc.in, got, tc.ok)
		}
	}
}

// get sends a GET with fields on k and returns the response.
func getWith(k *keepAliveConn, path string, fields ...string) *http.Response {
	req := "GET " + path + " HTTP/1.1\r\nHost: app\r\n"
	for _, f := range fields {
		req += f + "\r\n"
	}
	resp, _ := k.do(req + "\r\n")
	return resp
}

// lastSeen is the newest request the backend got.
func lastSeen(t *testing.T, be *backend) seen {
	t.Helper()
	reqs := be.requests()
	if len(reqs) == 0 {
		t.Fatal("the backend got no request")
	}
	return reqs[len(reqs)-1]
}

// TestRequestIDAndTraceparent sends a sequence of requests with and
// without ids, valid and not, on one kept-alive client connection (so the
// proxy's pooled request state and its backend connection are reused), and
// checks what the backend got and what the client got back. No request may
// carry an id of the one before it.
func TestRequestIDAndTraceparent(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		// A backend that echoes the id must not make the client get two.
		w.Header().Set("X-Request-Id", r.Header.Get("X-Request-Id"))
		_, _ = io.WriteString(w, "ok")
	})
	d := startDataplane(t, newFakeSource(simpleConfig(be.addr).build()), nil)
	k := dialKeepAlive(t, d.ListenerAddr("web"))
	long := strings.Repeat("x", MaxRequestIDLen+1)
	prevIDs := map[string]bool{}
	prevTraces := map[string]bool{}
	for round := 0; round < 3; round++ {
		for _, tc := range []struct {
			name       string
			fields     []string
			keepID     string // the client's id, when it must be kept
			keepTP     bool   // the client's traceparent is passed on unchanged
			tracestate bool   // tracestate reaches the backend
		}{
			{name: "both given", fields: []string{"X-Request-Id: client-id-1", "traceparent: " + clientTP, "tracestate: k=v"},
				keepID: "client-id-1", keepTP: true, tracestate: true},
			{name: "none given"},
			{name: "id over the bound", fields: []string{"X-Request-Id: " + long}},
			{name: "id with a bad byte", fields: []string{"X-Request-Id: a<b", "traceparent: " + clientTP}, keepTP: true},
			{name: "malformed traceparent", fields: []string{"X-Request-Id: abc", "traceparent: 00-" + clientTrace + "-zz-01", "tracestate: k=v"},
				keepID: "abc"},
			{name: "two traceparents", fields: []string{"traceparent: " + clientTP, "traceparent: " + clientTP}},
			{name: "two request ids", fields: []string{"X-Request-Id: a", "X-Request-Id: b"}},
			{name: "upper-case traceparent", fields: []string{"Traceparent: 00-" + strings.ToUpper(clientTrace) + "-" + clientParent + "-01"}},
		} {
			n := len(be.requests())
			resp := getWith(k, "/r", tc.fields...)
			if resp.StatusCode != 200 {
				t.Fatalf("%s: status %d", tc.name, resp.StatusCode)
			}
			if len(be.requests()) != n+1 {
				t.Fatalf("%s: the backend got %d requests, want 1", tc.name, len(be.requests())-n)
			}
			got := lastSeen(t, be)
			ids, tps := got.Header.Values("X-Request-Id"), got.Header.Values("Traceparent")
			if len(ids) != 1 || len(tps) != 1 {
				t.Fatalf("%s: backend got X-Request-Id %q, traceparent %q; want one of each", tc.name, ids, tps)
			}
			id, tp := ids[0], tps[0]
			if back := resp.Header.Values("X-Request-Id"); len(back) != 1 || back[0] != id {
				t.Errorf("%s: client got X-Request-Id %q, the backend %q", tc.name, back, id)
			}
			var c traceContext
			if !parseTraceparent([]byte(tp), &c) || !strings.HasPrefix(tp, "00-") {
				t.Fatalf("%s: backend got an invalid traceparent %q", tc.name, tp)
			}
			trace := tp[3:35]
			switch {
			case tc.keepTP && tp != clientTP:
				t.Errorf("%s: traceparent %q, want the client's %q passed on", tc.name, tp, clientTP)
			case !tc.keepTP && (trace == clientTrace || prevTraces[trace]):
				t.Errorf("%s: traceparent %q reuses a trace id; want a new trace", tc.name, tp)
			}
			if !tc.keepTP {
				prevTraces[trace] = true
			}
			switch {
			case tc.keepID != "" && id != tc.keepID:
				t.Errorf("%s: request id %q, want the client's %q", tc.name, id, tc.keepID)
			case tc.keepID == "" && (prevIDs[id] || len(id) != 32 || id != trace && !tc.keepTP):
				t.Errorf("%s: request id %q; want a new one equal to the trace id %s", tc.name, id, trace)
			case tc.keepID == "" && tc.keepTP && id != clientTrace:
				t.Errorf("%s: request id %q; want the made id to be the client's trace id", tc.name, id)
			}
			if tc.keepID == "" && !tc.keepTP {
				prevIDs[id] = true
			}
			if ts := got.Header.Get("Tracestate"); (ts != "") != tc.tracestate {
				t.Errorf("%s: backend got tracestate %q", tc.name, ts)
			}
		}
	}
	// An answer the proxy makes itself carries the id too.
	resp, _ := rawExchange(t, d.ListenerAddr("web"), "CONNECT app:443 HTTP/1.1\r\nHost: app:443\r\nX-Request-Id: for-a-501\r\n\r\n")
	if resp.StatusCode != http.StatusNotImplemented || resp.Header.Get("X-Request-Id") != "for-a-501" {
		t.Errorf("proxy-made answer %d: X-Request-Id %q, want 501 with for-a-501", resp.StatusCode, resp.Header.Get("X-Request-Id"))
	}
}

// spanRecorder is a SpanSink keeping what it got.
type spanRecorder struct {
	mu    sync.Mutex
	spans []Span
}

func (r *spanRecorder) ExportSpan(s *Span) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.spans = append(r.spans, *s)
	return true
}

func (r *spanRecorder) all() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// With spans exported, the backend's parent is the proxy hop's span, and
// that span's parent is the client's; unsampled requests export nothing
// and keep the client's parent.
func TestTraceparentWithSpans(t *testing.T) {
	be := newBackend(t, nil)
	rec := &spanRecorder{}
	d := startDataplane(t, newFakeSource(simpleConfig(be.addr).build()), func(o *Options) { o.Spans = rec })
	k := dialKeepAlive(t, d.ListenerAddr("web"))

	getWith(k, "/a", "traceparent: "+clientTP)
	tp := lastSeen(t, be).Header.Get("Traceparent")
	spans := rec.all()
	if len(spans) != 1 {
		t.Fatalf("%d spans exported, want 1", len(spans))
	}
	s := spans[0]
	if hex.EncodeToString(s.TraceID[:]) != clientTrace || hex.EncodeToString(s.ParentID[:]) != clientParent {
		t.Errorf("span trace %x parent %x, want the client's %s %s", s.TraceID, s.ParentID, clientTrace, clientParent)
	}
	if want := "00-" + clientTrace + "-" + hex.EncodeToString(s.SpanID[:]) + "-01"; tp != want {
		t.Errorf("backend got traceparent %q, want %q (the proxy span as parent)", tp, want)
	}
	if s.Route != "app" || s.Pool != "app" || s.Backend != be.addr || s.Status != 200 || s.Method != "GET" || !s.End.After(s.Start) {
		t.Errorf("span %+v", s)
	}

	unsampled := "00-" + clientTrace + "-" + clientParent + "-00"
	getWith(k, "/b", "traceparent: "+unsampled)
	if got := lastSeen(t, be).Header.Get("Traceparent"); got != unsampled {
		t.Errorf("unsampled: backend got %q, want %q", got, unsampled)
	}
	getWith(k, "/c")
	tp = lastSeen(t, be).Header.Get("Traceparent")
	spans = rec.all()
	if len(spans) != 2 {
		t.Fatalf("%d spans exported, want 2 (none for the unsampled request)", len(spans))
	}
	s = spans[1]
	if s.ParentID != ([8]byte{}) || tp != "00-"+hex.EncodeToString(s.TraceID[:])+"-"+hex.EncodeToString(s.SpanID[:])+"-01" {
		t.Errorf("started trace: span %x/%x parent %x, backend got %q", s.TraceID, s.SpanID, s.ParentID, tp)
	}
}

// jsonLines parses the JSON records in a log.
func jsonLines(s string) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err == nil {
			out = append(out, m)
		}
	}
	return out
}

// The access log records bytes both ways, the upstream address and
// times, the user agent and the request and trace ids.
func TestAccessLogFields(t *testing.T) {
	be := newBackend(t, nil)
	var buf testutil.SyncBuffer
	d := startDataplane(t, newFakeSource(simpleConfig(be.addr).build()), func(o *Options) {
		o.AccessLog = slog.New(slog.NewJSONHandler(&buf, nil))
	})
	k := dialKeepAlive(t, d.ListenerAddr("web"))
	for i := 0; i < 2; i++ {
		req := "POST /p HTTP/1.1\r\nHost: app\r\nUser-Agent: probe/1.0\r\nX-Request-Id: rid-7\r\ntraceparent: " + clientTP +
			"\r\nContent-Length: 5\r\n\r\nhello"
		if resp, _ := k.do(req); resp.StatusCode != 200 {
			t.Fatalf("POST: status %d", resp.StatusCode)
		}
	}
	waitFor(t, "two access log records", func() bool { return len(jsonLines(buf.String())) == 2 })
	recs := jsonLines(buf.String())
	for i, r := range recs {
		for k, want := range map[string]any{
			"bytes_in": 5.0, "bytes_out": 2.0, "upstream_addr": be.addr, "user_agent": "probe/1.0",
			"request_id": "rid-7", "trace_id": clientTrace, "status": 200.0, "backend": be.addr,
		} {
			if r[k] != want {
				t.Errorf("record %d: %s = %v, want %v", i, k, r[k], want)
			}
		}
		if r["upstream_response"].(float64) <= 0 {
			t.Errorf("record %d: upstream_response %v", i, r["upstream_response"])
		}
		if sid, _ := r["span_id"].(string); len(sid) != 16 {
			t.Errorf("record %d: span_id %q", i, sid)
		}
	}
	// The first request opened the backend connection, the second reused it.
	if recs[0]["upstream_connect"].(float64) <= 0 || recs[1]["upstream_connect"].(float64) != 0 {
		t.Errorf("upstream_connect %v then %v; want the dial time, then 0 on the reused connection",
			recs[0]["upstream_connect"], recs[1]["upstream_connect"])
	}
}
