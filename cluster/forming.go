package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/adminhttp"
)

const (
	peerRequestTimeout = 2 * time.Second
	formPollMin        = 200 * time.Millisecond
	formPollMax        = 2 * time.Second
	maxPeerAnswer      = 1 << 20
)

func newPeerClient(clientTLS *tls.Config) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // peers are reached directly, never through a proxy from the environment
	if clientTLS != nil {
		tr.TLSClientConfig = clientTLS.Clone()
	}
	return &http.Client{Transport: tr, Timeout: peerRequestTimeout}
}

// form runs once at start on a node without Raft state. With fixed Peers
// or once BootstrapExpect nodes answer on the Join addresses, the node with
// the lowest id bootstraps the cluster with all of them as voters; the
// others wait for it to replicate to them. A node that finds a cluster
// already running asks its leader to add it instead. A proxy never
// bootstraps: it polls the Join addresses until a cluster runs and asks
// its leader to add it as a non-voter; voters do not count proxies.
func (n *Node) form() {
	expect := n.cfg.BootstrapExpect
	if n.role() == fsm.RoleProxy {
		expect = 0
		if len(n.cfg.Join) == 0 {
			n.log.Info("proxy without join addresses: waiting to be added to a cluster", "node", n.cfg.NodeID)
			return
		}
	} else if len(n.cfg.Peers) > 0 {
		n.formStatic()
		return
	}
	if expect == 1 {
		n.bootstrap([]PeerInfo{n.PeerInfo()})
		return
	}
	if len(n.cfg.Join) == 0 {
		n.log.Info("no bootstrap_expect and no join addresses: waiting to be added to a cluster", "node", n.cfg.NodeID)
		return
	}
	wait := formPollMin
	for attempt := 0; ; attempt++ {
		if n.hasState() {
			return
		}
		if done := n.formRound(expect, attempt); done {
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-n.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(wait*3/2, formPollMax)
	}
}

// formRound polls every Join address once; it reports true when forming
// is over for this node.
func (n *Node) formRound(expect, attempt int) bool {
	self := n.PeerInfo()
	known := map[string]PeerInfo{self.ID: self}
	var failures []error
	for _, addr := range n.cfg.Join {
		if addr == n.cfg.AdminAddr {
			continue
		}
		info, err := n.fetchPeer(n.ctx, addr)
		if err != nil {
			failures = append(failures, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		if info.ID == "" || info.ID == self.ID {
			continue
		}
		proxy := info.Role == fsm.RoleProxy
		if info.Bootstrapped && info.Leader != "" && info.Leader != self.ID {
			target := info.LeaderAddr
			if target == "" {
				target = addr // the admin API forwards writes to the leader
			}
			if err := n.askToJoin(n.ctx, target, self); err != nil {
				if errors.Is(err, errPeerNoLeader) {
					// An election in progress: the next round asks again.
					n.log.Info("join request: the cluster has no leader yet; retrying", "node", self.ID, "peer", target)
					return false
				}
				n.log.Warn("join request failed", "node", self.ID, "peer", target, "err", err, "action", "retried; check that the leader's admin API is reachable and the token matches")
				return false
			}
			n.log.Info("joined existing cluster", "node", self.ID, "via", target, "leader", info.Leader, "role", self.Role)
			return true
		}
		if !proxy {
			known[info.ID] = info // proxies never count toward bootstrap_expect
		}
	}
	if attempt%10 == 9 && len(failures) > 0 {
		n.log.Warn("forming: peers not answering", "node", self.ID, "known", len(known), "expect", expect, "err", errors.Join(failures...),
			"action", "start rafter on the nodes that do not answer, or correct --join")
	}
	if expect == 0 || len(known) < expect {
		return false
	}
	if len(known) > expect {
		n.log.Error("forming: more nodes answered than bootstrap_expect; not bootstrapping", "node", self.ID, "known", len(known), "expect", expect,
			"action", "give every node the same --bootstrap-expect, equal to the number of nodes in --join")
		return false
	}
	peers := make([]PeerInfo, 0, len(known))
	for _, p := range known {
		peers = append(peers, p)
		n.rememberPeer(p)
	}
	sort.Slice(peers, func(i, j int) bool { return peers[i].ID < peers[j].ID })
	if peers[0].ID != self.ID {
		return false // the lowest id bootstraps; keep polling until it has
	}
	n.bootstrap(peers)
	return true
}

func (n *Node) formStatic() {
	peers := slices.Clone(n.cfg.Peers)
	sort.Slice(peers, func(i, j int) bool { return peers[i].ID < peers[j].ID })
	for _, p := range peers {
		n.rememberPeer(p)
	}
	if peers[0].ID == n.cfg.NodeID {
		n.bootstrap(peers)
	}
}

// bootstrap writes the initial configuration. Raft refuses it when any
// state exists, so a restarted node can never bootstrap a second time.
func (n *Node) bootstrap(peers []PeerInfo) {
	var conf raft.Configuration
	ids := make([]string, 0, len(peers))
	for _, p := range peers {
		conf.Servers = append(conf.Servers, raft.Server{
			ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RaftAddr), Suffrage: raft.Voter,
		})
		ids = append(ids, p.ID)
	}
	if err := n.raft.BootstrapCluster(conf).Error(); err != nil {
		if errors.Is(err, raft.ErrCantBootstrap) {
			n.log.Info("not bootstrapping: raft state exists", "node", n.cfg.NodeID)
			return
		}
		n.log.Error("bootstrap failed", "node", n.cfg.NodeID, "err", err, "action", "check --data-dir (space, permissions) and restart rafter")
		return
	}
	n.log.Info("bootstrapped cluster", "node", n.cfg.NodeID, "voters", ids)
}

func (n *Node) peerURL(addr, path string) string {
	return n.cfg.AdminScheme + "://" + addr + path
}

func (n *Node) fetchPeer(ctx context.Context, addr string) (PeerInfo, error) {
	var info PeerInfo
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.peerURL(addr, "/v1/internal/peer"), nil)
	if err != nil {
		return info, err
	}
	body, err := n.doPeer(req)
	if err != nil {
		return info, err
	}
	if err := json.Unmarshal(body, &info); err != nil {
		return info, fmt.Errorf("decoding peer info: %w", err)
	}
	return info, nil
}

func (n *Node) askToJoin(ctx context.Context, addr string, self PeerInfo) error {
	b, err := json.Marshal(self)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.peerURL(addr, "/v1/nodes"), bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	_, err = n.doPeer(req)
	return err
}

// errPeerNoLeader: a peer answered 503, it has no leader (an election is
// under way); forming asks again in its next round.
var errPeerNoLeader = errors.New("no leader yet")

func (n *Node) doPeer(req *http.Request) ([]byte, error) {
	resp, body, err := adminhttp.Do(n.http, req, n.cfg.Token, maxPeerAnswer)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusServiceUnavailable {
		return nil, fmt.Errorf("%s %s: %s: %s: %w", req.Method, req.URL.Path, resp.Status, bytes.TrimSpace(body), errPeerNoLeader)
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, bytes.TrimSpace(body))
	}
	return body, nil
}
