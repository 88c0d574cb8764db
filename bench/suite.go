package bench

import (
	"context"
	"log/slog"
	"time"
)

// Measurer produces one slice's figures. The real one drives wrk, the paced
// client and /proc; tests give fakes so the suite's logic runs without timing.
type Measurer interface {
	Saturation(ctx context.Context, proxy string, body int) (Measurement, error)
	Latency(ctx context.Context, proxy string, body int, rate float64) (Measurement, error)
}

// Clock is what the suite needs of time (tests pass a fixed one).
type Clock func() time.Time

// RunSuite measures every body size: the saturation rounds first, then the
// latency rounds at a rate derived from them. It returns the raw slices in
// the order run and, per latency group, the paced rate used. It stops early
// (returning what it has) when ctx ends.
func RunSuite(ctx context.Context, cfg Config, proxies []string, m Measurer, now Clock, log *slog.Logger) ([]Slice, []Group) {
	var all []Slice
	var groups []Group
	run := func(specs []SliceSpec, rate float64) []Slice {
		return runSpecs(ctx, specs, func(ctx context.Context, spec SliceSpec) (Measurement, error) {
			if spec.Phase == Saturation {
				return m.Saturation(ctx, spec.Proxy, spec.BodyBytes)
			}
			return m.Latency(ctx, spec.Proxy, spec.BodyBytes, rate)
		}, now, log)
	}
	for _, body := range cfg.BodySizes {
		sat := run(Schedule(Saturation, body, proxies, cfg.Reference, cfg.SaturationRounds), 0)
		all = append(all, sat...)
		rate := PacedRate(sat, proxies, cfg.LatencyLoad, cfg.MaxPacedRPS)
		log.Info("saturation done", "body_bytes", body, "paced_rps", rate)
		lat := run(Schedule(Latency, body, proxies, cfg.Reference, cfg.LatencyRounds), rate)
		all = append(all, lat...)
		groups = append(groups, Group{Phase: Latency, BodyBytes: body, PacedRPS: rate})
	}
	return all, groups
}

// runSpecs measures specs in order with measure, keeping failures as
// slices with their error, and stops early when ctx ends.
func runSpecs(ctx context.Context, specs []SliceSpec, measure func(context.Context, SliceSpec) (Measurement, error), now Clock, log *slog.Logger) []Slice {
	var out []Slice
	for _, spec := range specs {
		if ctx.Err() != nil {
			break
		}
		s := Slice{SliceSpec: spec, StartedAt: now()}
		var err error
		s.Measurement, err = measure(ctx, spec)
		if err != nil {
			s.Err = err.Error()
			log.Warn("slice failed", "slice", spec.String(), "err", err)
		} else {
			log.Debug("slice", "slice", spec.String(), "rps", s.RPS, "p99_ms", s.P99Ms, "cpu_us", s.CPUPerReqUs)
		}
		out = append(out, s)
	}
	return out
}
