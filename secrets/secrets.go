package secrets

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// KeySize is the size of a secrets key: AES-256.
const KeySize = 32

// Bounds on what Open and the key file reader accept.
const (
	// MaxKeys bounds the keys of one key file (one sealing, the rest
	// kept to open what older keys sealed).
	MaxKeys = 8
	// maxKeyFile bounds the key file's size.
	maxKeyFile = 64 << 10
	// MaxSealed bounds a sealed value Open accepts.
	MaxSealed = 1 << 20
)

// sealedPrefix starts every sealed value: format version 1.
const sealedPrefix = "rs1:"

// idLen is the length in hex digits of a key id.
const idLen = 16

var (
	// ErrNoKey: this node has no secrets key (no --secrets-key-file).
	ErrNoKey = errors.New("no secrets key: start the node with --secrets-key-file (write one with `rafter keygen FILE` and copy the same file to every node)")
	// ErrUnknownKey: the value was sealed with a key this node does not have.
	ErrUnknownKey = errors.New("sealed with a secrets key this node does not have")
	// ErrMalformed: not a sealed value, or one that fails authentication.
	ErrMalformed = errors.New("malformed or tampered sealed value")
)

// key is one AES-256-GCM key with its id.
type key struct {
	id   string // hex of the first 8 bytes of SHA-256 of the key
	aead cipher.AEAD
}

// Keyring holds the secrets keys of a node: the first seals, all open. A
// nil *Keyring has no key: Seal and Open return ErrNoKey.
type Keyring struct {
	keys []key
}

// New makes a keyring of raw 32-byte keys, the first one sealing.
func New(raw ...[]byte) (*Keyring, error) {
	if len(raw) == 0 {
		return nil, errors.New("secrets: no key")
	}
	if len(raw) > MaxKeys {
		return nil, fmt.Errorf("secrets: %d keys, at most %d", len(raw), MaxKeys)
	}
	kr := &Keyring{}
	seen := map[string]bool{}
	for i, r := range raw {
		if len(r) != KeySize {
			return nil, fmt.Errorf("secrets: key %d is %d bytes, want %d", i+1, len(r), KeySize)
		}
		block, err := aes.NewCipher(r)
		if err != nil {
			return nil, fmt.Errorf("secrets: key %d: %w", i+1, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("secrets: key %d: %w", i+1, err)
		}
		id := KeyID(r)
		if seen[id] {
			return nil, fmt.Errorf("secrets: key %d repeats key %s", i+1, id)
		}
		seen[id] = true
		kr.keys = append(kr.keys, key{id: id, aead: aead})
	}
	return kr, nil
}

// KeyID names a raw key without revealing it: the hex of the first 8
// bytes of its SHA-256. Logs and errors name keys by it.
func KeyID(raw []byte) string {
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:idLen/2])
}

// ID is the id of the sealing key, or "" for a nil keyring.
func (k *Keyring) ID() string {
	if k == nil || len(k.keys) == 0 {
		return ""
	}
	return k.keys[0].id
}

// IDs lists the ids of every key, the sealing one first.
func (k *Keyring) IDs() []string {
	if k == nil {
		return nil
	}
	out := make([]string, len(k.keys))
	for i, kk := range k.keys {
		out[i] = kk.id
	}
	return out
}

// Seal encrypts plaintext bound to aad (which names what the value is,
// so one sealed value cannot stand in for another) and returns
// "rs1:<key id>:<base64 of nonce and ciphertext>".
func (k *Keyring) Seal(plaintext, aad []byte) (string, error) {
	if k == nil || len(k.keys) == 0 {
		return "", ErrNoKey
	}
	kk := k.keys[0]
	nonce := make([]byte, kk.aead.NonceSize(), kk.aead.NonceSize()+len(plaintext)+kk.aead.Overhead())
	if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
		return "", fmt.Errorf("secrets: nonce: %w", err)
	}
	out := kk.aead.Seal(nonce, nonce, plaintext, aad)
	return sealedPrefix + kk.id + ":" + base64.RawStdEncoding.EncodeToString(out), nil
}

// SealedKeyID returns the id of the key that sealed s.
func SealedKeyID(s string) (string, error) {
	id, _, err := split(s)
	return id, err
}

func split(s string) (id, body string, err error) {
	if len(s) > MaxSealed {
		return "", "", fmt.Errorf("%w: %d bytes, at most %d", ErrMalformed, len(s), MaxSealed)
	}
	rest, ok := strings.CutPrefix(s, sealedPrefix)
	if !ok {
		return "", "", fmt.Errorf("%w: no %q prefix", ErrMalformed, sealedPrefix)
	}
	id, body, ok = strings.Cut(rest, ":")
	if !ok || len(id) != idLen {
		return "", "", fmt.Errorf("%w: no key id", ErrMalformed)
	}
	return id, body, nil
}

