package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// ErrCorruptEntry: a log entry failed its checksum or is not framed as
// EncodeCommand frames entries. Applying it, or anything after it, would
// make this node's state differ from its peers' at the same index.
var ErrCorruptEntry = errors.New("corrupt log entry")

// A log entry is framed as
//
//	byte 0     frameV1 (0xC1)
//	bytes 1-4  CRC-32C (Castagnoli) of the payload, big endian
//	bytes 5-   payload: the command's JSON envelope {"type":..., "v":1, ...}
//
// An entry that starts with '{' is an unframed JSON envelope, as written
// before entries carried a checksum; it is still accepted so that logs
// written by an older build replay, but nothing protects it.
const (
	frameV1        byte = 0xC1
	frameHeaderLen      = 5
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frame prepends the frame header to payload.
func frame(payload []byte) []byte {
	b := make([]byte, frameHeaderLen+len(payload))
	b[0] = frameV1
	binary.BigEndian.PutUint32(b[1:frameHeaderLen], crc32.Checksum(payload, castagnoli))
	copy(b[frameHeaderLen:], payload)
	return b
}

// unframe returns the JSON payload of a log entry after checking its
// checksum; legacy reports an unframed (pre-checksum) entry.
func unframe(b []byte) (payload []byte, legacy bool, err error) {
	switch {
	case len(b) == 0:
		return nil, false, invalidf("", "malformed command: empty log entry")
	case b[0] == '{':
		return b, true, nil
	case b[0] != frameV1:
		return nil, false, fmt.Errorf("%w: unknown frame byte 0x%02x (want 0x%02x or an unframed JSON object)", ErrCorruptEntry, b[0], frameV1)
	case len(b) < frameHeaderLen:
		return nil, false, fmt.Errorf("%w: %d bytes, shorter than the %d-byte frame header", ErrCorruptEntry, len(b), frameHeaderLen)
	}
	payload = b[frameHeaderLen:]
	want := binary.BigEndian.Uint32(b[1:frameHeaderLen])
	if got := crc32.Checksum(payload, castagnoli); got != want {
		return nil, false, fmt.Errorf("%w: CRC-32C mismatch over %d payload bytes: stored %08x, computed %08x", ErrCorruptEntry, len(payload), want, got)
	}
	return payload, false, nil
}

// VerifyCommand checks a log entry's framing and checksum without decoding
// it; the error wraps ErrCorruptEntry. The Raft adapter calls it before
// Apply, so that a damaged entry stops the node instead of being consumed
// as a failed command.
func VerifyCommand(b []byte) error {
	_, _, err := unframe(b)
	if err != nil && !errors.Is(err, ErrCorruptEntry) {
		// An empty entry: not something EncodeCommand ever writes.
		return fmt.Errorf("%w: %w", ErrCorruptEntry, err)
	}
	return err
}
