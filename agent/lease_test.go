package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rafterlb/rafter/client"
	"github.com/rafterlb/rafter/fsm"
)

// TestAgentsServeLeases: three agents wire the lease manager into the
// admin API and /metrics; a registration through any node puts the
// backend in the pool, and stopping it drains, then removes the backend.
func TestAgentsServeLeases(t *testing.T) {
	const token = "t0ken"
	_, admins := testCluster(t, token)
	var clients []*client.Client
	for _, a := range admins {
		clients = append(clients, client.New(a, token, nil))
	}
	leader := waitLeader(t, clients)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := clients[1].Put(ctx, fsm.KindPool, "app", fsm.PoolSpec{}, nil); err != nil {
		t.Fatalf("put pool: %v", err)
	}

	reg, err := client.NewRegistrar(client.RegistrarConfig{
		Clients: clients, Pool: "app", Addr: "10.9.0.1:8080", Zone: "zone-a", TTL: 3 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reg.Run(rctx) }()
	t.Cleanup(func() {
		stop()
		<-done
	})

	backend := func() (fsm.Backend, bool, error) {
		o, _, err := clients[2].Get(ctx, fsm.KindPool, "app")
		if err != nil {
			return fsm.Backend{}, false, err
		}
		var spec fsm.PoolSpec
		if err := json.Unmarshal(o.Spec, &spec); err != nil {
			return fsm.Backend{}, false, err
		}
		for _, be := range spec.Backends {
			if be.Addr == "10.9.0.1:8080" {
				return be, true, nil
			}
		}
		return fsm.Backend{}, false, nil
	}
	eventually(t, "registered backend", func() error {
		be, ok, err := backend()
		if err != nil || !ok || be.Lease == 0 || be.Lease != reg.Lease() {
			return fmt.Errorf("backend %+v present=%v (lease %d): %v", be, ok, reg.Lease(), err)
		}
		return nil
	})

	leaderAddr := admins[int(leader[1]-'1')]
	eventually(t, "lease metrics on the leader", func() error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+leaderAddr+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, want := range []string{"rafter_leases_live 1", "rafter_lease_expiry_held 0", "rafter_lease_keepalives_total"} {
			if !strings.Contains(string(b), want) {
				return fmt.Errorf("/metrics lacks %q", want)
			}
		}
		return nil
	})

	stop()
	if err := <-done; err != nil {
		t.Fatalf("registrar: %v", err)
	}
	done <- nil // for the cleanup
	eventually(t, "backend removed after draining", func() error {
		if be, ok, err := backend(); err != nil || ok {
			return fmt.Errorf("backend %+v still present: %v", be, err)
		}
		return nil
	})
}
