package bench

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"
)

const wrkSample = `Running 2s test @ http://127.0.0.1:40123/1024
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.10ms  300.00us   9.00ms   90.00%
    Req/Sec    30.12k     1.00k   32.00k    80.00%
  Latency Distribution
     50%    2.05ms
     75%    2.20ms
     90%    2.40ms
     99%    3.21ms
  60240 requests in 2.00s, 70.12MB read
  Socket errors: connect 0, read 2, write 1, timeout 3
  Non-2xx or 3xx responses: 4
Requests/sec:  30119.50
Transfer/sec:     35.06MB
`

func TestParseWrk(t *testing.T) {
	got, err := ParseWrk(wrkSample)
	if err != nil {
		t.Fatal(err)
	}
	want := WrkResult{Requests: 60240, Seconds: 2, RPS: 30119.5, Errors: 10, P99: 3210 * time.Microsecond}
	if got != want {
		t.Fatalf("= %+v, want %+v", got, want)
	}
	for _, bad := range []string{"", "unable to connect to 127.0.0.1:1 Connection refused", "x requests in 2.00s\nRequests/sec: 1"} {
		if _, err := ParseWrk(bad); !errors.Is(err, ErrWrkOutput) {
			t.Errorf("ParseWrk(%q) = %v, want ErrWrkOutput", bad, err)
		}
	}
}

func TestParseWrkDuration(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
	}{{"812.00us", 812 * time.Microsecond}, {"3.21ms", 3210 * time.Microsecond}, {"1.50s", 1500 * time.Millisecond}, {"2.00m", 2 * time.Minute}} {
		got, err := parseWrkDuration(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseWrkDuration(%q) = %v, %v, want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "3.2", "3.2h", "ms"} {
		if _, err := parseWrkDuration(bad); err == nil {
			t.Errorf("parseWrkDuration(%q) = nil error", bad)
		}
	}
}

func TestBackendServesFixedSizes(t *testing.T) {
	b, err := StartBackend([]int{0, 1024, 65536})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	c := &http.Client{Timeout: 5 * time.Second}
	t.Cleanup(c.CloseIdleConnections)
	for _, tt := range []struct {
		path   string
		status int
		n      int
	}{{"/0", 200, 0}, {"/1024", 200, 1024}, {"/65536", 200, 65536}, {"/7", 404, 0}} {
		resp, err := c.Get("http://" + b.Addr + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || len(body) != tt.n {
			t.Errorf("%s: %d with %d bytes, want %d with %d", tt.path, resp.StatusCode, len(body), tt.status, tt.n)
		}
	}
}

// The paced client sends exactly rate*duration requests and keeps one
// latency per success; counts only, no timing is asserted.
func TestPacedClientCounts(t *testing.T) {
	b, err := StartBackend([]int{1024})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	tests := []struct {
		name     string
		path     string
		max      int
		wantOK   int
		wantSent int64
	}{
		{"all succeed", "/1024", 1000, 100, 100},
		{"bounded by count", "/1024", 30, 30, 30},
		{"404s are errors", "/" + strconv.Itoa(5), 1000, 0, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Paced{Addr: b.Addr, Path: tt.path, Rate: 200, Workers: 8, Timeout: 10 * time.Second}
			r, err := p.Run(context.Background(), 500*time.Millisecond, tt.max)
			if err != nil {
				t.Fatal(err)
			}
			if r.Sent != tt.wantSent || len(r.Latencies) != tt.wantOK || r.Errors != tt.wantSent-int64(tt.wantOK) {
				t.Fatalf("sent %d ok %d errors %d", r.Sent, len(r.Latencies), r.Errors)
			}
			for i := 1; i < len(r.Latencies); i++ {
				if r.Latencies[i] < r.Latencies[i-1] {
					t.Fatal("latencies not sorted")
				}
			}
		})
	}
	if _, err := (Paced{Addr: b.Addr, Rate: 0, Workers: 1}).Run(context.Background(), time.Second, 10); err == nil {
		t.Fatal("zero rate accepted")
	}
}
