package httpapi

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

// MaxProfileSeconds bounds ?seconds= of /debug/pprof/profile and
// /debug/pprof/trace (and of the delta profiles that take it).
const MaxProfileSeconds = 120

// pprofRoutes serve Go's runtime profiles under /debug/pprof/. They need a
// read-write token: a profile shows the process's memory and code paths,
// and collecting a CPU profile or trace costs the node CPU while it runs.
func (s *server) pprofRoutes() []route {
	return []route{
		{"GET", "/debug/pprof/", accessWrite, s.handlePprof(pprof.Index)},
		{"GET", "/debug/pprof/cmdline", accessWrite, s.handlePprof(pprof.Cmdline)},
		{"GET", "/debug/pprof/profile", accessWrite, s.handlePprof(pprof.Profile)},
		{"GET", "/debug/pprof/symbol", accessWrite, s.handlePprof(pprof.Symbol)},
		{"POST", "/debug/pprof/symbol", accessWrite, s.handlePprof(pprof.Symbol)},
		{"GET", "/debug/pprof/trace", accessWrite, s.handlePprof(pprof.Trace)},
	}
}

// handlePprof checks ?seconds= and lets the write deadline cover the
// collection before handing the request to h.
func (s *server) handlePprof(h http.HandlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if v := r.URL.Query().Get("seconds"); v != "" {
			sec, err := strconv.Atoi(v)
			if err != nil || sec < 0 || sec > MaxProfileSeconds {
				return fmt.Errorf("seconds: %q is out of range 0..%d: %w", v, MaxProfileSeconds, fsm.ErrInvalid)
			}
			extendDeadlines(w, 0, s.cfg.Timeouts.Write+time.Duration(sec)*time.Second)
		}
		h(w, r)
		return nil
	}
}
