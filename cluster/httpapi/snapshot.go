package httpapi

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/rafterlb/rafter/fsm"
)

// ContentTypeSnapshot is the media type of GET /v1/snapshot answers and
// POST /v1/restore bodies: fsm.WriteSnapshot's format.
const ContentTypeSnapshot = "application/octet-stream"

// handleSnapshot answers the whole document (members, assignments and
// zones included) in the fsm snapshot format, so that what is saved is
// exactly what the state machine holds and is checksummed end to end.
func (s *server) handleSnapshot(w http.ResponseWriter, r *http.Request) error {
	cfg, done, err := s.load(w, r)
	if err != nil || done {
		return err
	}
	if cfg == nil {
		cfg = fsm.Empty()
	}
	// Encoded in full before the status is sent, so a failure still gets
	// a JSON error instead of a cut stream.
	var buf bytes.Buffer
	// No sealed value leaves the cluster through the API: a restore of
	// this backup keeps the keys the cluster has for unchanged chains.
	if err := fsm.WriteSnapshot(&buf, cfg.Redacted()); err != nil {
		return fmt.Errorf("encoding the snapshot: %w", err)
	}
	extendDeadlines(w, 0, s.cfg.Timeouts.Transfer)
	s.setMeta(w, cfg.Index)
	h := w.Header()
	h.Set("Content-Type", ContentTypeSnapshot)
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="rafter-%d.snap"`, cfg.Index))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
	return nil
}

// handleRestore replaces the managed objects with those of a snapshot, as
// one Raft entry: objects created after the snapshot are deleted, the
// cluster's members are kept. The body is verified completely before
// anything is proposed, so a damaged snapshot changes nothing.
func (s *server) handleRestore(w http.ResponseWriter, r *http.Request) error {
	dry, err := flag(r, "dry_run")
	if err != nil {
		return err
	}
	extendDeadlines(w, s.cfg.Timeouts.Transfer, s.cfg.Timeouts.Transfer)
	body, err := readBodyLimit(w, r, s.cfg.MaxSnapshotBytes)
	if err != nil {
		return err
	}
	if len(body) == 0 {
		return invalidParam("body", "request body is empty; want a snapshot as GET /v1/snapshot answers it")
	}
	snap, err := fsm.ReadSnapshot(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	return s.applyWithChanges(w, r, body, fsm.NewCommand(&fsm.Restore{Config: snap}), dry)
}

// readBodyLimit reads the whole request body within limit bytes.
func readBodyLimit(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		return nil, fmt.Errorf("reading request body: %w", err)
	}
	return b, nil
}
