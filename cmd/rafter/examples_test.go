package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rafterlb/rafter/agent"
	"github.com/rafterlb/rafter/fsm"
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
			if filepath.Base(f) == "demo.yaml" {
				// demo.yaml is applied on top of `rafter dev`'s manifest.
				dev, err := fsm.ParseManifest(agent.DemoManifest(8080, []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}))
				if err != nil {
					t.Fatalf("dev manifest: %v", err)
				}
				if base, err = fsm.Next(base, 1, fsm.ApplyCommand(dev)); err != nil {
					t.Fatalf("dev manifest: %v", err)
				}
			}
			if _, err := fsm.Next(base, base.Index+1, fsm.ApplyCommand(objs)); err != nil {
				t.Fatalf("apply: %v", err)
			}
		})
	}
}
