package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
)

// DevCluster runs several agents in this process, as `rafter dev` and the
// tests do, and owns their goroutines.
type DevCluster struct {
	exits chan NodeExit

	mu    sync.Mutex
	nodes map[string]*devNode
	order []string
}

type devNode struct {
	cfg    Config
	ln     net.Listener // pre-opened admin listener for the next start, or nil
	cancel context.CancelFunc
	done   chan struct{}
	agent  *Agent
}

// NodeExit reports an agent that stopped without being asked to.
type NodeExit struct {
	ID  string
	Err error
}

// NewDevCluster prepares one agent per config; a config's AdminListener is
// used for that node's first start only.
func NewDevCluster(cfgs []Config) *DevCluster {
	dc := &DevCluster{exits: make(chan NodeExit, len(cfgs)), nodes: map[string]*devNode{}}
	for _, c := range cfgs {
		n := &devNode{cfg: c, ln: c.AdminListener}
		n.cfg.AdminListener = nil
		dc.nodes[c.NodeID] = n
		dc.order = append(dc.order, c.NodeID)
	}
	return dc
}

// Exits reports agents that stopped on their own.
func (dc *DevCluster) Exits() <-chan NodeExit { return dc.exits }

// StartAll starts every node and waits until each admin API serves.
func (dc *DevCluster) StartAll(ctx context.Context) error {
	for _, id := range dc.order {
		if err := dc.Start(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// Start runs one node and waits until its admin API serves or it fails.
func (dc *DevCluster) Start(ctx context.Context, id string) error {
	dc.mu.Lock()
	n, ok := dc.nodes[id]
	if !ok {
		dc.mu.Unlock()
		return fmt.Errorf("no node %q (have %s)", id, strings.Join(dc.order, ", "))
	}
	if n.done != nil {
		dc.mu.Unlock()
		return fmt.Errorf("%s is running", id)
	}
	cfg := n.cfg
	cfg.AdminListener, n.ln = n.ln, nil
	a, err := New(cfg)
	if err != nil {
		dc.mu.Unlock()
		return fmt.Errorf("starting %s: %w", id, err)
	}
	nctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	n.cancel, n.done, n.agent = cancel, done, a
	dc.mu.Unlock()

	errc := make(chan error, 1)
	go func() {
		defer close(done)
		err := a.Run(nctx)
		started := false
		select {
		case <-a.Ready():
			started = true
		default:
		}
		switch {
		case !started:
			errc <- err
		case nctx.Err() == nil:
			if err == nil {
				err = errors.New("exited")
			}
			select {
			case dc.exits <- NodeExit{id, err}:
			default: // an exit is already pending; the cluster is stopping
			}
		}
	}()
	select {
	case <-a.Ready():
		return nil
	case err := <-errc:
		dc.forget(n)
		cancel()
		if err == nil {
			err = errors.New("exited before serving")
		}
		return fmt.Errorf("starting %s: %w", id, err)
	}
}

func (dc *DevCluster) forget(n *devNode) {
	dc.mu.Lock()
	n.cancel, n.done, n.agent = nil, nil, nil
	dc.mu.Unlock()
}

// Stop stops one node and waits for it.
func (dc *DevCluster) Stop(id string) error {
	dc.mu.Lock()
	n, ok := dc.nodes[id]
	if !ok {
		dc.mu.Unlock()
		return fmt.Errorf("no node %q (have %s)", id, strings.Join(dc.order, ", "))
	}
	cancel, done := n.cancel, n.done
	n.cancel, n.done, n.agent = nil, nil, nil
	dc.mu.Unlock()
	if done == nil {
		return fmt.Errorf("%s is not running", id)
	}
	cancel()
	<-done
	return nil
}

// StopAll stops every running node (in parallel) and releases unused
// listeners.
func (dc *DevCluster) StopAll() error {
	var wg sync.WaitGroup
	dc.mu.Lock()
	for _, id := range dc.order {
		n := dc.nodes[id]
		if n.ln != nil {
			n.ln.Close()
			n.ln = nil
		}
		if n.done == nil {
			continue
		}
		cancel, done := n.cancel, n.done
		n.cancel, n.done, n.agent = nil, nil, nil
		wg.Go(func() {
			cancel()
			<-done
		})
	}
	dc.mu.Unlock()
	wg.Wait()
	return nil
}

// AdminAddr is a running node's admin address ("" when stopped).
func (dc *DevCluster) AdminAddr(id string) string {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if n := dc.nodes[id]; n != nil && n.agent != nil {
		return n.agent.AdminAddr()
	}
	return ""
}
