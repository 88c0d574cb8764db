package httpapi

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/fsm"
)

//go:embed openapi.json
var openAPIDoc []byte

func (s *server) handleStatus(w http.ResponseWriter, r *http.Request) error {
	return s.answer(w, http.StatusOK, 0, s.store.Status())
}

func (s *server) handlePeer(w http.ResponseWriter, r *http.Request) error {
	return s.answer(w, http.StatusOK, 0, s.store.PeerInfo())
}

func (s *server) handleOpenAPI(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(openAPIDoc)
	return nil
}

// handleNodeJoin adds a voter, or a non-voter for role proxy (leader
// only; a follower forwards).
func (s *server) handleNodeJoin(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	var info cluster.PeerInfo
	if err := decodeStrict(body, &info); err != nil {
		return jsonProblem("body", body, err)
	}
	switch {
	case info.ID == "":
		return invalidParam("id", "required")
	case info.RaftAddr == "":
		return invalidParam("raft_addr", "required")
	}
	if err := fsm.CheckRole(info.Role); err != nil {
		return invalidParam("role", "%q is not voter or proxy", info.Role)
	}
	if err := s.store.AddMember(r.Context(), info); err != nil {
		return s.forwardOrFail(w, r, body, fmt.Errorf("adding node %s: %w", info.ID, err))
	}
	idx := s.store.Config().Index
	return s.answer(w, http.StatusOK, idx, api.WriteResult{Index: idx})
}

// handleNodeRemove removes a server (leader only; a follower forwards).
func (s *server) handleNodeRemove(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := s.store.RemoveServer(r.Context(), id); err != nil {
		return s.forwardOrFail(w, r, nil, fmt.Errorf("removing node %s: %w", id, err))
	}
	idx := s.store.Config().Index
	return s.answer(w, http.StatusOK, idx, api.WriteResult{Index: idx})
}

// handleSuffrage promotes (or demotes) the node in the path, or with list
// the nodes a SuffrageChange body names, in one request (leader only; a
// follower forwards).
func (s *server) handleSuffrage(promote, list bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var body []byte
		ids := []string{r.PathValue("id")}
		if list {
			var err error
			if body, err = s.readBody(w, r); err != nil {
				return err
			}
			var req api.SuffrageChange
			if err := decodeStrict(body, &req); err != nil {
				return jsonProblem("body", body, err)
			}
			ids = req.IDs
		}
		change, verb := s.store.Demote, "demoting"
		if promote {
			change, verb = s.store.Promote, "promoting"
		}
		voters, err := change(r.Context(), ids)
		if err != nil {
			return s.forwardOrFail(w, r, body, fmt.Errorf("%s %v: %w", verb, ids, err))
		}
		idx := s.store.Config().Index
		return s.answer(w, http.StatusOK, idx, api.SuffrageResult{Index: idx, Voters: voters})
	}
}

// decodeStrict decodes one JSON value, rejecting unknown fields and
// trailing data.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("unexpected data after the JSON value")
	}
	return nil
}
