package httpapi

import (
	"fmt"
	"testing"

	"github.com/rafterlb/rafter/fsm"
)

// A field error reaches the client as "FIELD: MESSAGE" once, whatever
// context the handlers wrapped around it.
func TestFieldErrorMessageNamesFieldOnce(t *testing.T) {
	fe := &fsm.FieldError{Field: "documents[0].spec.port", Message: "must be 1..65535", Err: fsm.ErrInvalid}
	status, detail, _ := errorStatus(fmt.Errorf("manifest: %w", fe))
	if status != 400 || detail.Field != fe.Field {
		t.Fatalf("status %d field %q", status, detail.Field)
	}
	if want := "documents[0].spec.port: must be 1..65535"; detail.Message != want {
		t.Fatalf("message %q, want %q", detail.Message, want)
	}
}
