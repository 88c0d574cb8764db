//go:build linux

package linux

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Capability bits (linux/capability.h).
const (
	bitNetAdmin = 12
	bitNetRaw   = 13
)

// CheckCapabilities tells, at start, whether this process can hold Linux
// VIPs: adding addresses needs CAP_NET_ADMIN and gratuitous ARP needs
// CAP_NET_RAW. The error names what is missing and how to grant it.
func CheckCapabilities() error {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return fmt.Errorf("vip/linux: reading capabilities: %w", err)
	}
	defer f.Close()
	return checkCaps(f)
}

func checkCaps(status io.Reader) error {
	sc := bufio.NewScanner(status)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		eff, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return fmt.Errorf("vip/linux: reading capabilities: CapEff %q: %w", strings.TrimSpace(v), err)
		}
		var missing []string
		if eff&(1<<bitNetAdmin) == 0 {
			missing = append(missing, capNetAdmin)
		}
		if eff&(1<<bitNetRaw) == 0 {
			missing = append(missing, capNetRaw)
		}
		if len(missing) == 0 {
			return nil
		}
		caps := strings.Join(missing, " ")
		return fmt.Errorf("%w: holding linux VIPs needs %s (run as root, or grant them: systemd AmbientCapabilities=%s, or setcap)",
			ErrPermission, strings.Join(missing, " and "), caps)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("vip/linux: reading capabilities: %w", err)
	}
	return fmt.Errorf("vip/linux: reading capabilities: no CapEff line")
}
