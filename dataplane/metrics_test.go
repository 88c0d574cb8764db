package dataplane

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func seriesCount(c prometheus.Collector) int {
	ch := make(chan prometheus.Metric, 64)
	c.Collect(ch)
	close(ch)
	return len(ch)
}

func TestClassIndex(t *testing.T) {
	for _, tc := range []struct {
		code int
		want string
	}{
		{0, "5xx"}, {99, "5xx"}, {100, "1xx"}, {101, "1xx"}, {200, "2xx"}, {204, "2xx"},
		{301, "3xx"}, {404, "4xx"}, {499, "4xx"}, {500, "5xx"}, {503, "5xx"}, {600, "5xx"},
	} {
		if got := classLabel(classIndex(tc.code)); got != tc.want {
			t.Errorf("class of %d = %s, want %s", tc.code, got, tc.want)
		}
	}
}

// TestRecordSeries checks that the resolved-series cache counts into the
// same series WithLabelValues would and creates no series before use.
func TestRecordSeries(t *testing.T) {
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	records := []struct {
		route, pool string
		code        int
	}{
		{"a", "p", 200}, {"a", "p", 200}, {"a", "p", 503}, {"a", "q", 200},
		{"b", "", 302}, {"", "", 404}, {"a", "p", 201},
	}
	for _, r := range records {
		m.record(r.route, r.pool, r.code, time.Millisecond)
	}
	for _, tc := range []struct {
		route, pool, class string
		want               float64
	}{
		{"a", "p", "2xx", 3}, {"a", "p", "5xx", 1}, {"a", "q", "2xx", 1},
		{"b", "", "3xx", 1}, {"", "", "4xx", 1},
	} {
		if got := counterValue(t, m.requests.WithLabelValues(tc.route, tc.pool, tc.class)); got != tc.want {
			t.Errorf("requests{%s,%s,%s} = %v, want %v", tc.route, tc.pool, tc.class, got, tc.want)
		}
	}
	// Only the five label sets above exist (the reads above found them).
	if n := seriesCount(m.requests); n != 5 {
		t.Errorf("%d request series, want 5", n)
	}
	if n := seriesCount(m.latency); n != 3 {
		t.Errorf("%d latency series, want 3 (routes a, b and none)", n)
	}
}

func TestRecordDoesNotAllocate(t *testing.T) {
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	m.record("app", "app", 200, time.Millisecond)
	if n := testing.AllocsPerRun(100, func() { m.record("app", "app", 200, time.Millisecond) }); n != 0 {
		t.Errorf("record allocates %v times per call", n)
	}
}
