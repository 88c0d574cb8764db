package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/fsm"
)

func item(cfg *fsm.Config, o fsm.Object) api.Item {
	it := api.Item{Kind: o.Kind, Name: o.Name, Spec: o.Spec, ModifyIndex: o.ModifyIndex}
	if o.Kind == fsm.KindVIP && cfg.Assignments != nil {
		if a, ok := cfg.Assignments[o.Name]; ok && a != nil && a.Holder != "" {
			it.Assignment = &api.VIPAssignment{Holder: a.Holder, Token: a.Token, Since: a.Since, Reason: a.Reason, Settled: a.Settled}
		}
	}
	if o.Kind == fsm.KindRollout {
		it.Status = cfg.RolloutStatus[o.Name]
	}
	if o.Kind == fsm.KindCertificate {
		it.Certificate = certificateView(cfg, o.Name)
	}
	return it
}

// answer writes a successful JSON answer whose headers reflect at least index.
func (s *server) answer(w http.ResponseWriter, status int, index uint64, v any) error {
	s.setMeta(w, index)
	writeJSON(w, status, v)
	return nil
}

func (s *server) handleList(kind fsm.Kind) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		cfg, done, err := s.load(w, r)
		if err != nil || done {
			return err
		}
		objs := cfg.List(kind)
		resp := api.List{Items: make([]api.Item, 0, len(objs)), Index: cfg.Index}
		for _, o := range objs {
			resp.Items = append(resp.Items, item(cfg, o))
		}
		return s.answer(w, http.StatusOK, cfg.Index, resp)
	}
}

func (s *server) handleGet(kind fsm.Kind) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		cfg, done, err := s.load(w, r)
		if err != nil || done {
			return err
		}
		name := r.PathValue("name")
		o, ok := cfg.Get(kind, name)
		if !ok {
			return fmt.Errorf("%s %q: %w", kind, name, fsm.ErrNotFound)
		}
		return s.answer(w, http.StatusOK, cfg.Index, item(cfg, o))
	}
}

func (s *server) handlePut(kind fsm.Kind) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		cas, err := casParam(r)
		if err != nil {
			return err
		}
		body, err := s.readBody(w, r)
		if err != nil {
			return err
		}
		var spec json.RawMessage
		if err := json.Unmarshal(body, &spec); err != nil {
			return jsonProblem("spec", body, err)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, spec); err != nil {
			return jsonProblem("spec", body, err)
		}
		obj := fsm.Object{Kind: kind, Name: r.PathValue("name"), Spec: compact.Bytes()}
		objs := []fsm.Object{obj}
		if err := s.sealKeys(objs, func(int) string { return "spec" }); err != nil {
			return err
		}
		idx, err := s.store.Apply(r.Context(), fsm.PutCommand(objs[0], cas))
		if err != nil {
			return s.forwardOrFail(w, r, body, err)
		}
		return s.answer(w, http.StatusOK, idx, api.WriteResult{Index: idx})
	}
}

func (s *server) handleDelete(kind fsm.Kind) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		cas, err := casParam(r)
		if err != nil {
			return err
		}
		idx, err := s.store.Apply(r.Context(), fsm.DeleteCommand(kind, r.PathValue("name"), cas))
		if err != nil {
			return s.forwardOrFail(w, r, nil, err)
		}
		return s.answer(w, http.StatusOK, idx, api.WriteResult{Index: idx})
	}
}
