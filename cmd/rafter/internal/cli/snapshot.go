package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/rafterlb/rafter/client"
	"github.com/rafterlb/rafter/cluster/tlsutil"
	"github.com/rafterlb/rafter/fsm"
)

func newSnapshotCmd(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Save the replicated configuration to a checksummed file, or restore it",
	}
	save := &cobra.Command{
		Use:   "save FILE",
		Short: "Save the cluster's whole configuration to FILE",
		Long: "Save the replicated document (listeners, routes, pools, vips with their\n" +
			"assignments, zone states and members) as read from the leader, in the\n" +
			"versioned, compressed and checksummed snapshot format. The bytes are verified\n" +
			"before FILE is written, and FILE is replaced only once the new one is on disk.",
		Args: cobra.ExactArgs(1),
	}
	so := addAPIFlags(save, s)
	save.RunE = withClient(s, so, func(ctx context.Context, c *client.Client, args []string) error {
		snap, _, err := c.Snapshot(ctx, true)
		if err != nil {
			return err
		}
		cfg, err := fsm.ReadSnapshot(bytes.NewReader(snap))
		if err != nil {
			return fmt.Errorf("the snapshot received from %s: %w", c.Addr(), err)
		}
		if err := writeFileAtomic(args[0], snap); err != nil {
			return err
		}
		_, err = fmt.Fprintf(s.Out, "saved %d objects at index %d to %s\n", len(cfg.Objects()), cfg.Index, args[0])
		return err
	})

	restore := &cobra.Command{
		Use:   "restore FILE [--dry-run]",
		Short: "Replace the cluster's configuration with the one saved in FILE",
		Long: "Verify FILE (a corrupt or truncated file is refused and nothing is sent), then\n" +
			"replace the listeners, routes, pools and vips (with vip assignments and zone\n" +
			"states) by those of FILE, as one all-or-nothing change: objects created after\n" +
			"the snapshot was taken are deleted. Cluster members are kept.\n" +
			"--dry-run prints what would change and writes nothing.",
		Args: cobra.ExactArgs(1),
	}
	ro := addAPIFlags(restore, s)
	var dry bool
	restore.Flags().BoolVar(&dry, "dry-run", false, "show what would change and write nothing")
	restore.RunE = withClient(s, ro, func(ctx context.Context, c *client.Client, args []string) error {
		snap, err := os.ReadFile(args[0])
		if err != nil {
			return err
		}
		if _, err := fsm.ReadSnapshot(bytes.NewReader(snap)); err != nil {
			return fmt.Errorf("%s: %w", args[0], err)
		}
		res, err := c.Restore(ctx, snap, dry)
		if err != nil {
			return err
		}
		if err := writeChanges(s.Out, res); err != nil {
			return err
		}
		if !res.DryRun && len(res.Changes) == 0 && res.Index > 0 {
			// writeChanges names the index only alongside changes; a restore
			// is still an entry in the log, worth pointing at.
			_, err = fmt.Fprintf(s.Out, "restored at index %d\n", res.Index)
		}
		return err
	})
	cmd.AddCommand(save, restore)
	return cmd
}

// writeFileAtomic replaces path with data so that a crash leaves either
// the old file or the whole new one: data goes to path.tmp, is synced,
// then renamed over path, and the directory is synced so the rename lasts.
func writeFileAtomic(path string, data []byte) (err error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer dir.Close()
	if err := dir.Sync(); err != nil {
		return fmt.Errorf("%s: sync directory: %w", path, err)
	}
	return nil
}

func newTLSCmd(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tls",
		Short: "Create the cluster's certificate authority and node certificates",
	}
	var dir, nodes string
	var force bool
	initCmd := &cobra.Command{
		Use:   "init --dir DIR --nodes n1=IP,n2=IP,...",
		Short: "Write ca.pem, ca-key.pem, NAME.pem/NAME-key.pem per node and cli.pem/cli-key.pem (ECDSA P-256, one year)",
		Long: "Write a new CA and one certificate per node, valid for the node's IP addresses and\n" +
			"names (add more with '+': n1=10.0.1.5+n1.lb.internal). Start each agent with\n" +
			"--tls-ca DIR/ca.pem --tls-cert DIR/NAME.pem --tls-key DIR/NAME-key.pem.\n" +
			"The admin API then requires a client certificate: give the CLI DIR/cli.pem and\n" +
			"DIR/cli-key.pem (--tls-cert/--tls-key or RAFTER_TLS_CERT/RAFTER_TLS_KEY).\n" +
			"Keep ca-key.pem off the nodes. An existing CA is kept unless --force.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return fmt.Errorf("--dir: required")
			}
			specs, err := tlsutil.ParseNodes(nodes)
			if err != nil {
				return fmt.Errorf("--nodes: %w", err)
			}
			if err := tlsutil.Init(dir, specs, force); err != nil {
				return err
			}
			fmt.Fprintf(s.Out, "wrote %s and %s\n", filepath.Join(dir, tlsutil.CAFile), filepath.Join(dir, tlsutil.CAKeyFile))
			for _, n := range specs {
				fmt.Fprintf(s.Out, "wrote %s and %s\n", filepath.Join(dir, n.Name+".pem"), filepath.Join(dir, n.Name+"-key.pem"))
			}
			cliCert, cliKey := filepath.Join(dir, tlsutil.CLIFile), filepath.Join(dir, tlsutil.CLIKeyFile)
			fmt.Fprintf(s.Out, "wrote %s and %s (client certificate for the CLI and rafter register)\n", cliCert, cliKey)
			fmt.Fprintf(s.Out, "the admin API requires a client certificate; for the CLI:\n  export RAFTER_TLS_CA=%s RAFTER_TLS_CERT=%s RAFTER_TLS_KEY=%s\n",
				filepath.Join(dir, tlsutil.CAFile), cliCert, cliKey)
			return nil
		},
	}
	initCmd.Flags().StringVar(&dir, "dir", "", "directory to write the files into (required)")
	initCmd.Flags().StringVar(&nodes, "nodes", "", "nodes and their addresses: n1=127.0.0.1,n2=127.0.0.2 (required)")
	initCmd.Flags().BoolVar(&force, "force", false, "replace an existing CA (every certificate it signed stops working)")
	cmd.AddCommand(initCmd)
	return cmd
}
