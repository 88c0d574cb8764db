package agent

import (
	"bufio"
	"bytes"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// trimExecutablePages unmaps, from this process's page tables, the pages
// of its own executable's read-only segments (code and constants), and
// asks the kernel to map them back one at a time from now on.
//
// Why: on a page fault in a file mapping the kernel maps up to 64 KiB of
// neighbouring pages that are in the page cache ("fault-around"), so
// starting the agent leaves most of its 18 MiB of code and constants
// resident although an idle or serving agent runs a few MiB of it. Those
// pages are clean and shared with the page cache, but they count in RSS,
// the figure operators compare. After this call RSS counts the pages the
// agent actually uses. Nothing is lost: a page touched again is mapped
// again from the page cache (a minor fault). Writable mappings are never
// touched, so no data can be dropped.
func trimExecutablePages() {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return
	}
	defer f.Close()
	type span struct{ start, end uintptr }
	var spans []span
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 00400000-00cdf000 r-xp 00000000 fe:00 10383720   /path/to/exe
		fields := bytes.Fields(sc.Bytes())
		if len(fields) < 6 || string(fields[5]) != exe {
			continue
		}
		perms := string(fields[1])
		if perms != "r-xp" && perms != "r--p" {
			continue
		}
		lo, hi, ok := bytes.Cut(fields[0], []byte("-"))
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(string(lo), 16, 64)
		end, err2 := strconv.ParseUint(string(hi), 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		spans = append(spans, span{uintptr(start), uintptr(end)})
	}
	for _, s := range spans {
		// Advice only: an error leaves the mapping as it was. The
		// addresses are the process's own mappings, passed as numbers.
		_, _, _ = unix.Syscall(unix.SYS_MADVISE, s.start, s.end-s.start, unix.MADV_RANDOM)
		_, _, _ = unix.Syscall(unix.SYS_MADVISE, s.start, s.end-s.start, unix.MADV_DONTNEED)
	}
}
