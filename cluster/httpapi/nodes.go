package httpapi

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/cluster"
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

// handleNodeJoin adds a voter (leader only; a follower forwards).
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
	if err := s.store.AddVoter(r.Context(), info); err != nil {
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
