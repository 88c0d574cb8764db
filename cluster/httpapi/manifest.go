package httpapi

import (
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/fsm"
)

// handleApply applies a whole manifest as one command. A dry run needs
// only read access: it changes nothing and tells no more than a read.
func (s *server) handleApply(w http.ResponseWriter, r *http.Request) error {
	dry, err := flag(r, "dry_run")
	if err != nil {
		return err
	}
	if !dry {
		if err := s.authorize(r, accessWrite); err != nil {
			return err
		}
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	objs, err := fsm.ParseManifest(body)
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	if err := s.sealKeys(objs, func(i int) string { return fmt.Sprintf("documents[%d].spec", i) }); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	return s.applyWithChanges(w, r, body, fsm.ApplyCommand(objs), dry)
}

// applyWithChanges proposes a whole-document command (apply, restore) and
// answers the changes it makes; a dry run answers them without writing.
func (s *server) applyWithChanges(w http.ResponseWriter, r *http.Request, body []byte, cmd *fsm.Command, dry bool) error {
	cur := s.store.Config()
	if cur == nil {
		cur = fsm.Empty()
	}
	next, nextErr := fsm.Next(cur, cur.Index+1, cmd)
	if dry {
		if nextErr != nil {
			return nextErr
		}
		return s.answer(w, http.StatusOK, cur.Index, api.ApplyResult{Changes: nonNil(fsm.Diff(cur, next))})
	}
	// The leader decides validity: a follower's state may be behind, so a
	// local verdict is not final and the request goes to Apply either way.
	idx, err := s.store.Apply(r.Context(), cmd)
	if err != nil {
		return s.forwardOrFail(w, r, body, err)
	}
	// The changes are those against the state this node had when the
	// request arrived; on the leader that is the state the entry applied
	// to unless another write raced in between.
	var changes []fsm.Change
	if nextErr == nil {
		changes = fsm.Diff(cur, next)
	}
	return s.answer(w, http.StatusOK, idx, api.ApplyResult{Index: idx, Changes: nonNil(changes)})
}

func nonNil(c []fsm.Change) []fsm.Change {
	if c == nil {
		return []fsm.Change{}
	}
	return c
}

// exportFormat picks "yaml" or "json" from ?format, else from Accept; JSON
// is the default.
func exportFormat(r *http.Request) (string, error) {
	if f := r.URL.Query().Get("format"); f != "" {
		switch strings.ToLower(f) {
		case "json":
			return "json", nil
		case "yaml", "yml":
			return "yaml", nil
		}
		return "", invalidParam("format", "want yaml or json, got %q", f)
	}
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case "application/json":
			return "json", nil
		case "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml":
			return "yaml", nil
		}
	}
	return "json", nil
}

// handleExport answers the whole document as a manifest that POST
// /v1/apply takes back unchanged.
func (s *server) handleExport(w http.ResponseWriter, r *http.Request) error {
	format, err := exportFormat(r)
	if err != nil {
		return err
	}
	cfg, done, err := s.load(w, r)
	if err != nil || done {
		return err
	}
	b, err := fsm.MarshalManifest(cfg.Objects(), format)
	if err != nil {
		return fmt.Errorf("exporting the configuration: %w", err)
	}
	s.setMeta(w, cfg.Index)
	ct := "application/json"
	if format == "yaml" {
		ct = "application/yaml"
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	return nil
}
