package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// sampleManifest is the manifest from the design document.
const sampleManifest = `kind: listener
name: web
spec: {port: 8080}
---
kind: pool
name: app
spec:
  balancer: round_robin          # round_robin | least_request | random | hash
  zone_aware: true
  health_check: {path: /healthz, interval: 2s, timeout: 1s, rise: 2, fall: 3}
  backends:
    - {addr: 10.0.1.10:8080, zone: us-east-1a, weight: 1}
    - {addr: 10.0.2.10:8080, zone: us-east-1b, weight: 1}
---
kind: route
name: app
spec:
  listener: web
  match: {hosts: [app.example.com], path: {prefix: /}}
  action:
    split: [{pool: app, weight: 100}]
---
kind: vip
name: edge-a
spec: {provider: aws-eip, allocation_id: eipalloc-0123, home_node: n1}
`

func u64(v uint64) *uint64 { return &v }

func obj(kind Kind, name, spec string) Object {
	return Object{Kind: kind, Name: name, Spec: json.RawMessage(spec)}
}

// mustNext applies cmd and fails the test on error.
func mustNext(t testing.TB, c *Config, cmd *Command) *Config {
	t.Helper()
	next, err := Next(c, c.Index+1, cmd)
	if err != nil {
		t.Fatalf("Next(%s): %v", cmd.Type, err)
	}
	return next
}

// baseConfig holds three nodes, listener web, pools app and other, and route app.
func baseConfig(t testing.TB) *Config {
	t.Helper()
	c := Empty()
	for _, n := range []string{"n1", "n2", "n3"} {
		c = mustNext(t, c, NewCommand(&NodeUpsert{Node: &Node{ID: n, Zone: "z-" + n, RaftAddr: "127.0.0.1:7701"}}))
	}
	c = mustNext(t, c, ApplyCommand([]Object{
		obj(KindListener, "web", `{"port":8080}`),
		obj(KindPool, "app", `{"backends":[{"addr":"10.0.0.1:80"}]}`),
		obj(KindPool, "other", `{}`),
		obj(KindRoute, "app", `{"listener":"web","action":{"split":[{"pool":"app","weight":1}]}}`),
	}))
	return c
}

// snapshotBytes is the canonical serialized form of c, for comparisons.
func snapshotBytes(t testing.TB, c *Config) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteSnapshot(&buf, c); err != nil {
		t.Fatalf("WriteSnapshot: %v", err)
	}
	return buf.Bytes()
}

// wantFieldError checks err is a *FieldError for field wrapping sentinel.
func wantFieldError(t testing.TB, err error, field string, sentinel error) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v at %q", sentinel, field)
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *FieldError", err, err)
	}
	if fe.Field != field {
		t.Fatalf("error field = %q, want %q (error: %v)", fe.Field, field, err)
	}
	if !errors.Is(err, sentinel) {
		t.Fatalf("error %v does not wrap %v", err, sentinel)
	}
}

var fixedTime = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// document is c as the replicated document: without what c records of
// how it was made, which no encoding or comparison of documents holds.
func document(c *Config) Config {
	d := *c
	d.routesFrom = nil
	return d
}
