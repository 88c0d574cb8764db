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
		Short: "Save the configuration to a checksummed file, or restore it",
	}
	save := &cobra.Command{
		Use:   "save FILE",
		Short: "Save the managed configuration (listeners, routes, pools, vips) to FILE",
		Long: "Save the managed configuration as an fsm snapshot: versioned, compressed and\n" +
			"checksummed, so `snapshot restore` refuses a corrupt or truncated file.",
		Args: cobra.ExactArgs(1),
	}
	so := addAPIFlags(save, s)
	save.RunE = withClient(s, so, func(ctx context.Context, c *client.Client, args []string) error {
		doc, meta, err := c.Config(ctx, "json")
		if err != nil {
			return err
		}
		cfg, err := configFromManifest(doc, meta.Index)
		if err != nil {
			return fmt.Errorf("the exported configuration: %w", err)
		}
		var buf bytes.Buffer
		if err := fsm.WriteSnapshot(&buf, cfg); err != nil {
			return err
		}
		if err := writeFileAtomic(args[0], buf.Bytes()); err != nil {
			return err
		}
		_, err = fmt.Fprintf(s.Out, "saved %d objects at index %d to %s\n", len(cfg.Objects()), cfg.Index, args[0])
		return err
	})

	restore := &cobra.Command{
		Use:   "restore FILE",
		Short: "Apply the configuration saved in FILE",
		Long: "Verify FILE's checksum and apply every object it holds as one all-or-nothing\n" +
			"change. Objects created since the snapshot was taken are kept.",
		Args: cobra.ExactArgs(1),
	}
	ro := addAPIFlags(restore, s)
	var dry bool
	restore.Flags().BoolVar(&dry, "dry-run", false, "show what would change and write nothing")
	restore.RunE = withClient(s, ro, func(ctx context.Context, c *client.Client, args []string) error {
		f, err := os.Open(args[0])
		if err != nil {
			return err
		}
		defer f.Close()
		cfg, err := fsm.ReadSnapshot(f)
		if err != nil {
			return fmt.Errorf("%s: %w", args[0], err)
		}
		objs := cfg.Objects()
		for i := range objs {
			// The cluster assigns its own indexes; a manifest carries none.
			objs[i].ModifyIndex = 0
		}
		manifest, err := fsm.MarshalManifest(objs, "json")
		if err != nil {
			return err
		}
		res, err := c.Apply(ctx, manifest, dry)
		if err != nil {
			return err
		}
		return writeChanges(s.Out, res)
	})
	cmd.AddCommand(save, restore)
	return cmd
}

// configFromManifest rebuilds the typed document from an export, through
// the same validation a write gets, so that a snapshot never holds what
// the cluster would refuse to restore.
func configFromManifest(doc []byte, index uint64) (*fsm.Config, error) {
	objs, err := fsm.ParseManifest(doc)
	if err != nil {
		return nil, err
	}
	if len(objs) == 0 {
		c := fsm.Empty()
		c.Index = index
		return c, nil
	}
	c, err := fsm.Next(fsm.Empty(), 1, fsm.ApplyCommand(objs))
	if err != nil {
		return nil, err
	}
	c.Index = max(index, 1)
	return c, nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
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
		Short: "Write ca.pem, ca-key.pem and NAME.pem/NAME-key.pem per node (ECDSA P-256, one year)",
		Long: "Write a new CA and one certificate per node, valid for the node's IP addresses and\n" +
			"names (add more with '+': n1=10.0.1.5+n1.lb.internal). Start each agent with\n" +
			"--tls-ca DIR/ca.pem --tls-cert DIR/NAME.pem --tls-key DIR/NAME-key.pem.\n" +
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
			return nil
		},
	}
	initCmd.Flags().StringVar(&dir, "dir", "", "directory to write the files into (required)")
	initCmd.Flags().StringVar(&nodes, "nodes", "", "nodes and their addresses: n1=127.0.0.1,n2=127.0.0.2 (required)")
	initCmd.Flags().BoolVar(&force, "force", false, "replace an existing CA (every certificate it signed stops working)")
	cmd.AddCommand(initCmd)
	return cmd
}
