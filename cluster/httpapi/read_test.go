package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/fsm"
)

func TestBlockingReadWakesOnChange(t *testing.T) {
	paths := []string{"/v1/listeners", "/v1/listeners/web", "/v1/config"}
	for _, p := range paths {
		t.Run(p, func(t *testing.T) {
			a := newTestAPI(t, "n1", nil)
			start := a.store.put(t, fsm.KindListener, "web", validSpecs[fsm.KindListener])
			calls := a.store.changedCount()

			type answer struct {
				r   result
				err error
			}
			done := make(chan answer, 1)
			go func() {
				// wait=5m: only the change can end this request in time.
				r, err := send(t.Context(), a.srv.URL, "GET", p+"?index="+strconv.FormatUint(start, 10)+"&wait=5m", "", "", nil)
				done <- answer{r, err}
			}()
			eventually(t, "the read to wait for a change", func() bool { return a.store.changedCount() > calls })
			select {
			case ans := <-done:
				t.Fatalf("blocking read answered before any change: %+v", ans)
			default:
			}
			next := a.store.put(t, fsm.KindListener, "web", `{"port": 8081}`)
			var r result
			select {
			case ans := <-done:
				if ans.err != nil {
					t.Fatal(ans.err)
				}
				r = ans.r
			case <-time.After(20 * time.Second):
				t.Fatal("blocking read did not answer after the change")
			}
			if r.status != 200 || r.header.Get(HeaderIndex) != strconv.FormatUint(next, 10) {
				t.Fatalf("got %d index %s, want 200 at %d: %s", r.status, r.header.Get(HeaderIndex), next, r.body)
			}
		})
	}
}

func TestBlockingReadOptions(t *testing.T) {
	a := newTestAPI(t, "n1", nil)
	cur := a.store.put(t, fsm.KindListener, "web", validSpecs[fsm.KindListener])
	idx := strconv.FormatUint(cur, 10)
	tests := []struct {
		name   string
		query  string
		status int
		field  string
	}{
		{"times out at wait", "?index=" + idx + "&wait=20ms", 200, ""},
		{"wait in seconds", "?index=" + idx + "&wait=0", 200, ""},
		{"already past", "?index=0", 200, ""},
		{"bad index", "?index=x", 400, "index"},
		{"bad wait", "?index=1&wait=soon", 400, "wait"},
		{"negative wait", "?index=1&wait=-1s", 400, "wait"},
		{"wait without index", "?wait=1s", 400, "wait"},
		{"bad consistent", "?consistent=perhaps", 400, "consistent"},
		{"consistent", "?consistent", 200, ""},
		{"consistent blocking", "?consistent&index=" + idx + "&wait=10ms", 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, a.srv.URL, "GET", "/v1/listeners"+tc.query, "", "")
			if r.status != tc.status {
				t.Fatalf("got %d %s, want %d", r.status, r.body, tc.status)
			}
			if tc.status != 200 {
				if e := r.errorBody(t); e.Field != tc.field || e.Code != CodeInvalid {
					t.Fatalf("error %+v, want invalid field %q", e, tc.field)
				}
				return
			}
			var list api.List
			r.decode(t, &list)
			if list.Index != cur || r.header.Get(HeaderIndex) != idx {
				t.Fatalf("answer at %d (header %s), want %d", list.Index, r.header.Get(HeaderIndex), cur)
			}
		})
	}
}

func TestParseWaitCaps(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"30s", 30 * time.Second},
		{"30", 30 * time.Second},
		{"1h", maxWait},
		{"100000", maxWait},
	}
	for _, tc := range tests {
		got, err := parseWait(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseWait(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	r, _ := http.NewRequest("GET", "/v1/routes?index=3", nil)
	o, err := parseReadOpts(r)
	if err != nil || !o.blocking || o.index != 3 || o.wait != defaultWait {
		t.Fatalf("index only: %+v %v, want the default wait", o, err)
	}
}

// A client that goes away ends its blocking read: the handler returns
// without waiting for a change or for wait.
func TestBlockingReadEndsWithClient(t *testing.T) {
	var finished atomic.Int32
	a := newWrappedTestAPI(t, "n1", nil, func(inner http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer finished.Add(1)
			inner.ServeHTTP(w, r)
		})
	})
	calls := a.store.changedCount()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", a.srv.URL+"/v1/listeners?index=0&wait=5m", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			err = errors.New("answered with " + resp.Status)
		}
		errc <- err
	}()
	eventually(t, "the read to wait for a change", func() bool { return a.store.changedCount() > calls })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("client: %v, want context.Canceled", err)
	}
	eventually(t, "the handler to return", func() bool { return finished.Load() == 1 })
}
