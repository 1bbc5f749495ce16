package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/blazelock/webhooks/internal/testinfra"
	"github.com/blazelock/webhooks/schemas"
	"github.com/blazelock/webhooks/subscriber/receiver"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// dispatcherBinary builds this program once per test run, for tests that
// need a real process to kill.
func dispatcherBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dispatcher-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "dispatcher")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// childDispatcher runs the dispatcher binary with the stack's environment
// and returns the process once it is ready.
func (s *stack) childDispatcher() *exec.Cmd {
	s.t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testinfra.FreePort(s.t))
	cmd := exec.Command(dispatcherBinary(s.t))
	cmd.Env = append(os.Environ(), "DISPATCHER_HTTP_ADDR="+addr, "DISPATCHER_LOG_LEVEL=warn")
	for k, v := range s.env {
		if k != "DISPATCHER_HTTP_ADDR" && k != "DISPATCHER_LOG_LEVEL" {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	cmd.Stderr = s.logs
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	testinfra.WaitFor(s.t, 30*time.Second, "child dispatcher ready", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return cmd
}

// TestKilledDispatcherLosesNoEvent: SIGKILL one of two dispatchers while
// it holds in-flight attempts; JetStream hands its unacknowledged messages
// to the survivor after AckWait and every event is delivered.
func TestKilledDispatcherLosesNoEvent(t *testing.T) {
	s := newStack(t, map[string]string{"DISPATCHER_ATTEMPT_TIMEOUT": "1s"}) // AckWait 7s
	survivor := s.dispatcher()
	child := s.childDispatcher()
	ep := newEndpoint(t, receiver.Faults{Delay: receiver.Duration(20 * time.Millisecond)})
	id := s.configure(survivor, ep)

	const events = 300
	for range events {
		s.publish(id, schemas.EventCompleted)
	}
	testinfra.WaitFor(t, 20*time.Second, "some deliveries before the kill", func() bool { return ep.Stats().Accepted >= 30 })
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testinfra.WaitFor(t, 60*time.Second, "every event delivered after the kill", func() bool { return ep.Stats().Accepted == events })
	t.Logf("delivered %d events, %d duplicate arrivals", events, ep.Stats().Duplicates)
}
