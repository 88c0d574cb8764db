package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/rafterlb/rafter/api"
)

func TestACMEState(t *testing.T) {
	at := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		o    *api.ACMEOrderView
		want string
	}{
		{nil, ""},
		{&api.ACMEOrderView{State: "ordering"}, "ordering"},
		{&api.ACMEOrderView{State: "valid", RenewAt: at}, "valid, renews 2026-12-04T20:00:00Z"},
		{&api.ACMEOrderView{State: "failed", NextAttempt: at, LastError: "rate limited"}, "failed, retry 2026-12-04T20:00:00Z: rate limited"},
	} {
		if got := acmeState(tt.o); got != tt.want {
			t.Errorf("acmeState(%+v) = %q, want %q", tt.o, got, tt.want)
		}
	}
	long := acmeState(&api.ACMEOrderView{State: "failed", LastError: strings.Repeat("x", 500)})
	if len(long) > 200 {
		t.Fatalf("a long error is not shortened: %d bytes", len(long))
	}
}
