package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rafterlb/rafter/bench"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(bench.Config) bool
		wantErr bool
	}{
		{"default", nil, func(c bench.Config) bool { return len(c.BodySizes) == 3 && c.Install && c.Cluster.Enabled }, false},
		{"quick", []string{"--quick"}, func(c bench.Config) bool { return slices.Equal(c.BodySizes, []int{1024}) }, false},
		{"proxies", []string{"--proxies", "haproxy,nginx", "--no-cluster", "--no-install"},
			func(c bench.Config) bool { return len(c.Proxies) == 2 && !c.Cluster.Enabled && !c.Install }, false},
		{"unknown proxy", []string{"--proxies", "haproxy,envoy"}, nil, true},
		{"stray argument", []string{"now"}, nil, true},
		{"summarize", []string{"--summarize", "r.json", "-v"}, func(bench.Config) bool { return true }, false},
		{"cluster sizes", []string{"--cluster-only", "--routes", "1000", "--route-writes", "30", "--writes", "40"},
			func(c bench.Config) bool {
				return c.Cluster.Enabled && c.Cluster.Routes == 1000 && c.Cluster.RouteWrites == 30 && c.Cluster.Writes == 40
			}, false},
		{"no large manifest", []string{"--routes", "0"}, func(c bench.Config) bool { return c.Cluster.Routes == 0 }, false},
		{"cluster-only without cluster", []string{"--cluster-only", "--no-cluster"}, nil, true},
		{"too many routes", []string{"--routes", "100001"}, nil, true},
		{"two rafter builds", []string{"--main-only", "--proxies", "haproxy,rafter,rafter-b", "--rafter-b", "/tmp/rafter-b",
			"--body-sizes", "0,65536", "--rounds", "5"},
			func(c bench.Config) bool {
				return c.RafterBBin == "/tmp/rafter-b" && slices.Equal(c.BodySizes, []int{0, 65536}) &&
					c.SaturationRounds == 5 && c.LatencyRounds == 5 && c.NoExtras && c.IdleConns == 0 && !c.Cluster.Enabled
			}, false},
		{"rafter-b without its binary", []string{"--proxies", "haproxy,rafter-b"}, nil, true},
		{"body size not a number", []string{"--body-sizes", "1k"}, nil, true},
		{"main-only with cluster-only", []string{"--main-only", "--cluster-only"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := parse(tt.args, io.Discard)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && !tt.check(cfg) {
				t.Fatalf("config %+v", cfg)
			}
		})
	}
}

func TestSummarizeNeedsAResultsFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"schema":"other"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	err := run(context.Background(), []string{"--summarize", bad}, &out, io.Discard)
	if !errors.Is(err, bench.ErrSchema) || out.Len() != 0 {
		t.Fatalf("run = %v, printed %q; want ErrSchema and nothing printed", err, out.String())
	}
	_, opts, err := parse([]string{"--summarize", bad, "-v"}, io.Discard)
	if err != nil || opts.summarize != bad || !opts.verbose {
		t.Fatalf("parse = %+v, %v", opts, err)
	}
}
