package cluster

import (
	"context"
	"fmt"
	"time"
)

// HandOff readies this node to be closed and opened again by another
// process under the same identity (the upgrade hand-over): a leader
// transfers its leadership first, so that the cluster sees no election
// gap, and HandOff returns once this node knows another leader, whose
// address the node's probes keep using after Close. It fails when ctx
// ends first or the transfer is refused (a single-voter cluster).
func (n *Node) HandOff(ctx context.Context) error {
	if n.IsLeader() {
		n.log.Info("transferring leadership before the hand-over")
		if err := n.await(ctx, n.raft.LeadershipTransfer()); err != nil {
			return fmt.Errorf("cluster: leadership transfer: %w", err)
		}
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if id, addr := n.Leader(); id != "" && id != n.cfg.NodeID && addr != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: hand-over: %w: no other leader known: %w", ErrTimeout, ctx.Err())
		case <-tick.C:
		}
	}
}
