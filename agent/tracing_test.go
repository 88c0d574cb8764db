package agent

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rafterlb/rafter/client"
	"github.com/rafterlb/rafter/dataplane"
	"github.com/rafterlb/rafter/fsm"
)

// wireField is one field of a protobuf message as read off the wire.
type wireField struct {
	num   protowire.Number
	bytes []byte // length-delimited fields
	u     uint64 // varint and fixed64 fields
}

// decodeWire reads the fields of one protobuf message, without a schema:
// the test checks the exporter's encoding against the OTLP field numbers
// independently of the code that wrote it.
func decodeWire(b []byte) ([]wireField, error) {
	var out []wireField
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		f := wireField{num: num}
		switch typ {
		case protowire.BytesType:
			f.bytes, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			f.u, n = protowire.ConsumeVarint(b)
		case protowire.Fixed64Type:
			f.u, n = protowire.ConsumeFixed64(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		out = append(out, f)
	}
	return out, nil
}

// sub returns the length-delimited values of field num in msg, decoded.
func sub(msg []wireField, num protowire.Number) [][]wireField {
	var out [][]wireField
	for _, f := range msg {
		if f.num == num {
			m, err := decodeWire(f.bytes)
			if err != nil {
				return nil
			}
			out = append(out, m)
		}
	}
	return out
}

func field(msg []wireField, num protowire.Number) (wireField, bool) {
	for _, f := range msg {
		if f.num == num {
			return f, true
		}
	}
	return wireField{}, false
}

// otlpSpan is a span as an OTLP receiver decodes it.
type otlpSpan struct {
	traceID, spanID, parentID string // hex
	name                      string
	kind                      uint64
	start, end                uint64
	attrs                     map[string]string // string values
	service                   string            // its resource's service.name
}

// keyValues reads the string-valued KeyValues of field num.
func keyValues(msg []wireField, num protowire.Number) map[string]string {
	out := map[string]string{}
	for _, kv := range sub(msg, num) {
		k, _ := field(kv, 1)
		for _, v := range sub(kv, 2) {
			if s, ok := field(v, 1); ok {
				out[string(k.bytes)] = string(s.bytes)
			}
		}
	}
	return out
}

// decodeExport reads the spans of an ExportTraceServiceRequest.
func decodeExport(body []byte) ([]otlpSpan, error) {
	req, err := decodeWire(body)
	if err != nil {
		return nil, err
	}
	var out []otlpSpan
	for _, rs := range sub(req, 1) {
		service := ""
		for _, res := range sub(rs, 1) {
			service = keyValues(res, 1)["service.name"]
		}
		for _, ss := range sub(rs, 2) {
			for _, sp := range sub(ss, 2) {
				s := otlpSpan{service: service, attrs: keyValues(sp, 9)}
				for _, f := range sp {
					switch f.num {
					case 1:
						s.traceID = hex.EncodeToString(f.bytes)
					case 2:
						s.spanID = hex.EncodeToString(f.bytes)
					case 4:
						s.parentID = hex.EncodeToString(f.bytes)
					case 5:
						s.name = string(f.bytes)
					case 6:
						s.kind = f.u
					case 7:
						s.start = f.u
					case 8:
						s.end = f.u
					}
				}
				out = append(out, s)
			}
		}
	}
	return out, nil
}

// otlpReceiver is an OTLP/HTTP traces endpoint on loopback keeping the
// spans it receives.
type otlpReceiver struct {
	url   string
	mu    sync.Mutex
	spans []otlpSpan
}

func startOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &otlpReceiver{url: "http://" + ln.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(io.LimitReader(req.Body, 16<<20))
		if err != nil || req.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		spans, err := decodeExport(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.spans = append(r.spans, spans...)
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return r
}

func (r *otlpReceiver) find(traceID string) (otlpSpan, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.spans {
		if s.traceID == traceID {
			return s, true
		}
	}
	return otlpSpan{}, false
}

// An agent with --otlp-endpoint exports the span of each proxied request
// to an OTLP/HTTP receiver, with the ids it sent the backend: a client's
// trace continues through the proxy span, and a trace started by the
// proxy has the request id as its trace id.
func TestAgentExportsSpansOverOTLP(t *testing.T) {
	recv := startOTLPReceiver(t)
	var mu sync.Mutex
	var seenTP []string
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seenTP = append(seenTP, r.Header.Get("Traceparent"))
		mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	}), ReadHeaderTimeout: 10 * time.Second}
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = backend.Serve(bln) }()
	t.Cleanup(func() { _ = backend.Close() })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := singleNode(t, t.TempDir())
	cfg.OTLPEndpoint = recv.url
	a, done := startAgent(t, ctx, cfg)
	c := client.New(a.AdminAddr(), "", nil)
	port := freePort(t)
	for _, obj := range []struct {
		kind fsm.Kind
		spec any
	}{
		{fsm.KindListener, fsm.ListenerSpec{Port: port}},
		{fsm.KindPool, fsm.PoolSpec{Backends: []fsm.Backend{{Addr: bln.Addr().String()}}}},
		{fsm.KindRoute, fsm.RouteSpec{Listener: "web", Action: fsm.RouteAction{Split: []fsm.WeightedPool{{Pool: "app", Weight: 1}}}}},
	} {
		name := map[fsm.Kind]string{fsm.KindListener: "web", fsm.KindPool: "app", fsm.KindRoute: "app"}[obj.kind]
		eventually(t, "put "+string(obj.kind), func() error {
			_, err := c.Put(ctx, obj.kind, name, obj.spec, nil)
			return err
		})
	}
	proxy := "http://127.0.0.1:" + strconv.Itoa(port) + "/x"
	send := func(traceparent string) *http.Response {
		t.Helper()
		var resp *http.Response
		eventually(t, "the proxy answers 200", func() error {
			req, _ := http.NewRequest(http.MethodGet, proxy, nil)
			if traceparent != "" {
				req.Header.Set("traceparent", traceparent)
			}
			r, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, r.Body)
			r.Body.Close()
			if r.StatusCode != 200 {
				return fmt.Errorf("status %d", r.StatusCode)
			}
			resp = r
			return nil
		})
		return resp
	}
	const trace, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	send("00-" + trace + "-" + parent + "-01")
	mu.Lock()
	upstream := seenTP[len(seenTP)-1]
	mu.Unlock()
	var span otlpSpan
	eventually(t, "the client's trace exported", func() error {
		var ok bool
		if span, ok = recv.find(trace); !ok {
			return fmt.Errorf("no span of trace %s received", trace)
		}
		return nil
	})
	if span.parentID != parent {
		t.Errorf("span parent %s, want the client's %s", span.parentID, parent)
	}
	if want := "00-" + trace + "-" + span.spanID + "-01"; upstream != want {
		t.Errorf("backend got traceparent %q, want %q (the exported span as parent)", upstream, want)
	}
	const kindServer = 2
	if span.kind != kindServer || span.name != "GET app" || span.start == 0 || span.end < span.start ||
		span.service != "rafter" || span.attrs["rafter.route"] != "app" || span.attrs["rafter.backend"] != bln.Addr().String() {
		t.Errorf("span %+v", span)
	}

	resp := send("")
	started := resp.Header.Get("X-Request-Id")
	eventually(t, "the trace the proxy started exported", func() error {
		var ok bool
		if span, ok = recv.find(started); !ok {
			return fmt.Errorf("no span with trace id %q (the request id) received", started)
		}
		return nil
	})
	if span.parentID != "" {
		t.Errorf("a started trace's span has parent %s", span.parentID)
	}
	body, err := scrape(a.AdminAddr())
	if err != nil {
		t.Fatal(err)
	}
	if v, err := sampleValue(body, "rafter_trace_spans_exported_total"); err != nil || v < 2 {
		t.Errorf("rafter_trace_spans_exported_total = %v (%v), want at least 2", v, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A receiver that refuses a batch loses it: counted, and the exporter
// flushes what is queued when it closes.
func TestSpanExporterCountsFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	reg := prometheus.NewRegistry()
	e, err := newSpanExporter("http://"+ln.Addr().String(), "n1", reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if !e.ExportSpan(&dataplane.Span{TraceID: [16]byte{1}, SpanID: [8]byte{byte(i + 1)}, Method: "GET", Status: 200}) {
			t.Fatal("queue full after one span")
		}
	}
	e.close()
	var m dto.Metric
	if err := e.failed.Write(&m); err != nil || m.GetCounter().GetValue() != 3 {
		t.Errorf("rafter_trace_spans_failed_total = %v (%v), want 3", m.GetCounter().GetValue(), err)
	}
}
