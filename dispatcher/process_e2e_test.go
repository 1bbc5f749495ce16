package main

import (
	"maps"
	"os"
	"testing"
	"time"

	"github.com/blazelock/webhooks/internal/testinfra"
	"github.com/blazelock/webhooks/schemas"
	"github.com/blazelock/webhooks/subscriber/receiver"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testinfra.RemoveBuilds()
	os.Exit(code)
}

// childDispatcher runs the dispatcher program as a child process with the
// stack's environment, for tests that need a real process to kill, and
// returns it once it is ready.
func (s *stack) childDispatcher() *testinfra.Dispatcher {
	s.t.Helper()
	env := maps.Clone(s.env)
	env["DISPATCHER_LOG_LEVEL"] = "warn"
	d := testinfra.StartDispatcher(s.t, "child", env)
	s.t.Cleanup(func() {
		if s.t.Failed() {
			s.t.Logf("child dispatcher log:\n%s", d.Log.String())
		}
	})
	return d
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
	child.Kill()
	testinfra.WaitFor(t, 60*time.Second, "every event delivered after the kill", func() bool { return ep.Stats().Accepted == events })
	t.Logf("delivered %d events, %d duplicate arrivals", events, ep.Stats().Duplicates)
}
