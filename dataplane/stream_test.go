package dataplane

import (
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// heapSampler records the peak HeapInuse of this process while running.
type heapSampler struct {
	peak atomic.Uint64
	stop chan struct{}
	wg   sync.WaitGroup
}

func startHeapSampler() *heapSampler {
	s := &heapSampler{stop: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > s.peak.Load() {
				s.peak.Store(ms.HeapInuse)
			}
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *heapSampler) finish() uint64 {
	close(s.stop)
	s.wg.Wait()
	return s.peak.Load()
}

// TestStreamingBodiesBoundedMemory moves streamTestBytes up and then down
// through the proxy and checks the process heap does not grow with it.
// Backend, proxy and client share this process, so the bound covers all
// three.
func TestStreamingBodiesBoundedMemory(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var uploaded atomic.Int64
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			n, _ := io.Copy(io.Discard, r.Body)
			uploaded.Store(n)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(streamTestBytes))
		_, _ = io.Copy(w, io.LimitReader(zeroReader{}, streamTestBytes))
	})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	cfg := simpleConfig(ln.Addr().String())
	l := cfg.listeners["web"]
	l.Limits.MaxBodyBytes = 2 << 30
	cfg.listeners["web"] = l
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	base := "http://" + d.ListenerAddr("web")
	c := newClient(t)

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	baseline := ms.HeapInuse
	sampler := startHeapSampler()

	req, _ := http.NewRequest(http.MethodPut, base+"/upload", io.LimitReader(zeroReader{}, streamTestBytes))
	req.ContentLength = streamTestBytes
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || uploaded.Load() != streamTestBytes {
		t.Fatalf("upload: status %d, backend got %d bytes", resp.StatusCode, uploaded.Load())
	}

	resp, err = c.Get(base + "/download")
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != streamTestBytes {
		t.Fatalf("download got %d bytes, %v", n, err)
	}
	peak := sampler.finish()
	growth := int64(peak) - int64(baseline)
	t.Logf("heap in use: baseline %d MiB, peak %d MiB, body %d MiB each way", baseline>>20, peak>>20, streamTestBytes>>20)
	if growth > 64<<20 {
		t.Errorf("heap grew by %d MiB while streaming %d MiB", growth>>20, streamTestBytes>>20)
	}
}
