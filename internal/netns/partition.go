//go:build linux

package netns

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
)

// nftTable is the rig's table in the bridge namespace's bridge family.
const nftTable = "rafter_partition"

// Partition cuts the bridge so that members of different groups cannot
// reach each other; members of one group still can. Roles in no group (the
// client, unless listed) reach everyone. Packets are dropped silently, not
// rejected, so peers see what a real partition looks like: timeouts.
// A new Partition replaces the previous one.
func (r *Rig) Partition(groups ...[]string) {
	r.t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		r.t.Fatalf("netns rig: partitions need nftables (`nft` not found): install it with `apt-get install -y nftables`")
	}
	groupOf := map[string]int{}
	for gi, g := range groups {
		for _, role := range g {
			if _, ok := r.nsNames[role]; !ok || role == Bridge {
				r.t.Fatalf("netns rig: partition names unknown namespace %q", role)
			}
			if prev, dup := groupOf[role]; dup && prev != gi {
				r.t.Fatalf("netns rig: %q is in two partition groups", role)
			}
			groupOf[role] = gi
		}
	}
	var rules strings.Builder
	for a, ga := range groupOf {
		for b, gb := range groupOf {
			if ga != gb {
				// The bridge ports carry the roles' names (see build).
				fmt.Fprintf(&rules, "\t\tiifname %q oifname %q drop\n", a, b)
			}
		}
	}
	// One script, applied atomically: the old table goes and the new one
	// comes in the same transaction, so there is no instant without rules.
	script := fmt.Sprintf("table bridge %[1]s\ndelete table bridge %[1]s\n"+
		"table bridge %[1]s {\n\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n%[2]s\t}\n}\n",
		nftTable, rules.String())
	if err := r.nft(script); err != nil {
		r.t.Fatalf("netns rig: installing partition: %v", err)
	}
	r.mu.Lock()
	r.partition = true
	r.mu.Unlock()
}

// Heal removes every partition rule.
func (r *Rig) Heal() {
	r.t.Helper()
	r.mu.Lock()
	had := r.partition
	r.partition = false
	r.mu.Unlock()
	if !had {
		return
	}
	if err := r.nft(fmt.Sprintf("delete table bridge %s\n", nftTable)); err != nil {
		r.t.Fatalf("netns rig: healing partition: %v", err)
	}
}

func (r *Rig) nft(script string) error {
	cmd := exec.Command("ip", "netns", "exec", r.NS(Bridge), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("nft -f in %s: %w: %s\nscript:\n%s", r.NS(Bridge), err, bytes.TrimSpace(out), script)
	}
	return nil
}