// Open decrypts a value Seal returned with the same aad. A value sealed
// with a key this node lacks gives ErrUnknownKey naming that key's id.
func (k *Keyring) Open(sealed string, aad []byte) ([]byte, error) {
	if k == nil || len(k.keys) == 0 {
		return nil, ErrNoKey
	}
	id, body, err := split(sealed)
	if err != nil {
		return nil, err
	}
	for _, kk := range k.keys {
		if kk.id != id {
			continue
		}
		raw, err := base64.RawStdEncoding.DecodeString(body)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		ns := kk.aead.NonceSize()
		if len(raw) < ns+kk.aead.Overhead() {
			return nil, fmt.Errorf("%w: too short", ErrMalformed)
		}
		pt, err := kk.aead.Open(nil, raw[:ns], raw[ns:], aad)
		if err != nil {
			return nil, fmt.Errorf("%w: authentication failed", ErrMalformed)
		}
		return pt, nil
	}
	return nil, fmt.Errorf("%w: it was sealed with key %s, this node has %s; copy the cluster's secrets key file to this node (--secrets-key-file) and restart it", ErrUnknownKey, id, strings.Join(k.IDs(), ", "))
}

// CertificateKeyAAD binds a sealed certificate private key to the
// certificate's name, for CertificateSpec.EncryptedKey and
// CertificateStatus.EncryptedKey alike.
func CertificateKeyAAD(name string) []byte {
	return []byte("rafter/certificate-key/" + name)
}

// ACMEEABKeyAAD binds a sealed ACME external account binding HMAC key to
// its issuer's name, for ACMEEAB.EncryptedHMACKey.
func ACMEEABKeyAAD(issuer string) []byte {
	return []byte("rafter/acme-eab-hmac-key/" + issuer)
}

// TicketKeyAAD binds a sealed TLS session-ticket key.
func TicketKeyAAD() []byte { return []byte("rafter/tls-ticket-key") }

// keyFileHeader starts a key file Generate writes.
const keyFileHeader = "# rafter secrets key (AES-256-GCM). Every node of the cluster needs this\n" +
	"# same file (--secrets-key-file), mode 0600. The first key seals; later\n" +
	"# ones only open what they sealed before a rotation.\n"

// Generate returns the text of a new key file holding one random key.
func Generate() ([]byte, error) {
	raw := make([]byte, KeySize)
	if _, err := io.ReadFull(rand.Reader, raw); err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	return []byte(keyFileHeader + base64.StdEncoding.EncodeToString(raw) + "\n"), nil
}

// WriteKeyFile writes a new key file at path with mode 0600; it refuses
// to overwrite an existing file (a lost key makes every sealed key
// unreadable).
func WriteKeyFile(path string) (id string, err error) {
	text, err := Generate()
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("write secrets key: %w", err)
	}
	if _, err := f.Write(text); err != nil {
		f.Close()
		return "", fmt.Errorf("write secrets key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", fmt.Errorf("write secrets key: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write secrets key: %w", err)
	}
	kr, err := Parse(text)
	if err != nil {
		return "", err
	}
	return kr.ID(), nil
}

// Parse reads the text of a key file: one base64 key per line, the
// sealing key first; blank lines and lines starting with "#" are
// comments.
func Parse(text []byte) (*Keyring, error) {
	if len(text) > maxKeyFile {
		return nil, fmt.Errorf("secrets key file: %d bytes, at most %d", len(text), maxKeyFile)
	}
	var raw [][]byte
	sc := bufio.NewScanner(bytes.NewReader(text))
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) != KeySize {
			return nil, fmt.Errorf("secrets key file: line %d is not a base64 %d-byte key (write a key file with `rafter keygen FILE`)", line, KeySize)
		}
		raw = append(raw, b)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("secrets key file: %w", err)
	}
	if len(raw) == 0 {
		return nil, errors.New("secrets key file: no key in it (write one with `rafter keygen FILE`)")
	}
	kr, err := New(raw...)
	if err != nil {
		return nil, fmt.Errorf("secrets key file: %w", err)
	}
	return kr, nil
}

// LoadFile reads a key file. It refuses a file that group or others may
// read or write: the key opens every certificate key of the cluster.
func LoadFile(path string) (*Keyring, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("--secrets-key-file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("--secrets-key-file %s: mode %04o lets others read it; run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	if st.Size() > maxKeyFile {
		return nil, fmt.Errorf("--secrets-key-file %s: %d bytes, at most %d", path, st.Size(), maxKeyFile)
	}
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--secrets-key-file: %w", err)
	}
	kr, err := Parse(text)
	if err != nil {
		return nil, fmt.Errorf("--secrets-key-file %s: %w", path, err)
	}
	return kr, nil
}
