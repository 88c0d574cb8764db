package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/fsm"
)

// Leases is what the lease endpoints need (*lease.Manager implements it).
// On a follower every method returns an error wrapping
// cluster.ErrNotLeader, and the request is forwarded to the leader.
type Leases interface {
	Grant(ctx context.Context, ttl time.Duration) (fsm.Lease, error)
	KeepAlive(ctx context.Context, id uint64) (time.Duration, error)
	Revoke(ctx context.Context, id uint64) (uint64, error)
}

// errNoLeases: the node runs without a lease manager.
var errNoLeases = errors.New("leases are not served by this node")

// registrationFields maps the members of a registration body to b's fields.
func registrationFields(b *api.BackendRegistration) map[string]any {
	return map[string]any{"lease": &b.Lease, "weight": &b.Weight, "zone": &b.Zone}
}

func (s *server) leaseRoutes() []route {
	return []route{
		{"POST", "/v1/leases", accessWrite, s.handleLeaseGrant},
		{"PUT", "/v1/leases/{id}/keepalive", accessWrite, s.handleLeaseKeepAlive},
		{"DELETE", "/v1/leases/{id}", accessWrite, s.handleLeaseRevoke},
		{"PUT", "/v1/pools/{name}/backends/{addr}", accessWrite, s.handleBackendRegister},
		{"DELETE", "/v1/pools/{name}/backends/{addr}", accessWrite, s.handleBackendDeregister},
	}
}

// decodeFields reads a small JSON object whose members go to fields by
// name; an unknown member or a value of the wrong form is refused naming
// that member.
func decodeFields(body []byte, fields map[string]any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return invalidParam("", "request body is empty; want a JSON object")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return jsonProblem("", body, err)
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		dst, ok := fields[k]
		if !ok {
			return invalidParam(k, "unknown field (want %s)", strings.Join(slices.Sorted(maps.Keys(fields)), ", "))
		}
		if err := json.Unmarshal(m[k], dst); err != nil {
			return invalidParam(k, "%v", err)
		}
	}
	return nil
}

func leaseID(r *http.Request) (uint64, error) {
	v := r.PathValue("id")
	id, err := strconv.ParseUint(v, 10, 64)
	if err != nil || id == 0 {
		return 0, invalidParam("id", "want a lease id (a positive integer), got %q", v)
	}
	return id, nil
}

// leaseOf returns the lease manager and the id of the lease named by r's
// path.
func (s *server) leaseOf(r *http.Request) (Leases, uint64, error) {
	ls, err := s.leases()
	if err != nil {
		return nil, 0, err
	}
	id, err := leaseID(r)
	if err != nil {
		return nil, 0, err
	}
	return ls, id, nil
}

func (s *server) leases() (Leases, error) {
	if s.cfg.Leases == nil {
		return nil, fmt.Errorf("%w: %w", errNoLeases, errNoRoute)
	}
	return s.cfg.Leases, nil
}

func (s *server) handleLeaseGrant(w http.ResponseWriter, r *http.Request) error {
	ls, err := s.leases()
	if err != nil {
		return err
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	var req api.LeaseGrant
	if err := decodeFields(body, map[string]any{"ttl": &req.TTL}); err != nil {
		return err
	}
	if req.TTL == 0 {
		return invalidParam("ttl", "required (e.g. \"30s\"; %v..%v)", fsm.MinLeaseTTL, fsm.MaxLeaseTTL)
	}
	l, err := ls.Grant(r.Context(), req.TTL.D())
	if err != nil {
		return s.forwardOrFail(w, r, body, err)
	}
	return s.answer(w, http.StatusOK, l.ID, api.Lease{ID: l.ID, TTL: l.TTL, Index: l.ID})
}

func (s *server) handleLeaseKeepAlive(w http.ResponseWriter, r *http.Request) error {
	ls, id, err := s.leaseOf(r)
	if err != nil {
		return err
	}
	ttl, err := ls.KeepAlive(r.Context(), id)
	if err != nil {
		return s.forwardOrFail(w, r, nil, err)
	}
	return s.answer(w, http.StatusOK, 0, api.Lease{ID: id, TTL: fsm.Duration(ttl)})
}

func (s *server) handleLeaseRevoke(w http.ResponseWriter, r *http.Request) error {
	ls, id, err := s.leaseOf(r)
	if err != nil {
		return err
	}
	idx, err := ls.Revoke(r.Context(), id)
	if err != nil {
		return s.forwardOrFail(w, r, nil, err)
	}
	return s.answer(w, http.StatusOK, idx, api.WriteResult{Index: idx})
}

func (s *server) handleBackendRegister(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	var req api.BackendRegistration
	if err := decodeFields(body, registrationFields(&req)); err != nil {
		return err
	}
	if req.Lease == 0 {
		return invalidParam("lease", "required: the id of the lease the backend is attached to")
	}
	weight := 1
	if req.Weight != nil {
		weight = *req.Weight
	}
	cmd := fsm.BackendRegisterCommand(r.PathValue("name"), fsm.Backend{
		Addr: r.PathValue("addr"), Lease: req.Lease, Weight: weight, Zone: req.Zone,
	})
	return s.applyBackend(w, r, body, cmd)
}

func (s *server) handleBackendDeregister(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	var req api.BackendRegistration
	if len(bytes.TrimSpace(body)) > 0 {
		if err := decodeFields(body, registrationFields(&req)); err != nil {
			return err
		}
	}
	cmd := fsm.BackendDeregisterCommand(r.PathValue("name"), r.PathValue("addr"), req.Lease)
	return s.applyBackend(w, r, body, cmd)
}

// applyBackend writes a backend registration command, or forwards its
// request to the leader.
func (s *server) applyBackend(w http.ResponseWriter, r *http.Request, body []byte, cmd *fsm.Command) error {
	idx, err := s.store.Apply(r.Context(), cmd)
	if err != nil {
		return s.forwardOrFail(w, r, body, backendFields(err))
	}
	return s.answer(w, http.StatusOK, idx, api.WriteResult{Index: idx})
}

// backendFields names the fields of a registration command as the request
// does: "backend.lease" is the body's "lease", "backend.addr" the path's
// addr.
func backendFields(err error) error {
	var fe *fsm.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	f, ok := strings.CutPrefix(fe.Field, "backend.")
	if !ok {
		return err
	}
	return &fsm.FieldError{Field: f, Message: fe.Message, Err: fe.Err}
}
