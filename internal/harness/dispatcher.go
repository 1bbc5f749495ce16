package harness

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// DispatcherPackage is the dispatcher's main package, for GoBuild.
const DispatcherPackage = "github.com/blazelock/webhooks/dispatcher"

// dispatcherReadyWithin bounds how long Start waits for /readyz.
const dispatcherReadyWithin = 60 * time.Second

// DispatcherOptions configure StartDispatcher.
type DispatcherOptions struct {
	Name string
	// Bin is the dispatcher binary (GoBuild of DispatcherPackage).
	Bin string
	// Env is the whole configuration: NATS_URL, REDIS_URL, DISPATCHER_*.
	// Nothing of the kind is inherited from this process (see Start), and
	// DISPATCHER_HTTP_ADDR is set by Start.
	Env map[string]string
	// Output receives the child's stdout and stderr across restarts (nil:
	// discarded).
	Output io.Writer
	// Markers, when set, receives a line for every start and signal.
	Markers io.Writer
}

// Dispatcher is a dispatcher child process. Start starts it again with
// the same environment after it was killed or terminated.
type Dispatcher struct {
	o    DispatcherOptions
	http *http.Client
	mu   sync.Mutex
	proc *Process
	addr string
}

// StartDispatcher starts a dispatcher and waits until it is ready.
func StartDispatcher(ctx context.Context, o DispatcherOptions) (*Dispatcher, error) {
	o.Env = maps.Clone(o.Env)
	d := &Dispatcher{o: o, http: &http.Client{Timeout: 2 * time.Second}}
	return d, d.Start(ctx)
}

// Setenv changes one variable of the environment for the next Start.
func (d *Dispatcher) Setenv(key, value string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.o.Env == nil {
		d.o.Env = map[string]string{}
	}
	d.o.Env[key] = value
}

// Name is the name it was started under.
func (d *Dispatcher) Name() string { return d.o.Name }

// Start starts the process, listening on a free port, and waits until its
// /readyz answers 200; a process that is not ready in time is killed.
// ctx bounds the wait, not the process's life.
//
// The child gets this process's environment without anything that
// configures a dispatcher (DISPATCHER_*, OTEL_*, NATS_URL, REDIS_URL),
// plus Env: it runs with what its caller chose, and nothing else.
func (d *Dispatcher) Start(ctx context.Context) error {
	if d.Running() {
		return fmt.Errorf("dispatcher %s is already running", d.o.Name)
	}
	port, err := FreePort()
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(d.o.Bin)
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "DISPATCHER_") || strings.HasPrefix(k, "OTEL_") || k == "NATS_URL" || k == "REDIS_URL" {
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	d.mu.Lock()
	for k, v := range d.o.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	d.mu.Unlock()
	cmd.Env = append(cmd.Env, "DISPATCHER_HTTP_ADDR="+addr)
	cmd.Stdout, cmd.Stderr = d.o.Output, d.o.Output
	p, err := StartProcess(d.o.Name, cmd, d.o.Markers)
	if err != nil {
		return fmt.Errorf("dispatcher %w", err)
	}
	d.mu.Lock()
	d.proc, d.addr = p, addr
	d.mu.Unlock()
	err = Poll(ctx, dispatcherReadyWithin, 20*time.Millisecond, "dispatcher "+d.o.Name+" ready", func() (bool, error) {
		if !p.Running() {
			return false, fmt.Errorf("dispatcher %s exited during start-up: %s", d.o.Name, p.State())
		}
		return d.Ready(ctx), nil
	})
	if err != nil {
		p.Kill()
	}
	return err
}

// Ready reports whether the running process's /readyz answers 200.
func (d *Dispatcher) Ready(ctx context.Context) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.Addr()+"/readyz", nil)
	if err != nil {
		return false
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Addr is host:port of the current process's HTTP listener (API, probes).
func (d *Dispatcher) Addr() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.addr
}

// Process is the current process, or nil before the first start.
func (d *Dispatcher) Process() *Process {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.proc
}

// Running reports whether the current process has not exited.
func (d *Dispatcher) Running() bool {
	p := d.Process()
	return p != nil && p.Running()
}

// API is a client of the current process's management API.
func (d *Dispatcher) API(adminToken string) *API { return NewAPI(d.Addr(), adminToken) }
