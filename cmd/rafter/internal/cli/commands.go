package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rafterlb/rafter/client"
	"github.com/rafterlb/rafter/fsm"
)

func newStatusCmd(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the node, the leader, Raft indexes and the members with their health",
		Args:  cobra.NoArgs,
	}
	o := addAPIFlags(cmd, s)
	var output string
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table | json | yaml")
	cmd.RunE = withClient(s, o, func(ctx context.Context, c *client.Client, _ []string) error {
		st, _, err := c.Status(ctx)
		if err != nil {
			return err
		}
		switch output {
		case "table", "":
			return writeStatus(s.Out, st)
		default:
			return writeValue(s.Out, st, output)
		}
	})
	return cmd
}

func newApplyCmd(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Apply a manifest (YAML or JSON) as one all-or-nothing change",
		Long: "Apply a manifest of {kind, name, spec} documents as one Raft entry: either every\n" +
			"object is created or updated, or nothing is. Objects not in the manifest are kept.\n" +
			"Applying the same manifest twice changes nothing. FILE \"-\" reads standard input.",
		Args: cobra.NoArgs,
	}
	o := addAPIFlags(cmd, s)
	var file string
	var dry bool
	cmd.Flags().StringVarP(&file, "file", "f", "", "manifest file, - for standard input (required)")
	cmd.Flags().BoolVar(&dry, "dry-run", false, "show what would change and write nothing")
	cmd.RunE = withClient(s, o, func(ctx context.Context, c *client.Client, _ []string) error {
		if file == "" {
			return fmt.Errorf("-f/--file: required")
		}
		data, err := readInput(s, file)
		if err != nil {
			return err
		}
		res, err := c.Apply(ctx, data, dry)
		if err != nil {
			return err
		}
		return writeChanges(s.Out, res)
	})
	return cmd
}

func readInput(s Streams, file string) ([]byte, error) {
	if file == "-" {
		if s.In == nil {
			return nil, fmt.Errorf("-f -: no standard input")
		}
		return io.ReadAll(s.In)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("-f: %w", err)
	}
	return b, nil
}

// writeChanges prints one line per change ("created route/app") or
// "unchanged".
func writeChanges(w io.Writer, res client.ApplyResult) error {
	suffix := ""
	if res.DryRun {
		suffix = " (dry run)"
	}
	if len(res.Changes) == 0 {
		_, err := fmt.Fprintf(w, "unchanged%s\n", suffix)
		return err
	}
	past := map[string]string{"create": "created", "update": "updated", "delete": "deleted"}
	for _, ch := range res.Changes {
		verb := past[ch.Op]
		if verb == "" {
			verb = ch.Op
		}
		if _, err := fmt.Fprintf(w, "%s %s/%s%s\n", verb, ch.Kind, ch.Name, suffix); err != nil {
			return err
		}
	}
	if res.Index > 0 {
		_, err := fmt.Fprintf(w, "applied at index %d\n", res.Index)
		return err
	}
	return nil
}

func newGetCmd(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get KIND [NAME]",
		Short: "Show listeners, routes, pools, vips, rollouts or certificates",
		Long: "Show one object or every object of a kind. KIND is listener, route, pool, vip,\n" +
			"rollout or certificate (singular or plural). -o yaml prints a manifest that\n" +
			"`rafter apply -f` takes back (a certificate's key is never shown; applying it back\n" +
			"keeps the stored key).",
		Args: cobra.RangeArgs(1, 2),
	}
	o := addAPIFlags(cmd, s)
	var output string
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table | json | yaml")
	cmd.RunE = withClient(s, o, func(ctx context.Context, c *client.Client, args []string) error {
		kind, err := fsm.ParseKind(args[0])
		if err != nil {
			return fmt.Errorf("KIND %q: want listener, route, pool, vip, rollout or certificate", args[0])
		}
		if output != "table" && output != "json" && output != "yaml" {
			return fmt.Errorf("-o/--output: want table, json or yaml, got %q", output)
		}
		if kind == fsm.KindCertificate && output == "table" {
			return getCertificates(ctx, c, s.Out, args[1:], time.Now())
		}
		var objs []fsm.Object
		if len(args) == 2 {
			obj, _, err := c.Get(ctx, kind, args[1])
			if err != nil {
				return err
			}
			objs = []fsm.Object{obj}
		} else {
			objs, _, err = c.List(ctx, kind)
			if err != nil {
				return err
			}
		}
		switch output {
		case "table":
			return writeObjects(s.Out, kind, objs)
		case "json":
			if len(args) == 2 {
				return writeValue(s.Out, objs[0], "json")
			}
			if objs == nil {
				objs = []fsm.Object{}
			}
			return writeValue(s.Out, objs, "json")
		default:
			b, err := fsm.MarshalManifest(objs, "yaml")
			if err != nil {
				return err
			}
			_, err = s.Out.Write(b)
			return err
		}
	})
	return cmd
}

