package fsm

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers test with errors.Is; the admin API maps them to
// HTTP statuses in one place.
var (
	ErrInvalid            = errors.New("invalid")   // 400
	ErrNotFound           = errors.New("not found") // 404
	ErrConflict           = errors.New("conflict")  // 409 (CAS mismatch, name in use, still referenced)
	ErrCorruptSnapshot    = errors.New("corrupt snapshot")
	ErrUnsupportedVersion = errors.New("unsupported version")
)

// FieldError says which field of a command, object or manifest was refused
// and why. Err is one of the sentinel errors above.
type FieldError struct {
	Field   string // path such as "routes/app.spec.match.path.regex" or "documents[2].spec.port"
	Message string
	Err     error // one of the sentinels; Unwrap returns it
}

// Error returns "FIELD: MESSAGE" (or just MESSAGE when no field applies).
func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// Unwrap returns the sentinel error, so errors.Is(err, ErrInvalid) works.
func (e *FieldError) Unwrap() error { return e.Err }

func invalidf(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...), Err: ErrInvalid}
}

func conflictf(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...), Err: ErrConflict}
}

func notFoundf(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...), Err: ErrNotFound}
}

// prefixed returns err with its field path placed under prefix. Errors that
// are not *FieldError are returned unchanged.
func prefixed(prefix string, err error) error {
	var fe *FieldError
	if prefix == "" || !errors.As(err, &fe) {
		return err
	}
	return &FieldError{Field: joinPath(prefix, fe.Field), Message: fe.Message, Err: fe.Err}
}

// joinPath joins two field path parts: "documents[1]" + "spec.port".
func joinPath(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	case b[0] == '[':
		return a + b
	default:
		return a + "." + b
	}
}
