package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rafterlb/rafter/dataplane"
)

// Span export limits: the queue between the request path and the
// exporter, the batch size, how long a span waits for its batch, and the
// time one POST to the receiver may take.
const (
	spanQueue          = 4096
	spanBatch          = 512
	spanBatchTimeout   = time.Second
	spanPostTimeout    = 10 * time.Second
	maxOTLPEndpointLen = 2048
	// exportFailureLogEvery: a receiver that stays down is logged once
	// per this period, not once per batch.
	exportFailureLogEvery = time.Minute
)

// checkOTLPEndpoint validates --otlp-endpoint: an http or https URL
// naming a host.
func checkOTLPEndpoint(s string) error {
	if len(s) > maxOTLPEndpointLen {
		return fmt.Errorf("longer than %d bytes", maxOTLPEndpointLen)
	}
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q: want an http:// or https:// URL of an OTLP/HTTP receiver", s)
	}
	return nil
}

// otlpTracesURL is endpoint with the OTLP traces path when it names none.
func otlpTracesURL(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Path != "" && u.Path != "/") {
		return endpoint
	}
	u.Path = "/v1/traces"
	return u.String()
}

// spanExporter is the data plane's SpanSink when --otlp-endpoint is set.
// The request path only copies a span into a bounded queue (a full queue
// drops it, counted by the data plane); one goroutine collects the queued
// spans into batches and POSTs each as an OTLP/HTTP protobuf
// ExportTraceServiceRequest.
//
// It encodes OTLP itself, with protowire, rather than through the
// OpenTelemetry SDK and its otlptracehttp exporter: those pull in gRPC
// (the OTLP collector package carries its gRPC service) and made the
// rafter binary three times as large (26 MB to 79 MB), for the handful of
// messages written here.
type spanExporter struct {
	queue    chan dataplane.Span
	url      string
	client   *http.Client
	resource []byte // the encoded Resource of every batch
	log      *slog.Logger
	done     chan struct{}

	exported, failed prometheus.Counter
	lastLogged       time.Time
}

func newSpanExporter(endpoint, nodeID string, reg prometheus.Registerer, log *slog.Logger) (*spanExporter, error) {
	e := &spanExporter{
		queue:  make(chan dataplane.Span, spanQueue),
		url:    otlpTracesURL(endpoint),
		client: &http.Client{Timeout: spanPostTimeout},
		log:    log,
		done:   make(chan struct{}),
		exported: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rafter_trace_spans_exported_total", Help: "Request spans the OTLP receiver accepted.",
		}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rafter_trace_spans_failed_total", Help: "Request spans lost because sending them to the OTLP receiver failed.",
		}),
	}
	for _, c := range []prometheus.Collector{e.exported, e.failed} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("tracing metrics: %w", err)
		}
	}
	// Resource{attributes: service.name, service.instance.id}
	e.resource = appendKeyValue(nil, 1, "service.name", "rafter")
	e.resource = appendKeyValue(e.resource, 1, "service.instance.id", nodeID)
	go e.run()
	return e, nil
}

// ExportSpan queues a copy of s; false when the queue is full.
func (e *spanExporter) ExportSpan(s *dataplane.Span) bool {
	select {
	case e.queue <- *s:
		return true
	default:
		return false
	}
}

func (e *spanExporter) run() {
	defer close(e.done)
	batch := make([]dataplane.Span, 0, spanBatch)
	tick := time.NewTicker(spanBatchTimeout)
	defer tick.Stop()
	for {
		select {
		case s, ok := <-e.queue:
			if !ok {
				e.send(batch)
				return
			}
			batch = append(batch, s)
			if len(batch) == spanBatch {
				e.send(batch)
				batch = batch[:0]
			}
		case <-tick.C:
			e.send(batch)
			batch = batch[:0]
		}
	}
}

// send POSTs one batch; a failure loses it (counted, logged at most once
// per exportFailureLogEvery).
func (e *spanExporter) send(batch []dataplane.Span) {
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), spanPostTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(encodeExportRequest(e.resource, batch)))
	if err == nil {
		req.Header.Set("Content-Type", "application/x-protobuf")
		var resp *http.Response
		if resp, err = e.client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				err = fmt.Errorf("receiver answered %s", resp.Status)
			}
		}
	}
	if err == nil {
		e.exported.Add(float64(len(batch)))
		return
	}
	e.failed.Add(float64(len(batch)))
	if now := time.Now(); now.Sub(e.lastLogged) >= exportFailureLogEvery {
		e.lastLogged = now
		e.log.Warn("trace spans not exported: check that --otlp-endpoint is an OTLP/HTTP receiver that is up",
			"endpoint", e.url, "spans", len(batch), "err", err)
	}
}

// close stops taking spans and sends those queued. The data plane must
// have stopped.
func (e *spanExporter) close() {
	close(e.queue)
	<-e.done
}

