// Package harness starts and controls the processes an end-to-end run of
// the dispatcher needs: nats-server (in this process, or as child
// processes forming a cluster), redis-server, dispatcher child processes,
// and a client of the dispatcher's management API.
//
// The reliability suite uses it through internal/testinfra, whose thin
// wrappers fail the test on an error and register cleanups; the benchmark
// (a program, not a test) uses it directly. So nothing here takes a
// testing.TB: every function returns its error.
package harness

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is a child process whose exit is watched.
type Process struct {
	name    string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	markers io.Writer
	exited  chan struct{}
}

// StartProcess starts cmd, whose Stdout and Stderr the caller sets, under
// name. The child's stdin is a pipe that stays open until the child exits:
// a child that stops when its stdin ends (the bench's children do) never
// outlives this process. With markers not nil, the start and every signal
// are noted there with the time, so a reader of a log sees where the run
// intervened.
func StartProcess(name string, cmd *exec.Cmd, markers io.Writer) (*Process, error) {
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{name: name, cmd: cmd, stdin: stdin, markers: markers, exited: make(chan struct{})}
	p.note("starting %s", name)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	// Wait closes the stdin pipe once the child has exited.
	go func() { _ = cmd.Wait(); close(p.exited) }()
	return p, nil
}

// note writes one marker line.
func (p *Process) note(format string, args ...any) {
	if p.markers != nil {
		fmt.Fprintf(p.markers, "--- test: "+format+" at %s\n", append(args, time.Now().Format(time.RFC3339Nano))...)
	}
}

// Name is the name the process was started under.
func (p *Process) Name() string { return p.name }

// Pid is the child's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed once the child has exited and been waited for.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Running reports whether the child has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// ExitCode is the child's exit code once it has exited (-1 when a signal
// ended it, or while it runs).
func (p *Process) ExitCode() int {
	if p.Running() {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// State describes how the child ended ("exit status 1", "signal:
// killed"), or "running".
func (p *Process) State() string {
	if p.Running() {
		return "running"
	}
	return p.cmd.ProcessState.String()
}

// Signal sends sig to the child.
func (p *Process) Signal(sig os.Signal) error {
	p.note("%s to %s", sig, p.name)
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s to %s: %w", sig, p.name, err)
	}
	return nil
}

// Kill sends SIGKILL and waits until the child is gone: a crash, nothing
// flushed. A child that has exited already is left alone.
func (p *Process) Kill() {
	if !p.Running() {
		return
	}
	_ = p.Signal(syscall.SIGKILL) // fails only if it has just exited
	<-p.exited
}

// Terminate sends SIGTERM and waits up to timeout for the child to exit;
// it returns the exit code and how long the shutdown took. A child still
// running after timeout is killed, and that is an error. A child that has
// exited already is not signalled.
func (p *Process) Terminate(timeout time.Duration) (exitCode int, took time.Duration, err error) {
	if !p.Running() {
		return p.ExitCode(), 0, nil
	}
	start := time.Now()
	_ = p.Signal(syscall.SIGTERM) // fails only if it has just exited, which the wait sees
	select {
	case <-p.exited:
		return p.ExitCode(), time.Since(start), nil
	case <-time.After(timeout):
		p.Kill()
		return -1, time.Since(start), fmt.Errorf("%s did not exit within %s of SIGTERM", p.name, timeout)
	}
}

// FreePort returns a loopback TCP port that was free a moment ago, for a
// server the caller starts next. It is drawn at random below the kernel's
// ephemeral range (ip_local_port_range), because a port from that range
// ("127.0.0.1:0") can be taken, between this check and the server's bind,
// as the local port of any outgoing connection: with busy tests around,
// a cluster node failed to bind its port in 2 of about 15 starts. Below
// the range only another server's bind can take it.
func FreePort() (int, error) {
	low := ephemeralLow()
	for range 100 {
		port := 10000 + rand.IntN(low-10000)
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			_ = l.Close()
			return port, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux's
// default 32768 elsewhere or when unreadable).
func ephemeralLow() int {
	const fallback = 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return fallback
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return fallback
	}
	low, err := strconv.Atoi(fields[0])
	if err != nil || low <= 11000 {
		return fallback
	}
	return low
}

// Poll calls cond every interval until it reports done or fails, timeout
// passes, or ctx ends. Use it instead of sleeps.
func Poll(ctx context.Context, timeout, interval time.Duration, what string, cond func() (done bool, err error)) error {
	deadline := time.Now().Add(timeout)
	for {
		done, err := cond()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(interval):
		}
	}
}

// GoBuild builds the package at import path pkg (of this module or one of
// its dependencies, at the version go.mod pins) into the file out, with
// extra go build flags such as -race. It runs the go command, so the
// current directory must be inside the module.
func GoBuild(ctx context.Context, out, pkg string, flags ...string) error {
	args := append([]string{"build", "-o", out}, flags...)
	args = append(args, pkg)
	if b, err := exec.CommandContext(ctx, "go", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return nil
}

// LogBuffer is a log sink that child processes, servers' goroutines and a
// reader share.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Contains reports whether s was written.
func (b *LogBuffer) Contains(s string) bool { return strings.Contains(b.String(), s) }
