package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/cmd/rafter/internal/cli"
)

func newRecoverCmd(s cli.Streams) *cobra.Command {
	var opts cluster.RecoverOptions
	var peers []string
	cmd := &cobra.Command{
		Use:   "recover --data-dir DIR --node-id ID [--peers ID=RAFTADDR,...]",
		Short: "Turn a stopped survivor's data into a new cluster after a quorum is lost for good",
		Long: "When a majority of the voters is gone for good, the survivors cannot elect a\n" +
			"leader. Stop the agent on one survivor and run recover on its data directory:\n" +
			"the Raft membership is rewritten to this node alone (or to --peers, each\n" +
			"ID=host:raft-port and including this node), keeping the whole configuration.\n" +
			"Start the agent again, remove the lost nodes (`rafter node remove ID`) and add\n" +
			"fresh ones. Run it on one node only: recovering two survivors separately makes\n" +
			"two clusters.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.DataDir == "" {
				return fmt.Errorf("--data-dir: required")
			}
			for i, p := range peers {
				id, addr, ok := strings.Cut(p, "=")
				if !ok || id == "" || addr == "" {
					return fmt.Errorf("--peers: [%d] %q: want ID=host:raft-port", i, p)
				}
				opts.Peers = append(opts.Peers, cluster.RecoverPeer{ID: id, RaftAddr: addr})
			}
			res, err := cluster.Recover(opts)
			if err != nil {
				return err
			}
			var voters []string
			for _, v := range res.Voters {
				voters = append(voters, fmt.Sprintf("%s (%s)", v.ID, v.Address))
			}
			fmt.Fprintf(s.Out, "recovered %s: %d objects at index %d; voters: %s\n",
				opts.DataDir, res.Objects, res.Index, strings.Join(voters, ", "))
			var lost []string
			for _, id := range res.Nodes {
				if !isVoter(res, id) {
					lost = append(lost, id)
				}
			}
			fmt.Fprintln(s.Out, "next: start the agent on this node")
			for _, id := range lost {
				fmt.Fprintf(s.Out, "then: rafter node remove %s\n", id)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.DataDir, "data-dir", "", "the stopped node's data directory (required)")
	f.StringVar(&opts.NodeID, "node-id", "", "the node whose data it is (required)")
	f.StringSliceVar(&peers, "peers", nil, "voters of the new cluster, ID=host:raft-port, comma separated (default: this node alone)")
	f.DurationVar(&opts.LockTimeout, "lock-timeout", time.Second, "how long to wait for the data directory's lock (a running agent holds it)")
	return cmd
}

func isVoter(res cluster.RecoverResult, id string) bool {
	for _, v := range res.Voters {
		if string(v.ID) == id {
			return true
		}
	}
	return false
}
