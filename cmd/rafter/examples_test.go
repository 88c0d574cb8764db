package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/rafterlb/rafter/agent"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/testutil"
	"github.com/rafterlb/rafter/secrets"
)

// The example manifests must stay valid as the schema evolves.
func TestExamplesAreValid(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(files) < 2 {
		t.Fatalf("example manifests not found: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := fsm.ParseManifest(b)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			base := fsm.Empty()
			if name := filepath.Base(f); name == "demo.yaml" || name == "tls.yaml" {
				// demo.yaml is applied on top of `rafter dev`'s manifest.
				dev, err := fsm.ParseManifest(agent.DemoManifest(8080, []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}))
				if err != nil {
					t.Fatalf("dev manifest: %v", err)
				}
				if base, err = fsm.Next(base, 1, fsm.ApplyCommand(dev)); err != nil {
					t.Fatalf("dev manifest: %v", err)
				}
				if name == "tls.yaml" {
					// tls.yaml names a certificate stored before it.
					base = withCertificate(t, base, "app")
				}
			}
			if _, err := fsm.Next(base, base.Index+1, fsm.ApplyCommand(objs)); err != nil {
				t.Fatalf("apply: %v", err)
			}
		})
	}
}

// withCertificate stores certificate name in c as the admin API would
// (its key sealed).
func withCertificate(t *testing.T, c *fsm.Config, name string) *fsm.Config {
	t.Helper()
	cert, key := testutil.Cert(t, testutil.CertOptions{Names: []string{"app.example.com"}})
	text, err := secrets.Generate()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := secrets.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := kr.Seal([]byte(key), secrets.CertificateKeyAAD(name))
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := json.Marshal(fsm.CertificateSpec{Cert: cert, EncryptedKey: sealed})
	next, err := fsm.Next(c, c.Index+1, fsm.PutCommand(fsm.Object{Kind: fsm.KindCertificate, Name: name, Spec: spec}, nil))
	if err != nil {
		t.Fatal(err)
	}
	return next
}
