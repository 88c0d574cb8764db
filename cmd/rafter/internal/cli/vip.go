package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/rafterlb/rafter/client"
	"github.com/rafterlb/rafter/fsm"
)

func newVIPCmd(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vip",
		Short: "Show where each VIP is, or move one to another node",
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "List every VIP with its holder, token and why it is there",
		Args:  cobra.NoArgs,
	}
	so := addAPIFlags(status, s)
	var output string
	status.Flags().StringVarP(&output, "output", "o", "table", "table | json | yaml")
	status.RunE = withClient(s, so, func(ctx context.Context, c *client.Client, _ []string) error {
		if output != "table" && output != "json" && output != "yaml" {
			return fmt.Errorf("-o/--output: want table, json or yaml, got %q", output)
		}
		vips, _, err := c.VIPs(ctx)
		if err != nil {
			return err
		}
		if output != "table" {
			if vips == nil {
				vips = []client.VIP{}
			}
			return writeValue(s.Out, vips, output)
		}
		return writeVIPs(s.Out, vips, time.Now())
	})
	move := &cobra.Command{
		Use:   "move NAME --to NODE",
		Short: "Move a VIP to NODE; it stays there (no failback) until moved again",
		Long: "Assign VIP NAME to NODE through the same Raft write and fencing as the leader's\n" +
			"own moves; the leader then moves the address. NODE must be a member, a candidate\n" +
			"of the VIP and not in an evacuated zone. An operator move is not undone by failback.",
		Args: cobra.ExactArgs(1),
	}
	mo := addAPIFlags(move, s)
	var to string
	move.Flags().StringVar(&to, "to", "", "the node to move the VIP to (required)")
	move.RunE = withClient(s, mo, func(ctx context.Context, c *client.Client, args []string) error {
		if to == "" {
			return errors.New("--to: required: the node to move the VIP to")
		}
		res, err := c.MoveVIP(ctx, args[0], to)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(s.Out, "vip %s assigned to %s (token %d)\n", args[0], res.Assignment.Holder, res.Assignment.Token)
		return err
	})
	cmd.AddCommand(status, move)
	return cmd
}

func writeVIPs(w io.Writer, vips []client.VIP, now time.Time) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "NAME\tPROVIDER\tADDRESS\tHOME\tHOLDER\tTOKEN\tSINCE\tREASON\tSETTLED")
	for _, v := range vips {
		addr := vipAddress(v.Spec)
		holder, token, since, reason, settled := "-", "-", "-", "-", "-"
		if a := v.Assignment; a != nil {
			holder, token = a.Holder, strconv.FormatUint(a.Token, 10)
			if !a.Since.IsZero() {
				since = now.Sub(a.Since).Round(time.Second).String() + " ago"
			}
			if a.Reason != "" {
				reason = a.Reason
			}
			settled = "no"
			if a.Settled {
				settled = "yes"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, v.Spec.Provider, orDash(addr),
			orDash(v.Spec.HomeNode), holder, token, since, reason, settled)
	}
	return tw.Flush()
}

// vipAddress is what the ADDRESS column shows of a VIP: its address,
// allocation, private IP or routed CIDR, whichever its provider uses.
func vipAddress(s fsm.VIPSpec) string {
	for _, a := range []string{s.Address, s.AllocationID, s.PrivateIP, s.CIDR} {
		if a != "" {
			return a
		}
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
