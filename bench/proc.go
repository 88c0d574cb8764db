package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ProcSpec is a process to start.
type ProcSpec struct {
	Name string
	Path string
	Args []string
	Env  []string // added to the harness's environment
	// Core pins the process (and its children) with taskset; -1 leaves it free.
	Core int
	// CPUList, when set, pins to these cores instead ("0,1").
	CPUList string
	Log     string // stdout and stderr go here
}

// Proc is a started process in its own process group.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  *os.File
}

// StartProc starts spec. taskset execs the command, so the PID is the
// proxy's own and /proc figures are the proxy's.
func StartProc(spec ProcSpec) (*Proc, error) {
	path, args := spec.Path, spec.Args
	cpus := spec.CPUList
	if cpus == "" && spec.Core >= 0 {
		cpus = strconv.Itoa(spec.Core)
	}
	if cpus != "" {
		args = append([]string{"-c", cpus, path}, args...)
		path = "taskset"
	}
	logf, err := os.OpenFile(spec.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", spec.Name, err)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", spec.Name, err)
	}
	p := &Proc{Name: spec.Name, cmd: cmd, done: make(chan struct{}), log: logf}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// PID of the process.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended, and how.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM to the process group, then SIGKILL after grace, and
// waits for the process to be reaped.
func (p *Proc) Stop(grace time.Duration) {
	pgid := -p.cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-p.done
	}
	// Children (nginx workers) may outlive the leader for a moment.
	_ = syscall.Kill(pgid, syscall.SIGKILL)
}

// ProcFS reads process figures from a /proc tree (Root "/proc"; tests use a fake).
type ProcFS struct{ Root string }

// userHZ is the unit of utime/stime in /proc/PID/stat, fixed at 100 by the
// kernel's user ABI whatever CONFIG_HZ is.
const userHZ = 100

// ErrProcFormat marks a /proc file that does not parse.
var ErrProcFormat = errors.New("unexpected /proc format")

// ParseStat returns ppid and utime+stime (in ticks) from /proc/PID/stat. The
// command name is in parentheses and may itself contain spaces and ')', so
// fields are counted after the last ')'.
func ParseStat(b []byte) (ppid int, ticks uint64, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("%w: stat has no ')'", ErrProcFormat)
	}
	f := strings.Fields(string(b[i+1:]))
	// After ')': state(3) ppid(4) ... utime(14) stime(15), so index = field-3.
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("%w: stat has %d fields after comm", ErrProcFormat, len(f))
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, fmt.Errorf("%w: ppid %q", ErrProcFormat, f[1])
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("%w: utime/stime %q %q", ErrProcFormat, f[11], f[12])
	}
	return ppid, ut + st, nil
}

// ParseRSS returns VmRSS in bytes from /proc/PID/status (0 for a kernel thread or zombie).
func ParseRSS(b []byte) (int64, error) {
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("%w: VmRSS line %q", ErrProcFormat, strings.TrimSpace(line))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: VmRSS %q", ErrProcFormat, f[0])
		}
		return kb * 1024, nil
	}
	return 0, nil
}

// Tree is pid and all its descendants (nginx's master and worker).
func (fs ProcFS) Tree(pid int) ([]int, error) {
	ents, err := os.ReadDir(fs.Root)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", fs.Root, err)
	}
	children := map[int][]int{}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(fs.Root, e.Name(), "stat"))
		if err != nil {
			continue // exited while we looked
		}
		ppid, _, err := ParseStat(b)
		if err != nil {
			continue
		}
		children[ppid] = append(children[ppid], n)
	}
	out := []int{pid}
	for i := 0; i < len(out) && i < 10000; i++ {
		out = append(out, children[out[i]]...)
	}
	return out, nil
}

// CPU is the user+system time consumed so far by pid's tree.
func (fs ProcFS) CPU(pid int) (time.Duration, error) {
	ticks, err := sumTree(fs, pid, "stat", func(b []byte) (uint64, error) {
		_, t, err := ParseStat(b)
		return t, err
	})
	if err != nil {
		return 0, err
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// RSS is the resident memory of pid's tree.
func (fs ProcFS) RSS(pid int) (int64, error) {
	return sumTree(fs, pid, "status", ParseRSS)
}

// sumTree adds up parse's figure from /proc/PID/file over pid's tree. A
// child that exits before its file is read is skipped; pid itself must be
// readable.
func sumTree[T int64 | uint64](fs ProcFS, pid int, file string, parse func([]byte) (T, error)) (T, error) {
	pids, err := fs.Tree(pid)
	if err != nil {
		return 0, err
	}
	var total T
	for i, p := range pids {
		b, err := os.ReadFile(filepath.Join(fs.Root, strconv.Itoa(p), file))
		if err != nil {
			if i == 0 {
				return 0, fmt.Errorf("reading %s of %d: %w", file, p, err)
			}
			continue
		}
		v, err := parse(b)
		if err != nil {
			return 0, err
		}
		total += v
	}
	return total, nil
}

// RSSSampler records the peak RSS of a process while ctx lives. Its
// goroutine is owned by the caller of Run.
type RSSSampler struct {
	FS       ProcFS
	PID      int
	Interval time.Duration
}

// Run samples until ctx ends (bounded by the caller's deadline) and returns the peak.
func (s RSSSampler) Run(ctx context.Context) int64 {
	var peak int64
	t := time.NewTicker(s.Interval)
	defer t.Stop()
	for {
		if v, err := s.FS.RSS(s.PID); err == nil {
			peak = max(peak, v)
		}
		select {
		case <-ctx.Done():
			return peak
		case <-t.C:
		}
	}
}
