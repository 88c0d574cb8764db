package agent

import (
	"bufio"
	"bytes"
	"io"
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
// again from the page cache (a minor fault).
//
// Only mappings that hold no page of their own are trimmed: a read-only
// mapping the dynamic loader wrote before protecting it (RELRO: the GOT
// of a cgo build, relocated at start) holds private copies
// ("Anonymous" in smaps) that dropping would turn back into the file's
// unrelocated bytes. Writable mappings are never touched.
func trimExecutablePages() {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return
	}
	defer f.Close()
	for _, s := range cleanExecutableSpans(f, exe) {
		// Advice only: an error leaves the mapping as it was. The
		// addresses are the process's own mappings, passed as numbers.
		_, _, _ = unix.Syscall(unix.SYS_MADVISE, s.start, s.end-s.start, unix.MADV_RANDOM)
		_, _, _ = unix.Syscall(unix.SYS_MADVISE, s.start, s.end-s.start, unix.MADV_DONTNEED)
	}
}

type span struct{ start, end uintptr }

// cleanExecutableSpans reads smaps and returns the read-only mappings of
// exe whose pages are all the file's: none written (Anonymous: 0 kB).
func cleanExecutableSpans(r io.Reader, exe string) []span {
	var spans []span
	var cur *span // the current mapping, while it is a candidate
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Bytes()
		fields := bytes.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if lo, hi, ok := bytes.Cut(fields[0], []byte("-")); ok && !bytes.HasSuffix(fields[0], []byte(":")) {
			// A mapping's header:
			// 00400000-00cdf000 r-xp 00000000 fe:00 10383720   /path/to/exe
			cur = nil
			if len(fields) < 6 || string(fields[5]) != exe {
				continue
			}
			if perms := string(fields[1]); perms != "r-xp" && perms != "r--p" {
				continue
			}
			start, err1 := strconv.ParseUint(string(lo), 16, 64)
			end, err2 := strconv.ParseUint(string(hi), 16, 64)
			if err1 != nil || err2 != nil || end <= start {
				continue
			}
			cur = &span{uintptr(start), uintptr(end)}
			continue
		}
		if cur != nil && string(fields[0]) == "Anonymous:" {
			if len(fields) >= 2 && string(fields[1]) == "0" {
				spans = append(spans, *cur)
			}
			cur = nil
		}
	}
	return spans
}