func newDeleteCmd(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete KIND NAME",
		Short: "Delete one listener, route, pool or vip",
		Args:  cobra.ExactArgs(2),
	}
	o := addAPIFlags(cmd, s)
	var cas int64
	cmd.Flags().Int64Var(&cas, "cas", -1, "delete only if the object's modify_index equals this")
	cmd.RunE = withClient(s, o, func(ctx context.Context, c *client.Client, args []string) error {
		kind, err := fsm.ParseKind(args[0])
		if err != nil {
			return fmt.Errorf("KIND %q: want listener, route, pool, vip, rollout or certificate", args[0])
		}
		var casp *uint64
		if cas >= 0 {
			v := uint64(cas)
			casp = &v
		}
		idx, err := c.Delete(ctx, kind, args[1], casp)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(s.Out, "deleted %s/%s at index %d\n", kind, args[1], idx)
		return err
	})
	return cmd
}

func newNodeCmd(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Change cluster membership: join, remove, promote and demote members",
	}
	join := &cobra.Command{
		Use:   "join ID --raft-addr HOST:PORT --admin-addr HOST:PORT --zone ZONE [--role proxy]",
		Short: "Add a node as a voter, or a non-voting proxy (the node must be running with the same CA and token)",
		Args:  cobra.ExactArgs(1),
	}
	jo := addAPIFlags(join, s)
	var p client.PeerInfo
	join.Flags().StringVar(&p.RaftAddr, "raft-addr", "", "the node's Raft address (required)")
	join.Flags().StringVar(&p.AdminAddr, "admin-addr", "", "the node's admin API address")
	join.Flags().StringVar(&p.Zone, "zone", "", "the node's zone")
	join.Flags().StringVar(&p.DataAddr, "data-addr", "", "the IP the node's listeners bind")
	join.Flags().StringVar(&p.InstanceID, "aws-instance-id", "", "the node's EC2 instance id (i-...)")
	join.Flags().StringVar(&p.ENI, "aws-eni", "", "the node's network interface that Elastic IPs move to (eni-...)")
	join.Flags().StringVar(&p.PrivateIP, "aws-private-ip", "", "the private IP on --aws-eni that Elastic IPs map to")
	join.Flags().StringVar(&p.Role, "role", "", "voter (the default), or proxy: a member that receives the log and serves but never votes")
	join.RunE = withClient(s, jo, func(ctx context.Context, c *client.Client, args []string) error {
		if p.RaftAddr == "" {
			return fmt.Errorf("--raft-addr: required")
		}
		p.ID = args[0]
		if err := c.Join(ctx, p); err != nil {
			return err
		}
		_, err := fmt.Fprintf(s.Out, "node %s joined\n", p.ID)
		return err
	})
	remove := &cobra.Command{
		Use:   "remove ID",
		Short: "Remove a node from the cluster",
		Args:  cobra.ExactArgs(1),
	}
	ro := addAPIFlags(remove, s)
	remove.RunE = withClient(s, ro, func(ctx context.Context, c *client.Client, args []string) error {
		if err := c.Remove(ctx, args[0]); err != nil {
			return err
		}
		_, err := fmt.Fprintf(s.Out, "node %s removed\n", args[0])
		return err
	})
	cmd.AddCommand(join, remove, newSuffrageCmd(s, "promote"), newSuffrageCmd(s, "demote"))
	return cmd
}

// newSuffrageCmd is `rafter node promote|demote ID...`.
func newSuffrageCmd(s Streams, verb string) *cobra.Command {
	short := "Make proxies voters; the voter count must stay odd, so promote in pairs (3 to 5 voters: two proxies)"
	if verb == "demote" {
		short = "Make voters proxies; the voter count must stay odd, so demote in pairs (5 to 3 voters: two voters)"
	}
	cmd := &cobra.Command{
		Use:   verb + " ID [ID...]",
		Short: short,
		Args:  cobra.MinimumNArgs(1),
	}
	o := addAPIFlags(cmd, s)
	cmd.RunE = withClient(s, o, func(ctx context.Context, c *client.Client, args []string) error {
		change := c.Promote
		if verb == "demote" {
			change = c.Demote
		}
		res, err := change(ctx, args...)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(s.Out, "%sd %s; voters now %s (index %d)\n", verb, strings.Join(args, ", "), strings.Join(res.Voters, ", "), res.Index)
		return err
	})
	return cmd
}

// writeValue prints v as indented JSON or YAML.
func writeValue(w io.Writer, v any, format string) error {
	switch format {
	case "json":
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = w.Write(append(b, '\n'))
		return err
	case "yaml":
		b, err := jsonToYAML(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	return fmt.Errorf("-o/--output: want table, json or yaml, got %q", format)
}

func joinOr(xs []string, empty string) string {
	if len(xs) == 0 {
		return empty
	}
	return strings.Join(xs, ",")
}
