package agent

import (
	"strings"
	"testing"
)

// TestCleanExecutableSpans: only read-only mappings of the executable with
// no page of their own (Anonymous: 0 kB) are trimmed; a RELRO mapping the
// loader relocated, writable mappings and other files are left alone.
func TestCleanExecutableSpans(t *testing.T) {
	const smaps = `00400000-00cdf000 r-xp 00000000 fe:00 10383720   /usr/bin/rafter
Size:               9084 kB
Rss:                6000 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
00cdf000-01200000 r--p 008df000 fe:00 10383720   /usr/bin/rafter
Size:               5252 kB
Anonymous:             0 kB
01200000-01210000 r--p 00e00000 fe:00 10383720   /usr/bin/rafter
Size:                 64 kB
Anonymous:             8 kB
01210000-01250000 rw-p 00e10000 fe:00 10383720   /usr/bin/rafter
Size:                256 kB
Anonymous:             0 kB
7f0000000000-7f0000100000 r-xp 00000000 fe:00 222   /usr/lib/x86_64-linux-gnu/libc.so.6
Size:               1024 kB
Anonymous:             0 kB
7f0000200000-7f0000300000 r--p 00000000 00:00 0
Anonymous:             0 kB
`
	got := cleanExecutableSpans(strings.NewReader(smaps), "/usr/bin/rafter")
	want := []span{{0x00400000, 0x00cdf000}, {0x00cdf000, 0x01200000}}
	if len(got) != len(want) {
		t.Fatalf("spans %x, want %x", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("span %d: %x, want %x", i, got[i], want[i])
		}
	}
}
