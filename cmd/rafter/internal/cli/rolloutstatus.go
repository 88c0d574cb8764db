package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/rafterlb/rafter/client"
	"github.com/rafterlb/rafter/fsm"
)

func newRolloutStatusCmd(s Streams) *cobra.Command {
	c := &cobra.Command{
		Use:   "status [NAME]",
		Short: "Show each rollout's state, step and share, and with NAME the figures of every finished step",
		Args:  cobra.MaximumNArgs(1),
	}
	o := addAPIFlags(c, s)
	var output string
	c.Flags().StringVarP(&output, "output", "o", "table", "table | json | yaml")
	c.RunE = withClient(s, o, func(ctx context.Context, cl *client.Client, args []string) error {
		if output != "table" && output != "json" && output != "yaml" {
			return fmt.Errorf("-o/--output: want table, json or yaml, got %q", output)
		}
		var rs []client.Rollout
		if len(args) == 1 {
			r, _, err := cl.Rollout(ctx, args[0])
			if err != nil {
				return err
			}
			rs = []client.Rollout{r}
		} else {
			var err error
			if rs, _, err = cl.Rollouts(ctx); err != nil {
				return err
			}
		}
		if output != "table" {
			if rs == nil {
				rs = []client.Rollout{}
			}
			if len(args) == 1 {
				return writeValue(s.Out, rs[0], output)
			}
			return writeValue(s.Out, rs, output)
		}
		if err := writeRollouts(s.Out, rs); err != nil {
			return err
		}
		if len(args) == 1 {
			return writeRolloutSteps(s.Out, rs[0])
		}
		return nil
	})
	return c
}

func writeRollouts(w io.Writer, rs []client.Rollout) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "NAME\tROUTE\tSTABLE\tCANARY\tSTATE\tSTEP\tSHARE\tREASON")
	for _, r := range rs {
		state, step, share, reason := "-", "-", "-", "-"
		if st := r.Status; st != nil {
			state = st.State
			step = fmt.Sprintf("%d/%d", st.Step+1, len(r.Spec.Steps))
			share = strconv.Itoa(st.Weight) + "%"
			reason = orDash(st.Reason)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Spec.Route, r.Spec.Stable, r.Spec.Canary, state, step, share, reason)
	}
	return tw.Flush()
}

// writeRolloutSteps lists the finished steps with the figures that
// decided them.
func writeRolloutSteps(w io.Writer, r client.Rollout) error {
	if r.Status == nil || len(r.Status.History) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := newTable(w)
	fmt.Fprintln(tw, "STEP\tWEIGHT\tRESULT\tREQUESTS\tERRORS\tERROR RATE\tP99\tSTABLE P99\tOBSERVED SHARE\tNODES\tTERM")
	for _, h := range r.Status.History {
		f := h.Figures
		if f == nil {
			f = &fsm.RolloutFigures{}
		}
		fmt.Fprintf(tw, "%d\t%d%%\t%s\t%d\t%d\t%.4f\t%v\t%v\t%.1f%%\t%d\t%d\n", h.Step+1, h.Weight, h.Result,
			f.Requests, f.Errors, f.ErrorRate, f.P99.D(), f.StableP99.D(), f.Share, f.Nodes, h.Term)
	}
	return tw.Flush()
}
