package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rafterlb/rafter/secrets"
)

func TestKeygen(t *testing.T) {
	p := filepath.Join(t.TempDir(), "secrets.key")
	out, err := runCLI(t, "", "", "keygen", p)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := secrets.LoadFile(p)
	if err != nil {
		t.Fatalf("the written key file does not load: %v", err)
	}
	if !strings.Contains(out, kr.ID()) || !strings.Contains(out, "--secrets-key-file") {
		t.Fatalf("output does not name the key id and the flag:\n%s", out)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %04o, want 0600", st.Mode().Perm())
	}
	if _, err := runCLI(t, "", "", "keygen", p); err == nil {
		t.Fatal("keygen overwrote an existing key file")
	}
	if again, err := secrets.LoadFile(p); err != nil || again.ID() != kr.ID() {
		t.Fatalf("the key file changed: %v", err)
	}
}
