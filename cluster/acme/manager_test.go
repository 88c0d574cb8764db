package acme

import (
	"context"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

func TestDue(t *testing.T) {
	now := time.Unix(10_000, 0)
	r := Request{Certificate: "c", SpecIndex: 7, Issuer: "i", Domains: []string{"a.example.com"}}
	for _, tt := range []struct {
		name string
		st   *fsm.ACMEStatus
		want bool
	}{
		{"never ordered", nil, true},
		{"spec changed since", &fsm.ACMEStatus{State: fsm.ACMEValid, SpecIndex: 6, RenewAt: now.Add(time.Hour)}, true},
		{"spec changed after a failure", &fsm.ACMEStatus{State: fsm.ACMEFailed, SpecIndex: 6, NextAttempt: now.Add(time.Hour)}, true},
		{"a predecessor's order", &fsm.ACMEStatus{State: fsm.ACMEOrdering, SpecIndex: 7}, true},
		{"valid, before renew_at", &fsm.ACMEStatus{State: fsm.ACMEValid, SpecIndex: 7, RenewAt: now.Add(time.Second)}, false},
		{"valid, at renew_at", &fsm.ACMEStatus{State: fsm.ACMEValid, SpecIndex: 7, RenewAt: now}, true},
		{"failed, backing off", &fsm.ACMEStatus{State: fsm.ACMEFailed, SpecIndex: 7, NextAttempt: now.Add(time.Second)}, false},
		{"failed, retry time", &fsm.ACMEStatus{State: fsm.ACMEFailed, SpecIndex: 7, NextAttempt: now.Add(-time.Second)}, true},
	} {
		if got := Due(tt.st, r, now); got != tt.want {
			t.Errorf("%s: Due = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestTwoThirds(t *testing.T) {
	nb := time.Unix(0, 0)
	if got := TwoThirds(nb, nb.Add(90*24*time.Hour)); !got.Equal(nb.Add(60 * 24 * time.Hour)) {
		t.Fatalf("TwoThirds of 90 days = %v", got.Sub(nb))
	}
}

// TestBackoff: doubling from RetryMin, capped at RetryMax, each within
// ±20 % jitter, and not all equal (the jitter spreads retries).
func TestBackoff(t *testing.T) {
	m, err := New(Config{Store: nopStore{}, Sealer: nopSealer{}, Propagation: nopPropagation{},
		RetryMin: time.Minute, RetryMax: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		n    int
		base time.Duration
	}{{1, time.Minute}, {2, 2 * time.Minute}, {3, 4 * time.Minute}, {7, time.Hour}, {1000, time.Hour}} {
		seen := map[time.Duration]bool{}
		for range 50 {
			d := m.backoff(tt.n)
			lo, hi := tt.base*4/5, tt.base*6/5
			if d < lo || d > hi {
				t.Fatalf("backoff(%d) = %v, want within %v..%v", tt.n, d, lo, hi)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Fatalf("backoff(%d) has no jitter", tt.n)
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New accepted a config without store")
	}
	if _, err := New(Config{Store: nopStore{}, Sealer: nopSealer{}, Propagation: nopPropagation{}, Tick: -1}); err == nil {
		t.Fatal("New accepted a negative tick")
	}
	if _, err := New(Config{Store: nopStore{}, Sealer: nopSealer{}, Propagation: nopPropagation{},
		RetryMin: time.Hour, RetryMax: time.Minute}); err == nil {
		t.Fatal("New accepted retry_max below retry_min")
	}
}

func TestRequests(t *testing.T) {
	cfg := &fsm.Config{Certificates: map[string]*fsm.Certificate{
		"b":      {Name: "b", ModifyIndex: 3, Spec: fsm.CertificateSpec{ACME: &fsm.CertificateACME{Domains: []string{"b.example.com"}, Issuer: "i"}}},
		"a":      {Name: "a", ModifyIndex: 5, Spec: fsm.CertificateSpec{ACME: &fsm.CertificateACME{Domains: []string{"a.example.com"}, Issuer: "i"}}},
		"inline": {Name: "inline", ModifyIndex: 4, Spec: fsm.CertificateSpec{Cert: "x", EncryptedKey: "y"}},
	}}
	got := Requests(cfg)
	if len(got) != 2 || got[0].Certificate != "a" || got[0].SpecIndex != 5 || got[1].Certificate != "b" {
		t.Fatalf("Requests = %+v", got)
	}
}

type nopStore struct{}

func (nopStore) Config() *fsm.Config                                 { return fsm.Empty() }
func (nopStore) Apply(context.Context, *fsm.Command) (uint64, error) { return 0, nil }
func (nopStore) VerifyLeader(context.Context) error                  { return nil }

type nopSealer struct{}

func (nopSealer) Seal(p, _ []byte) (string, error)        { return string(p), nil }
func (nopSealer) Open(s string, _ []byte) ([]byte, error) { return []byte(s), nil }

type nopPropagation struct{}

func (nopPropagation) WaitApplied(context.Context, uint64) error { return nil }
