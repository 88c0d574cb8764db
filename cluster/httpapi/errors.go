package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/fsm"
)

// Errors of the API itself; fsm and cluster sentinels are the others.
var (
	errUnauthorized     = errors.New("missing or unknown bearer token")
	errForbidden        = errors.New("read-only token used for a write")
	errNoRoute          = errors.New("not found")
	errMethodNotAllowed = errors.New("method not allowed")
	// errLeaderUnreachable: forwarding to the leader failed before an
	// answer arrived; like no leader, worth retrying shortly.
	errLeaderUnreachable = errors.New("leader unreachable")
	// errNotLeaderProbe: a probe reached a node that does not lead (or
	// could not confirm it does).
	errNotLeaderProbe = errors.New("this node cannot answer probes")
)

// Error codes of the {"error": {"code": ...}} body.
const (
	CodeInvalid          = "invalid"
	CodeNotFound         = "not_found"
	CodeConflict         = "conflict"
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeNoLeader         = "no_leader"
	CodeUnavailable      = "unavailable"
	CodeTimeout          = "timeout"
	CodeTooLarge         = "too_large"
	CodeInternal         = "internal"
)

// errorStatus is the one place errors become statuses. retry is true for
// answers that carry Retry-After.
func errorStatus(err error) (status int, detail api.ErrorDetail, retry bool) {
	detail.Message = err.Error()
	var fe *fsm.FieldError
	if errors.As(err, &fe) {
		// The field error says all there is to say; the wrapping only adds
		// context ("manifest: ...") that would repeat the field path.
		detail.Field = fe.Field
		detail.Message = fe.Error()
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.Is(err, errNoSecretsKey):
		status, d := noSecretsKeyStatus(err)
		d.Field = detail.Field
		return status, d, false
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, api.ErrorDetail{Code: CodeTooLarge, Message: err.Error()}, false
	case errors.Is(err, errUnauthorized):
		return http.StatusUnauthorized, api.ErrorDetail{Code: CodeUnauthorized, Message: err.Error()}, false
	case errors.Is(err, errForbidden):
		return http.StatusForbidden, api.ErrorDetail{Code: CodeForbidden, Message: err.Error()}, false
	// The fsm sentinels come before FieldError: a FieldError may wrap
	// ErrNotFound or ErrConflict.
	case errors.Is(err, fsm.ErrNotFound), errors.Is(err, errNoRoute):
		detail.Code = CodeNotFound
		return http.StatusNotFound, detail, false
	case errors.Is(err, fsm.ErrConflict):
		detail.Code = CodeConflict
		return http.StatusConflict, detail, false
	case errors.Is(err, fsm.ErrInvalid), fe != nil,
		errors.Is(err, fsm.ErrCorruptSnapshot), errors.Is(err, fsm.ErrUnsupportedVersion):
		detail.Code = CodeInvalid
		return http.StatusBadRequest, detail, false
	case errors.Is(err, errMethodNotAllowed):
		return http.StatusMethodNotAllowed, api.ErrorDetail{Code: CodeMethodNotAllowed, Message: err.Error()}, false
	case errors.Is(err, cluster.ErrNoLeader), errors.Is(err, cluster.ErrNotLeader), errors.Is(err, errLeaderUnreachable),
		errors.Is(err, errNotLeaderProbe):
		return http.StatusServiceUnavailable, api.ErrorDetail{Code: CodeNoLeader, Message: err.Error()}, true
	case errors.Is(err, cluster.ErrShutdown):
		return http.StatusServiceUnavailable, api.ErrorDetail{Code: CodeUnavailable, Message: err.Error()}, true
	case errors.Is(err, cluster.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, api.ErrorDetail{Code: CodeTimeout, Message: err.Error()}, false
	default:
		return http.StatusInternalServerError, api.ErrorDetail{Code: CodeInternal, Message: err.Error()}, false
	}
}

// writeError answers err as JSON. A request whose client went away gets
// no answer: nobody is left to read it.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil && errors.Is(err, context.Canceled) {
		s.log.Debug("admin request abandoned by client", "method", r.Method, "path", r.URL.Path)
		return
	}
	status, detail, retry := errorStatus(err)
	switch {
	case status >= 500 && status != http.StatusServiceUnavailable && status != http.StatusGatewayTimeout:
		s.log.Error("admin request failed", "method", r.Method, "path", r.URL.Path, "err", err,
			"action", "err says what failed; if it is not the disk or the network, report it as a bug")
	default:
		s.log.Debug("admin request refused", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	if retry {
		w.Header().Set("Retry-After", "1")
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="rafter"`)
	}
	s.setMeta(w, 0)
	writeJSON(w, status, api.ErrorBody{Error: detail})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only values built by this package reach here; they always marshal.
		b = []byte(`{"error":{"code":"internal","message":"encoding the answer failed"}}`)
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
