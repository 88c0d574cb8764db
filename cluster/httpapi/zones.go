package httpapi

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/fsm"
)

func zoneParam(r *http.Request) (string, error) {
	z := r.PathValue("zone")
	if err := fsm.CheckZoneName(z); err != nil {
		return "", err
	}
	return z, nil
}

// zoneViews lists every zone cfg knows of, sorted by name.
func zoneViews(cfg *fsm.Config) []api.Zone {
	byName := map[string]*api.Zone{}
	view := func(z string) *api.Zone {
		v, ok := byName[z]
		if !ok {
			v = &api.Zone{Zone: z, Nodes: []string{}}
			byName[z] = v
		}
		return v
	}
	for _, zs := range cfg.Zones {
		if zs == nil || zs.Zone == "" {
			continue
		}
		v := view(zs.Zone)
		v.Evacuated, v.ModifyIndex = zs.Evacuated, zs.ModifyIndex
	}
	for id, n := range cfg.Nodes {
		if n != nil && n.Zone != "" {
			v := view(n.Zone)
			v.Nodes = append(v.Nodes, id)
		}
	}
	for _, p := range cfg.Pools {
		if p == nil {
			continue
		}
		for _, b := range p.Spec.Backends {
			if b.Zone != "" {
				view(b.Zone).Backends++
			}
		}
	}
	out := make([]api.Zone, 0, len(byName))
	for _, v := range byName {
		sort.Strings(v.Nodes)
		out = append(out, *v)
	}
	slices.SortFunc(out, func(a, b api.Zone) int { return strings.Compare(a.Zone, b.Zone) })
	return out
}

func (s *server) handleZoneList(w http.ResponseWriter, r *http.Request) error {
	cfg, done, err := s.load(w, r)
	if err != nil || done {
		return err
	}
	if cfg == nil {
		cfg = fsm.Empty()
	}
	return s.answer(w, http.StatusOK, cfg.Index, api.ZoneList{Items: zoneViews(cfg), Index: cfg.Index})
}

func (s *server) handleZoneGet(w http.ResponseWriter, r *http.Request) error {
	z, err := zoneParam(r)
	if err != nil {
		return err
	}
	cfg, done, err := s.load(w, r)
	if err != nil || done {
		return err
	}
	if cfg == nil {
		cfg = fsm.Empty()
	}
	for _, v := range zoneViews(cfg) {
		if v.Zone == z {
			return s.answer(w, http.StatusOK, cfg.Index, v)
		}
	}
	return fmt.Errorf("zone %q: no node, backend or zone state names it: %w", z, fsm.ErrNotFound)
}

// handleZoneEvacuate evacuates (POST) or restores (DELETE) a zone: the
// data plane of every node stops (or resumes) sending requests to the
// backends in it. Leader only; a follower forwards.
func (s *server) handleZoneEvacuate(evacuate bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		z, err := zoneParam(r)
		if err != nil {
			return err
		}
		cmd := fsm.NewCommand(&fsm.ZoneChange{Zone: &fsm.ZoneState{Zone: z, Evacuated: evacuate}})
		idx, err := s.store.Apply(r.Context(), cmd)
		if err != nil {
			return s.forwardOrFail(w, r, nil, err)
		}
		cfg := s.store.Config()
		if cfg == nil {
			cfg = fsm.Empty()
		}
		resp := api.ZoneResult{Index: idx, Zone: z, Evacuated: evacuate}
		resp.Warning, resp.StrandedPools = zoneWarning(cfg, z, evacuate)
		if resp.Warning != "" {
			s.log.Warn("zone change", "zone", z, "evacuated", evacuate, "warning", resp.Warning)
		}
		return s.answer(w, http.StatusOK, idx, resp)
	}
}

// zoneWarning tells the operator what a zone change may have done wrong:
// evacuating z left pools with no backend to send to, or z names nothing
// the cluster knows (a typo changes no traffic). cfg is the state after
// the write; z's new state is laid over it in case cfg lags behind.
func zoneWarning(cfg *fsm.Config, z string, evacuate bool) (string, []string) {
	known := false
	for _, v := range zoneViews(cfg) {
		if v.Zone == z && (len(v.Nodes) > 0 || v.Backends > 0) {
			known = true
		}
	}
	if !evacuate {
		if !known {
			return fmt.Sprintf("no node or backend is in zone %q: restoring it changes no traffic", z), nil
		}
		return "", nil
	}
	evacuated := func(zone string) bool {
		if zone == "" {
			return false // the data plane never evacuates backends without a zone
		}
		if zone == z {
			return true
		}
		zs, ok := cfg.Zones[zone]
		return ok && zs != nil && zs.Evacuated
	}
	var stranded []string
	for name, p := range cfg.Pools {
		if p == nil || len(p.Spec.Backends) == 0 {
			continue
		}
		left := false
		for _, b := range p.Spec.Backends {
			if !b.Drain && !evacuated(b.Zone) {
				left = true
				break
			}
		}
		if !left {
			stranded = append(stranded, name)
		}
	}
	sort.Strings(stranded)
	switch {
	case len(stranded) > 0:
		return fmt.Sprintf("evacuating zone %q leaves no backend outside evacuated zones in pool(s) %s: they answer 503 until a zone is restored or backends are added",
			z, strings.Join(stranded, ", ")), stranded
	case !known:
		return fmt.Sprintf("no node or backend is in zone %q: evacuating it changes no traffic now (check the name)", z), nil
	}
	return "", nil
}
