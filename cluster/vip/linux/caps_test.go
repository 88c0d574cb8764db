//go:build linux

package linux

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckCaps(t *testing.T) {
	status := func(eff string) *strings.Reader {
		return strings.NewReader("Name:\trafter\nCapInh:\t0000000000000000\nCapEff:\t" + eff + "\nCapBnd:\t000001ffffffffff\n")
	}
	if err := checkCaps(status("000001ffffffffff")); err != nil {
		t.Fatalf("root: %v", err)
	}
	if err := checkCaps(status("0000000000003000")); err != nil {
		t.Fatalf("exactly NET_ADMIN and NET_RAW: %v", err)
	}
	for eff, want := range map[string]string{
		"0000000000000000": "CAP_NET_ADMIN and CAP_NET_RAW",
		"0000000000002000": "needs CAP_NET_ADMIN (",
		"0000000000001000": "needs CAP_NET_RAW (",
	} {
		err := checkCaps(status(eff))
		if !errors.Is(err, ErrPermission) || !strings.Contains(err.Error(), want) {
			t.Errorf("CapEff %s: %v, want ErrPermission naming %q", eff, err, want)
		}
	}
	if err := checkCaps(strings.NewReader("Name:\trafter\n")); err == nil {
		t.Error("no CapEff line accepted")
	}
	if err := CheckCapabilities(); err != nil {
		t.Fatalf("this test runs as root (as CI does): %v", err)
	}
}
