package bench

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		wantPPID  int
		wantTicks uint64
		wantErr   bool
	}{
		{"plain", "1234 (haproxy) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 0 0", 1, 300, false},
		{"comm with spaces and parens", "77 (nginx: worker (x) ) R 76 1 1 0 -1 0 0 0 0 0 7 3 0 0", 76, 10, false},
		{"truncated", "77 (x) R 1 2 3", 0, 0, true},
		{"no comm", "garbage", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ppid, ticks, err := ParseStat([]byte(tt.in))
			if tt.wantErr {
				if !errors.Is(err, ErrProcFormat) {
					t.Fatalf("err = %v, want ErrProcFormat", err)
				}
				return
			}
			if err != nil || ppid != tt.wantPPID || ticks != tt.wantTicks {
				t.Fatalf("= %d %d %v, want %d %d", ppid, ticks, err, tt.wantPPID, tt.wantTicks)
			}
		})
	}
}

func TestParseRSS(t *testing.T) {
	got, err := ParseRSS([]byte("Name:\trafter\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads: 4\n"))
	if err != nil || got != 2048*1024 {
		t.Fatalf("= %d %v", got, err)
	}
	if got, err := ParseRSS([]byte("Name:\tkthreadd\n")); err != nil || got != 0 {
		t.Fatalf("kernel thread = %d %v", got, err)
	}
	if _, err := ParseRSS([]byte("VmRSS: lots\n")); !errors.Is(err, ErrProcFormat) {
		t.Fatalf("err = %v", err)
	}
}

// fakeProc writes /proc/<pid>/{stat,status} under root.
func fakeProc(t *testing.T, root string, pid, ppid int, ticks uint64, rssKB int) {
	t.Helper()
	dir := filepath.Join(root, strconv.Itoa(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stat := strconv.Itoa(pid) + " (p) S " + strconv.Itoa(ppid) + " 0 0 0 -1 0 0 0 0 0 " + strconv.FormatUint(ticks, 10) + " 0 0 0\n"
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
	status := "Name:\tp\nVmRSS:\t" + strconv.Itoa(rssKB) + " kB\n"
	if err := os.WriteFile(filepath.Join(dir, "status"), []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestProcFSSumsTheTree(t *testing.T) {
	root := t.TempDir()
	fakeProc(t, root, 10, 1, 100, 1000)  // nginx master
	fakeProc(t, root, 11, 10, 250, 3000) // its worker
	fakeProc(t, root, 12, 11, 50, 500)   // a grandchild
	fakeProc(t, root, 20, 1, 9999, 9999) // unrelated
	if err := os.WriteFile(filepath.Join(root, "uptime"), []byte("1 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fs := ProcFS{Root: root}
	cpu, err := fs.CPU(10)
	if err != nil || cpu != 4*time.Second {
		t.Fatalf("CPU = %v %v, want 4s", cpu, err)
	}
	rss, err := fs.RSS(10)
	if err != nil || rss != 4500*1024 {
		t.Fatalf("RSS = %v %v", rss, err)
	}
	if _, err := fs.CPU(99); err == nil {
		t.Fatal("CPU of a missing pid succeeded")
	}
}
