package testinfra

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/blazelock/webhooks/internal/harness"
)

// Dispatcher is a dispatcher child process of a test (see
// StartDispatcher).
type Dispatcher struct {
	*harness.Dispatcher
	t testing.TB
	// Log is everything the process printed, across restarts, with a
	// marker line for every start and signal.
	Log *LogBuffer
}

// StartDispatcher runs the dispatcher program (DispatcherBinary) as a
// child process called name, configured by env alone (see
// harness.Dispatcher.Start), and waits until it is ready. At cleanup it
// is stopped (SIGTERM, then SIGKILL after 20 s), and a data race report,
// panic or fatal error it ever printed fails the test.
func StartDispatcher(t testing.TB, name string, env map[string]string) *Dispatcher {
	t.Helper()
	log := &LogBuffer{}
	h, err := harness.StartDispatcher(context.Background(), harness.DispatcherOptions{
		Name: name, Bin: DispatcherBinary(t), Env: env, Output: log, Markers: log,
	})
	d := &Dispatcher{Dispatcher: h, t: t, Log: log}
	t.Cleanup(d.cleanup)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	return d
}

// Start starts the dispatcher again, with the same environment, on a new
// port, and waits until it is ready.
func (d *Dispatcher) Start() {
	d.t.Helper()
	if err := d.Dispatcher.Start(context.Background()); err != nil {
		d.t.Fatalf("%v\n%s", err, d.Log.String())
	}
}

// Ready reports whether the dispatcher's /readyz answers 200.
func (d *Dispatcher) Ready() bool { return d.Dispatcher.Ready(context.Background()) }

// Signal sends sig to the running process.
func (d *Dispatcher) Signal(sig os.Signal) {
	d.t.Helper()
	if err := d.Process().Signal(sig); err != nil {
		d.t.Fatal(err)
	}
}

// Kill sends SIGKILL and waits until the process is gone.
func (d *Dispatcher) Kill() { d.Process().Kill() }

// Terminate sends SIGTERM and waits up to timeout for the exit; it
// returns the exit code and how long the shutdown took.
func (d *Dispatcher) Terminate(timeout time.Duration) (exitCode int, took time.Duration) {
	d.t.Helper()
	exitCode, took, err := d.Process().Terminate(timeout)
	if err != nil {
		d.t.Fatalf("dispatcher %v", err)
	}
	return exitCode, took
}

// cleanup stops the process if it still runs, then fails the test on a
// data race or panic report in anything it ever printed.
func (d *Dispatcher) cleanup() {
	if p := d.Process(); p != nil {
		_, _, _ = p.Terminate(20 * time.Second)
	}
	logs := d.Log.String()
	for _, marker := range []string{"WARNING: DATA RACE", "panic:", "fatal error:"} {
		if i := strings.Index(logs, marker); i >= 0 {
			end := min(len(logs), i+6000)
			d.t.Errorf("dispatcher %s printed %q:\n%s", d.Name(), marker, logs[i:end])
		}
	}
}
