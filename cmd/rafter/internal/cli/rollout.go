package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rafterlb/rafter/client"
	"github.com/rafterlb/rafter/fsm"
)

func newRolloutCmd(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Start a progressive canary rollout, follow it, pause, resume, promote or abort it",
	}
	cmd.AddCommand(newRolloutStartCmd(s), newRolloutStatusCmd(s))
	for _, a := range []struct{ action, short string }{
		{fsm.RolloutPause, "Stop judging the rollout; the split stays as it is"},
		{fsm.RolloutResume, "Resume a paused rollout; the current step's window starts again"},
		{fsm.RolloutPromote, "End the rollout now with all of its route's traffic on the canary"},
		{fsm.RolloutAbort, "End the rollout now with all of its route's traffic on the stable pool"},
	} {
		c := &cobra.Command{Use: a.action + " NAME", Short: a.short, Args: cobra.ExactArgs(1)}
		o := addAPIFlags(c, s)
		c.RunE = withClient(s, o, func(ctx context.Context, cl *client.Client, args []string) error {
			res, err := cl.RolloutAction(ctx, args[0], a.action)
			if err != nil {
				return err
			}
			state := "-"
			if res.Status != nil {
				state = fmt.Sprintf("%s, canary at %d%%", res.Status.State, res.Status.Weight)
			}
			_, err = fmt.Fprintf(s.Out, "rollout %s: %s at index %d (%s)\n", args[0], a.action, res.Index, state)
			return err
		})
		cmd.AddCommand(c)
	}
	return cmd
}

func newRolloutStartCmd(s Streams) *cobra.Command {
	c := &cobra.Command{
		Use:   "start NAME --route R --stable POOL --canary POOL --steps 10,50,100 --interval 30s",
		Short: "Create a rollout, which starts it at its first step",
		Long: "Create (or replace) rollout NAME: the route's split becomes steps[0] % to the canary,\n" +
			"and the leader moves it to the next step each interval while the canary's figures,\n" +
			"summed over every node, pass: at least --min-requests requests, an error rate at most\n" +
			"--max-error-rate, and a p99 at most --max-p99 (or --max-p99-ratio times the stable's).",
		Args: cobra.ExactArgs(1),
	}
	o := addAPIFlags(c, s)
	var spec fsm.RolloutSpec
	var steps, interval, maxP99, stickyHeader, stickyCookie string
	var maxErr float64
	f := c.Flags()
	f.StringVar(&spec.Route, "route", "", "the route whose split is rolled out (required)")
	f.StringVar(&spec.Stable, "stable", "", "the pool serving now (required)")
	f.StringVar(&spec.Canary, "canary", "", "the new version's pool (required)")
	f.StringVar(&steps, "steps", "1,5,25,50,100", "the canary's shares in percent, increasing, ending at 100")
	f.StringVar(&interval, "interval", "30s", "how long each step runs at least")
	f.IntVar(&spec.MinRequests, "min-requests", 0, "canary requests a step needs before it can pass (0: 100)")
	f.Float64Var(&maxErr, "max-error-rate", fsm.DefaultRolloutMaxErrorRate, "the canary's largest share of 5xx and connection failures, 0..1")
	f.StringVar(&maxP99, "max-p99", "", "the canary's largest p99 time to response head, e.g. 250ms")
	f.Float64Var(&spec.MaxP99Ratio, "max-p99-ratio", 0, "the canary's largest p99 relative to the stable pool's, e.g. 1.5")
	f.StringVar(&stickyHeader, "sticky-header", "", "keep each user on one side by this header")
	f.StringVar(&stickyCookie, "sticky-cookie", "", "keep each user on one side by this cookie")
	c.RunE = withClient(s, o, func(ctx context.Context, cl *client.Client, args []string) error {
		for _, r := range []struct{ flag, v string }{{"--route", spec.Route}, {"--stable", spec.Stable}, {"--canary", spec.Canary}} {
			if r.v == "" {
				return fmt.Errorf("%s: required", r.flag)
			}
		}
		var err error
		if spec.Steps, err = parseSteps(steps); err != nil {
			return err
		}
		d, err := time.ParseDuration(interval)
		if err != nil {
			return fmt.Errorf("--interval: %w", err)
		}
		spec.Interval = fsm.Duration(d)
		if maxP99 != "" {
			if d, err = time.ParseDuration(maxP99); err != nil {
				return fmt.Errorf("--max-p99: %w", err)
			}
			spec.MaxP99 = fsm.Duration(d)
		}
		spec.MaxErrorRate = &maxErr
		if stickyHeader != "" || stickyCookie != "" {
			spec.Sticky = &fsm.Sticky{Header: stickyHeader, Cookie: stickyCookie}
		}
		idx, err := cl.StartRollout(ctx, args[0], spec)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(s.Out, "rollout %s started at index %d: %d%% to %s\n", args[0], idx, spec.Steps[0], spec.Canary)
		return err
	})
	return c
}

func parseSteps(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(part), "%")))
		if err != nil {
			return nil, fmt.Errorf("--steps: %q is not a percentage", part)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("--steps: required")
	}
	return out, nil
}
