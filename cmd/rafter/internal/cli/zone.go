package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/rafterlb/rafter/client"
)

func newZoneCmd(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "zone",
		Short: "Evacuate an availability zone, restore it, or list zones",
	}
	evacuate := &cobra.Command{
		Use:   "evacuate ZONE",
		Short: "Send no more requests to the backends in ZONE, from every node",
		Long: "Evacuate ZONE: every node stops sending new requests to the backends in it and\n" +
			"spreads them over the other zones. It is never refused, even when it leaves a pool\n" +
			"with no backend to send to (that pool answers 503); a warning says so.",
		Args: cobra.ExactArgs(1),
	}
	eo := addAPIFlags(evacuate, s)
	evacuate.RunE = withClient(s, eo, func(ctx context.Context, c *client.Client, args []string) error {
		res, err := c.EvacuateZone(ctx, args[0])
		if err != nil {
			return err
		}
		return writeZoneResult(s, res, args[0], "evacuated")
	})
	restore := &cobra.Command{
		Use:   "restore ZONE",
		Short: "Let the backends in an evacuated ZONE get traffic again",
		Args:  cobra.ExactArgs(1),
	}
	ro := addAPIFlags(restore, s)
	restore.RunE = withClient(s, ro, func(ctx context.Context, c *client.Client, args []string) error {
		res, err := c.RestoreZone(ctx, args[0])
		if err != nil {
			return err
		}
		return writeZoneResult(s, res, args[0], "restored")
	})
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the zones of members and backends, and which are evacuated",
		Args:    cobra.NoArgs,
	}
	lo := addAPIFlags(list, s)
	var output string
	list.Flags().StringVarP(&output, "output", "o", "table", "table | json | yaml")
	list.RunE = withClient(s, lo, func(ctx context.Context, c *client.Client, _ []string) error {
		if output != "table" && output != "json" && output != "yaml" {
			return fmt.Errorf("-o/--output: want table, json or yaml, got %q", output)
		}
		zones, _, err := c.Zones(ctx)
		if err != nil {
			return err
		}
		if output != "table" {
			if zones == nil {
				zones = []client.Zone{}
			}
			return writeValue(s.Out, zones, output)
		}
		return writeZones(s.Out, zones)
	})
	cmd.AddCommand(evacuate, restore, list)
	return cmd
}

// writeZoneResult prints the outcome line, and the server's warning on
// the error stream so that scripts reading the output still see it.
func writeZoneResult(s Streams, res client.ZoneResult, zone, verb string) error {
	if res.Warning != "" && s.Err != nil {
		fmt.Fprintf(s.Err, "warning: %s\n", res.Warning)
	}
	_, err := fmt.Fprintf(s.Out, "zone %s %s at index %d\n", zone, verb, res.Index)
	return err
}

func writeZones(w io.Writer, zones []client.Zone) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ZONE\tEVACUATED\tNODES\tBACKENDS\tINDEX")
	for _, z := range zones {
		idx := "-"
		if z.ModifyIndex > 0 {
			idx = strconv.FormatUint(z.ModifyIndex, 10)
		}
		evac := "no"
		if z.Evacuated {
			evac = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", z.Zone, evac, joinOr(z.Nodes, "-"), z.Backends, idx)
	}
	return tw.Flush()
}
