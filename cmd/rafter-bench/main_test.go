package main

import (
	"io"
	"slices"
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