// OTLP field numbers (opentelemetry-proto, trace/v1 and common/v1).
const (
	fExportResourceSpans = 1 // ExportTraceServiceRequest.resource_spans
	fRSResource          = 1 // ResourceSpans.resource
	fRSScopeSpans        = 2 // ResourceSpans.scope_spans
	fSSScope             = 1 // ScopeSpans.scope
	fSSSpans             = 2 // ScopeSpans.spans
	fScopeName           = 1 // InstrumentationScope.name
	fSpanTraceID         = 1
	fSpanSpanID          = 2
	fSpanParentID        = 4
	fSpanName            = 5
	fSpanKind            = 6
	fSpanStart           = 7
	fSpanEnd             = 8
	fSpanAttributes      = 9
	fSpanStatus          = 15
	fStatusMessage       = 2
	fStatusCode          = 3
	fKVKey               = 1
	fKVValue             = 2
	fAnyString           = 1
	fAnyInt              = 3
	spanKindServer       = 2
	statusCodeError      = 2
)

// encodeExportRequest encodes one ExportTraceServiceRequest holding the
// batch under resource.
func encodeExportRequest(resource []byte, batch []dataplane.Span) []byte {
	var spans []byte
	for i := range batch {
		spans = protowire.AppendTag(spans, fSSSpans, protowire.BytesType)
		spans = protowire.AppendBytes(spans, encodeSpan(&batch[i]))
	}
	scope := protowire.AppendTag(nil, fSSScope, protowire.BytesType)
	scope = protowire.AppendBytes(scope, appendString(nil, fScopeName, "github.com/rafterlb/rafter/dataplane"))
	scope = append(scope, spans...)

	rs := protowire.AppendTag(nil, fRSResource, protowire.BytesType)
	rs = protowire.AppendBytes(rs, resource)
	rs = protowire.AppendTag(rs, fRSScopeSpans, protowire.BytesType)
	rs = protowire.AppendBytes(rs, scope)

	out := protowire.AppendTag(nil, fExportResourceSpans, protowire.BytesType)
	return protowire.AppendBytes(out, rs)
}

// encodeSpan encodes s as an OTLP server span named after its method and
// route, with HTTP and rafter attributes.
func encodeSpan(s *dataplane.Span) []byte {
	b := protowire.AppendTag(nil, fSpanTraceID, protowire.BytesType)
	b = protowire.AppendBytes(b, s.TraceID[:])
	b = protowire.AppendTag(b, fSpanSpanID, protowire.BytesType)
	b = protowire.AppendBytes(b, s.SpanID[:])
	if s.ParentID != ([8]byte{}) {
		b = protowire.AppendTag(b, fSpanParentID, protowire.BytesType)
		b = protowire.AppendBytes(b, s.ParentID[:])
	}
	name := s.Method
	if s.Route != "" {
		name += " " + s.Route
	}
	b = appendString(b, fSpanName, name)
	b = protowire.AppendTag(b, fSpanKind, protowire.VarintType)
	b = protowire.AppendVarint(b, spanKindServer)
	b = protowire.AppendTag(b, fSpanStart, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, uint64(s.Start.UnixNano()))
	b = protowire.AppendTag(b, fSpanEnd, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, uint64(s.End.UnixNano()))
	b = appendKeyValue(b, fSpanAttributes, "http.request.method", s.Method)
	b = appendIntKeyValue(b, fSpanAttributes, "http.response.status_code", int64(s.Status))
	b = appendKeyValue(b, fSpanAttributes, "rafter.route", s.Route)
	b = appendKeyValue(b, fSpanAttributes, "rafter.pool", s.Pool)
	if s.Backend != "" {
		b = appendKeyValue(b, fSpanAttributes, "rafter.backend", s.Backend)
	}
	if s.Error != "" {
		b = appendKeyValue(b, fSpanAttributes, "error.type", s.Error)
	}
	if s.Status >= 500 {
		st := appendString(nil, fStatusMessage, s.Error)
		st = protowire.AppendTag(st, fStatusCode, protowire.VarintType)
		st = protowire.AppendVarint(st, statusCodeError)
		b = protowire.AppendTag(b, fSpanStatus, protowire.BytesType)
		b = protowire.AppendBytes(b, st)
	}
	return b
}

func appendString(b []byte, field protowire.Number, v string) []byte {
	b = protowire.AppendTag(b, field, protowire.BytesType)
	return protowire.AppendString(b, v)
}

// appendKeyValue appends field holding KeyValue{key, string value}.
func appendKeyValue(b []byte, field protowire.Number, key, value string) []byte {
	kv := appendString(nil, fKVKey, key)
	kv = protowire.AppendTag(kv, fKVValue, protowire.BytesType)
	kv = protowire.AppendBytes(kv, appendString(nil, fAnyString, value))
	b = protowire.AppendTag(b, field, protowire.BytesType)
	return protowire.AppendBytes(b, kv)
}

// appendIntKeyValue appends field holding KeyValue{key, int value}.
func appendIntKeyValue(b []byte, field protowire.Number, key string, value int64) []byte {
	any := protowire.AppendTag(nil, fAnyInt, protowire.VarintType)
	any = protowire.AppendVarint(any, uint64(value))
	kv := appendString(nil, fKVKey, key)
	kv = protowire.AppendTag(kv, fKVValue, protowire.BytesType)
	kv = protowire.AppendBytes(kv, any)
	b = protowire.AppendTag(b, field, protowire.BytesType)
	return protowire.AppendBytes(b, kv)
}
