package testutil

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// ProcessSpec is a command to start.
type ProcessSpec struct {
	Name string   // for messages and the log's start line
	Path string   // the program
	Args []string // its arguments
	Env  []string // added to this process's environment
	Log  string   // stdout and stderr are appended here
}

// Process is a started command in its own process group, so that Kill
// reaches whatever it started too. Its output goes to a log file, whose
// tail a failing test shows.
//
// The kernel kills the process when the thread that started it exits
// (Pdeathsig), so a crashed test run leaves nothing behind. The thread is
// held for the process's lifetime so that it cannot exit earlier: Go ends
// a thread whose goroutine returns while locked to it (namespace switching
// does that), which would otherwise kill a process that happened to be
// forked from it.
type Process struct {
	Name string
	Log  string

	cmd   *exec.Cmd
	done  chan struct{} // closed once Wait returned; then state and err are set
	state *os.ProcessState
	err   error
}

// KillWait bounds how long Kill waits for a killed process to be reaped.
const KillWait = 20 * time.Second

// StartProcess starts spec. A line naming the process and the time starts
// its part of the log, so restarts appended to one log can be told apart.
func StartProcess(spec ProcessSpec) (*Process, error) {
	logf, err := os.OpenFile(spec.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", spec.Name, err)
	}
	fmt.Fprintf(logf, "==== %s start %s\n", time.Now().Format(time.RFC3339Nano), spec.Name)
	cmd := exec.Command(spec.Path, spec.Args...)
	if len(spec.Env) > 0 {
		cmd.Env = append(os.Environ(), spec.Env...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &Process{Name: spec.Name, Log: spec.Log, cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer logf.Close()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		p.state = cmd.ProcessState
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("starting %s: %w", spec.Name, err)
	}
	return p, nil
}

// Pid is the process's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Running reports whether the process has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Signal sends sig to the process alone, not its group: a graceful stop
// is the process's own to pass on. An exited process is not an error.
func (p *Process) Signal(sig syscall.Signal) error {
	if err := syscall.Kill(p.Pid(), sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signalling %s: %w", p.Name, err)
	}
	return nil
}

// Wait blocks until the process exits and returns how it exited.
func (p *Process) Wait(ctx context.Context) (*os.ProcessState, error) {
	select {
	case <-p.done:
		return p.state, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for %s to exit: %w", p.Name, ctx.Err())
	}
}

// Kill sends SIGKILL to the process group and waits (at most KillWait)
// until the process is reaped.
func (p *Process) Kill() (*os.ProcessState, error) {
	syscall.Kill(-p.Pid(), syscall.SIGKILL)
	ctx, cancel := context.WithTimeout(context.Background(), KillWait)
	defer cancel()
	return p.Wait(ctx)
}

// Stop sends SIGTERM to the process and waits for it to exit; after grace
// it kills the group and reports that the stop was not graceful. Children
// that outlive the process are killed either way.
func (p *Process) Stop(grace time.Duration) (*os.ProcessState, error) {
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	st, err := p.Wait(ctx)
	if err != nil {
		if _, kerr := p.Kill(); kerr != nil {
			return nil, kerr
		}
		return p.state, fmt.Errorf("%s did not stop within %v of SIGTERM; killed", p.Name, grace)
	}
	syscall.Kill(-p.Pid(), syscall.SIGKILL)
	return st, nil
}

// LogTail is the last n bytes of the process's log.
func (p *Process) LogTail(n int) string { return LogTail(p.Log, n) }

// LogTail is the last n bytes of the file at path, "" when unreadable.
func LogTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}
