package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/fsm"
)

// The event stream (GET /v1/events) behind the dashboard.
const (
	// DefaultEventInterval is how often the stream gathers the cluster's
	// members, health verdicts and request counters.
	DefaultEventInterval = time.Second
	// eventStreamMax ends a stream after this long; the client connects
	// again (as after a blocking read's wait).
	eventStreamMax = maxWait
	// rateWindowSeconds is the span request rates are computed over.
	rateWindowSeconds = 10
	// maxViewItems bounds each kind's list in a ConfigView.
	maxViewItems = 1000
	// viewHistory is how many history entries a ConfigView carries.
	viewHistory = 50
)

// handleEvents streams server-sent events: "config" (api.ConfigView) at
// once and whenever the configuration changes; "members"
// (api.ClusterStatus), "health" (api.ClusterHealth) and "stats"
// (api.Rates) at once and then every EventInterval. Each gathering asks
// every member with the caller's credentials and a deadline shorter than
// the interval, so one silent member delays no event.
func (s *server) handleEvents(w http.ResponseWriter, r *http.Request) error {
	rc := http.NewResponseController(w)
	extendDeadlines(w, eventStreamMax+s.cfg.Timeouts.Read, eventStreamMax+s.cfg.Timeouts.Write)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	ctx, cancel := context.WithTimeout(r.Context(), eventStreamMax)
	defer cancel()
	interval := s.cfg.EventInterval
	gather := interval * 8 / 10
	auth := r.Header.Get("Authorization")
	send := func(event string, v any) bool {
		b, err := json.Marshal(v)
		if err != nil {
			return false
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	// The first comment line tells a client the stream is open before the
	// first gathering completes.
	if _, err := fmt.Fprint(w, ": rafter events\nretry: 1000\n\n"); err != nil || rc.Flush() != nil {
		return nil
	}
	window := rateWindow{keep: rateWindowSeconds}
	start := time.Now()
	var sentIndex uint64
	sentConfig := false
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for tick := true; ; {
		changed := s.store.Changed()
		if cfg := s.store.Config(); cfg != nil && (!sentConfig || cfg.Index != sentIndex) {
			if !send("config", s.configView(cfg)) {
				return nil
			}
			sentConfig, sentIndex = true, cfg.Index
		}
		if tick {
			var (
				wg     sync.WaitGroup
				status api.ClusterStatus
				health api.ClusterHealth
				stats  api.ClusterStats
			)
			wg.Go(func() { status = s.statusCluster(ctx, auth, gather) })
			wg.Go(func() { health = s.healthCluster(ctx, auth, gather) })
			wg.Go(func() { stats = s.statsCluster(ctx, auth, gather) })
			wg.Wait()
			if ctx.Err() != nil {
				return nil
			}
			rates := window.add(time.Since(start).Seconds(), stats)
			if !send("members", status) || !send("health", health) || !send("stats", rates) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.stopping:
			return nil
		case <-changed:
			tick = false
		case <-ticker.C:
			tick = true
		}
	}
}

// configView is cfg as the dashboard shows it.
func (s *server) configView(cfg *fsm.Config) api.ConfigView {
	v := api.ConfigView{Index: cfg.Index, Zones: zoneViews(cfg)}
	list := func(kind fsm.Kind, name string) []api.Item {
		objs := cfg.List(kind)
		if len(objs) > maxViewItems {
			objs = objs[:maxViewItems]
			v.Truncated = append(v.Truncated, name)
		}
		out := make([]api.Item, 0, len(objs))
		for _, o := range objs {
			out = append(out, item(cfg, o))
		}
		return out
	}
	v.Listeners = list(fsm.KindListener, "listeners")
	v.Routes = list(fsm.KindRoute, "routes")
	v.Pools = list(fsm.KindPool, "pools")
	v.VIPs = list(fsm.KindVIP, "vips")
	if s.cfg.History != nil {
		v.History = s.cfg.History.View(viewHistory)
	} else {
		v.History = api.History{Index: cfg.Index, Entries: []api.HistoryEntry{}, VIPMoves: []api.HistoryEntry{}}
	}
	return v
}
