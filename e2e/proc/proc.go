package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"time"
)

// ErrExited is wrapped by WaitReady's error when the process exited before
// its check passed.
var ErrExited = errors.New("process exited")

// Options configure Start. The zero value is usable.
type Options struct {
	// Env is added to the environment the parent runs with.
	Env []string
	// Stdout, if not nil, also receives everything the process writes to
	// stdout (stderr goes to the log file only). The writes come from a
	// goroutine of os/exec: a Stdout the caller reads meanwhile needs a lock.
	// Stdout then reaches the log through a pipe, so in the log its lines
	// may come after stderr lines written later.
	Stdout io.Writer
	// Append appends to an existing log file instead of truncating it.
	Append bool
	// NewProcessGroup puts the process in a process group of its own
	// (Setpgid), so a signal to the parent's group, such as Ctrl-C in a
	// terminal, does not reach it.
	NewProcessGroup bool
}

// Proc is a child process started by Start.
type Proc struct {
	name    string
	logPath string
	argv    []string
	env     []string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error // written before done is closed
}

// Start runs argv[0] with the arguments argv[1:] and its output in logPath;
// name is how errors refer to it.
func Start(name, logPath string, opts Options, argv ...string) (*Proc, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("start %s: no command", name)
	}
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if opts.Append {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	f, err := os.OpenFile(logPath, flags, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	if opts.Stdout != nil {
		cmd.Stdout = io.MultiWriter(f, opts.Stdout)
	}
	if len(opts.Env) > 0 {
		cmd.Env = append(os.Environ(), opts.Env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: opts.NewProcessGroup}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{
		name: name, logPath: logPath, cmd: cmd, done: make(chan struct{}),
		argv: slices.Clone(argv), env: slices.Clone(opts.Env),
	}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// Name is the name given to Start.
func (p *Proc) Name() string { return p.name }

// LogPath is the process's log file.
func (p *Proc) LogPath() string { return p.logPath }

// Argv is the command line given to Start.
func (p *Proc) Argv() []string { return slices.Clone(p.argv) }

// Env is the extra environment given to Start (Options.Env).
func (p *Proc) Env() []string { return slices.Clone(p.env) }

// PID is the process's ID.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether Done is closed.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is how the process ended, as exec.Cmd.Wait reports it (nil for exit
// status 0, an *exec.ExitError otherwise); nil while it is running.
func (p *Proc) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Stop sends SIGTERM to the process, SIGKILL if it is still running after
// grace, and waits until it has exited. It reports whether SIGKILL was
// needed. Stopping a process that has already exited does nothing.
func (p *Proc) Stop(grace time.Duration) (killed bool) {
	if p.Exited() {
		return false
	}
	// os.Process.Signal fails harmlessly (os.ErrProcessDone) if the process
	// is reaped in between; it never reaches a process that reused the PID.
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return false
	case <-t.C:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	return true
}

// LogTail returns the last n bytes of the log file ("" if it cannot be read).
func (p *Proc) LogTail(n int) string {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// readyTail is how much of the log a WaitReady error carries.
const readyTail = 4000

// pollInterval is how often WaitReady runs its check.
const pollInterval = 50 * time.Millisecond

// WaitReady runs check until it returns nil, and returns nil then. It gives
// up when the process exits (the error wraps ErrExited), or when timeout
// passes or ctx ends (the error wraps the context's error, together with
// check's last error); it does not stop the process. check gets a context
// that ends with the timeout, and should not block past it.
//
// A separate process offers no event that says it is ready, so this polls:
// the check first at once, then every 50ms. Only its exit is an event, and a
// poll wakes up for it at once.
func (p *Proc) WaitReady(ctx context.Context, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		last := check(ctx)
		if last == nil {
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("%s: %w before it was ready (%v; last check: %v); last lines of %s:\n%s",
				p.name, ErrExited, p.Err(), last, p.logPath, p.LogTail(readyTail))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not ready within %v: %w (last check: %v); last lines of %s:\n%s",
				p.name, timeout, ctx.Err(), last, p.logPath, p.LogTail(readyTail))
		case <-p.done:
		case <-tick.C:
		}
	}
}

// HTTPOK is a WaitReady check: a GET of url with c answers 200. Its error
// carries the start of any other answer's body.
func HTTPOK(c *http.Client, url string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: HTTP %d: %s", url, resp.StatusCode, bytes.TrimSpace(body))
		}
		return nil
	}
}
