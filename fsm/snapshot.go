package fsm

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Snapshot layout:
//
//	magic   8 bytes  "RAFTSNAP"
//	version 4 bytes  big-endian, SnapshotVersion
//	length  8 bytes  big-endian, length of payload
//	payload          gzip-compressed JSON of the Config
//	sum     32 bytes sha256 of everything before it
//
// The length and trailing sum let ReadSnapshot tell a truncated or damaged
// file from a good one before it decodes anything.
const (
	snapshotMagic = "RAFTSNAP"
	// SnapshotVersion is the snapshot format this package writes and reads.
	SnapshotVersion = 1
	headerLen       = len(snapshotMagic) + 4 + 8
	// maxSnapshotBytes bounds what a damaged length field can make us read.
	maxSnapshotBytes = 1 << 34
	// maxDocumentBytes bounds the decompressed document.
	maxDocumentBytes = 1 << 34
)

// WriteSnapshot writes c in the versioned, compressed, checksummed format.
// The same Config always gives the same bytes.
func WriteSnapshot(w io.Writer, c *Config) error {
	if c == nil {
		return errors.New("write snapshot: nil config")
	}
	var payload bytes.Buffer
	zw, err := gzip.NewWriterLevel(&payload, gzip.DefaultCompression)
	if err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	cc := *c
	fillMaps(&cc)
	if err := json.NewEncoder(zw).Encode(&cc); err != nil {
		return fmt.Errorf("write snapshot: encode: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("write snapshot: compress: %w", err)
	}
	head := make([]byte, headerLen)
	copy(head, snapshotMagic)
	binary.BigEndian.PutUint32(head[8:], SnapshotVersion)
	binary.BigEndian.PutUint64(head[12:], uint64(payload.Len()))
	h := sha256.New()
	h.Write(head)
	h.Write(payload.Bytes())
	for _, part := range [][]byte{head, payload.Bytes(), h.Sum(nil)} {
		if _, err := w.Write(part); err != nil {
			return fmt.Errorf("write snapshot: %w", err)
		}
	}
	return nil
}

// ReadSnapshot reads and verifies a snapshot completely before returning
// it: a wrong magic, a bad length or checksum, truncation or trailing data
// give ErrCorruptSnapshot, another format version ErrUnsupportedVersion.
// It never returns a partly read Config.
func ReadSnapshot(r io.Reader) (*Config, error) {
	head := make([]byte, headerLen)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, corrupt("header: %v", err)
	}
	if string(head[:8]) != snapshotMagic {
		return nil, corrupt("not a rafter snapshot (bad magic)")
	}
	if v := binary.BigEndian.Uint32(head[8:]); v != SnapshotVersion {
		return nil, fmt.Errorf("%w: snapshot format %d (this build reads %d)", ErrUnsupportedVersion, v, SnapshotVersion)
	}
	n := binary.BigEndian.Uint64(head[12:])
	if n > maxSnapshotBytes {
		return nil, corrupt("payload length %d out of range", n)
	}
	var payload bytes.Buffer
	if got, err := io.CopyN(&payload, r, int64(n)); err != nil {
		return nil, corrupt("truncated payload: %d of %d bytes: %v", got, n, err)
	}
	sum := make([]byte, sha256.Size)
	if _, err := io.ReadFull(r, sum); err != nil {
		return nil, corrupt("truncated checksum: %v", err)
	}
	var extra [1]byte
	if k, _ := io.ReadFull(r, extra[:]); k != 0 {
		return nil, corrupt("trailing data after checksum")
	}
	h := sha256.New()
	h.Write(head)
	h.Write(payload.Bytes())
	if !bytes.Equal(h.Sum(nil), sum) {
		return nil, corrupt("checksum mismatch")
	}
	zr, err := gzip.NewReader(&payload)
	if err != nil {
		return nil, corrupt("decompress: %v", err)
	}
	doc, err := io.ReadAll(io.LimitReader(zr, maxDocumentBytes+1))
	if err != nil {
		return nil, corrupt("decompress: %v", err)
	}
	if len(doc) > maxDocumentBytes {
		return nil, corrupt("document too large")
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.DisallowUnknownFields()
	c := new(Config)
	if err := dec.Decode(c); err != nil {
		return nil, corrupt("decode: %v", err)
	}
	if dec.More() {
		return nil, corrupt("decode: %v", errTrailingData)
	}
	if err := checkDocument(c); err != nil {
		return nil, err
	}
	return c, nil
}

// checkDocument refuses a decoded document that the state machine could
// not have produced: nil entries or names that differ from their keys.
func checkDocument(c *Config) error {
	fillMaps(c)
	for k, v := range c.Listeners {
		if v == nil || v.Name != k {
			return corrupt("listener %q: name does not match key", k)
		}
	}
	for k, v := range c.Routes {
		if v == nil || v.Name != k {
			return corrupt("route %q: name does not match key", k)
		}
	}
	for k, v := range c.Pools {
		if v == nil || v.Name != k {
			return corrupt("pool %q: name does not match key", k)
		}
	}
	for k, v := range c.VIPs {
		if v == nil || v.Name != k {
			return corrupt("vip %q: name does not match key", k)
		}
	}
	for k, v := range c.Assignments {
		if v == nil || v.VIP != k {
			return corrupt("assignment %q: vip does not match key", k)
		}
	}
	for k, v := range c.Nodes {
		if v == nil || v.ID != k {
			return corrupt("node %q: id does not match key", k)
		}
	}
	for k, v := range c.Zones {
		if v == nil || v.Zone != k {
			return corrupt("zone %q: name does not match key", k)
		}
	}
	for k, v := range c.Rollouts {
		if v == nil || v.Name != k {
			return corrupt("rollout %q: name does not match key", k)
		}
	}
	for k, v := range c.RolloutStatus {
		if v == nil {
			return corrupt("rollout status %q: null", k)
		}
	}
	for k, v := range c.Certificates {
		if v == nil || v.Name != k {
			return corrupt("certificate %q: name does not match key", k)
		}
	}
	for k, v := range c.CertificateStatus {
		if v == nil {
			return corrupt("certificate status %q: null", k)
		}
	}
	for k, v := range c.Leases {
		if v == nil || v.ID != k {
			return corrupt("lease %d: id does not match key", k)
		}
	}
	return checkACMESnapshot(c)
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorruptSnapshot, fmt.Sprintf(format, args...))
}
