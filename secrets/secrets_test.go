package secrets

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func testKeyring(t *testing.T) *Keyring {
	t.Helper()
	text, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func TestSealOpen(t *testing.T) {
	kr := testKeyring(t)
	pt := []byte("-----BEGIN PRIVATE KEY-----\nsecret\n")
	s1, err := kr.Seal(pt, CertificateKeyAAD("web"))
	if err != nil {
		t.Fatal(err)
	}
	s2, err := kr.Seal(pt, CertificateKeyAAD("web"))
	if err != nil {
		t.Fatal(err)
	}
	if s1 == s2 {
		t.Fatal("two seals of one value are equal: the nonce is not random")
	}
	if strings.Contains(s1, "secret") || !strings.HasPrefix(s1, "rs1:"+kr.ID()+":") {
		t.Fatalf("sealed value %q", s1)
	}
	got, err := kr.Open(s1, CertificateKeyAAD("web"))
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if id, err := SealedKeyID(s1); err != nil || id != kr.ID() {
		t.Fatalf("SealedKeyID = %q, %v", id, err)
	}
}

func TestOpenRefuses(t *testing.T) {
	kr := testKeyring(t)
	other := testKeyring(t)
	s, err := kr.Seal([]byte("k"), CertificateKeyAAD("a"))
	if err != nil {
		t.Fatal(err)
	}
	flip := []byte(s)
	flip[len(flip)-2] ^= 1
	for _, tt := range []struct {
		name   string
		kr     *Keyring
		sealed string
		aad    []byte
		want   error
	}{
		{"other name", kr, s, CertificateKeyAAD("b"), ErrMalformed},
		{"ticket aad", kr, s, TicketKeyAAD(), ErrMalformed},
		{"eab aad", kr, s, ACMEEABKeyAAD("a"), ErrMalformed},
		{"tampered", kr, string(flip), CertificateKeyAAD("a"), ErrMalformed},
		{"no prefix", kr, "abc", nil, ErrMalformed},
		{"no id", kr, "rs1:abc", nil, ErrMalformed},
		{"truncated", kr, s[:len("rs1:")+idLen+3], CertificateKeyAAD("a"), ErrMalformed},
		{"huge", kr, "rs1:" + strings.Repeat("a", MaxSealed), nil, ErrMalformed},
		{"other key", other, s, CertificateKeyAAD("a"), ErrUnknownKey},
		{"no key", nil, s, CertificateKeyAAD("a"), ErrNoKey},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.kr.Open(tt.sealed, tt.aad)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open: %v, want %v", err, tt.want)
			}
		})
	}
	_, err = other.Open(s, CertificateKeyAAD("a"))
	if !strings.Contains(err.Error(), kr.ID()) || !strings.Contains(err.Error(), "--secrets-key-file") {
		t.Fatalf("unknown key error %q names neither the key id nor the flag", err)
	}
	if _, err := (*Keyring)(nil).Seal([]byte("x"), nil); !errors.Is(err, ErrNoKey) || !strings.Contains(err.Error(), "--secrets-key-file") {
		t.Fatalf("Seal without key: %v", err)
	}
}

// TestRotation: a key file with a new key first and the old one after it
// seals with the new key and still opens what the old one sealed.
func TestRotation(t *testing.T) {
	oldText, _ := Generate()
	newText, _ := Generate()
	oldKR, err := Parse(oldText)
	if err != nil {
		t.Fatal(err)
	}
	sealedOld, err := oldKR.Seal([]byte("old"), TicketKeyAAD())
	if err != nil {
		t.Fatal(err)
	}
	both, err := Parse(append(append([]byte{}, newText...), oldText...))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := both.Open(sealedOld, TicketKeyAAD()); err != nil || string(got) != "old" {
		t.Fatalf("open old: %q %v", got, err)
	}
	s, err := both.Seal([]byte("new"), TicketKeyAAD())
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := SealedKeyID(s); id == oldKR.ID() || id != both.ID() {
		t.Fatalf("sealed with %s, want the first key %s", id, both.ID())
	}
	if len(both.IDs()) != 2 {
		t.Fatalf("IDs = %v", both.IDs())
	}
}

func TestParseRefuses(t *testing.T) {
	good, _ := Generate()
	for name, text := range map[string]string{
		"empty":     "",
		"comments":  "# nothing\n\n",
		"not b64":   "!!!\n",
		"short key": "AAAA\n",
		"repeated":  string(good) + string(good),
		"too many":  strings.Repeat(string(mustGen(t)), MaxKeys+1),
		"huge":      strings.Repeat("#", maxKeyFile+1),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse([]byte(text)); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func mustGen(t *testing.T) []byte {
	b, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "secrets.key")
	id, err := WriteKeyFile(p)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %04o, want 0600", st.Mode().Perm())
	}
	kr, err := LoadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if kr.ID() != id {
		t.Fatalf("id %s, want %s", kr.ID(), id)
	}
	if _, err := WriteKeyFile(p); err == nil {
		t.Fatal("overwrote an existing key file")
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(p); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key file: %v", err)
	}
	if _, err := LoadFile(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "--secrets-key-file") {
		t.Fatalf("missing key file: %v", err)
	}
}
