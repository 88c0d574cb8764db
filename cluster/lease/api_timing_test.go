package lease_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/cluster/clustertest"
	"github.com/rafterlb/rafter/cluster/httpapi"
	"github.com/rafterlb/rafter/cluster/lease"
)

// BenchmarkKeepAliveHTTP measures keepalives per second through the admin
// API of one node that leads (PUT /v1/leases/{id}/keepalive over loopback
// HTTP/1.1 keep-alive connections), over 1,000 leases, parallel callers.
func BenchmarkKeepAliveHTTP(b *testing.B) {
	c := clustertest.NewCluster(b, 1)
	n := c.Leader(b)
	cfg := lease.DefaultConfig()
	cfg.Store = n
	cfg.Registerer = prometheus.NewRegistry()
	m, err := lease.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx)
	}()
	b.Cleanup(func() { cancel(); <-done })
	ids := make([]uint64, 1000)
	for i := range ids {
		l, err := m.Grant(context.Background(), time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = l.ID
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := m.KeepAlive(context.Background(), ids[0])
		if err == nil {
			break
		}
		if !errors.Is(err, cluster.ErrNoLeader) && !errors.Is(err, cluster.ErrNotLeader) || time.Now().After(deadline) {
			b.Fatalf("keepalive: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	acfg := httpapi.DefaultConfig()
	acfg.Store = n
	acfg.NodeID = "node1"
	acfg.Leases = m
	acfg.Logger = slog.New(slog.DiscardHandler)
	api, err := httpapi.New(acfg)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(api)
	b.Cleanup(srv.Close)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	hc := &http.Client{Transport: tr}
	b.Cleanup(tr.CloseIdleConnections)
	var next atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := ids[next.Add(1)%uint64(len(ids))]
			req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/v1/leases/%d/keepalive", srv.URL, id), nil)
			resp, err := hc.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("keepalive: %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "keepalives/s")
}
