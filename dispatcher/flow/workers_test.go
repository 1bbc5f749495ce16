package flow

import (
	"bytes"
	"context"
	"runtime"
	"testing"
	"time"
)

// goroutineID reads the calling goroutine's id from its stack header.
func goroutineID() string {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	return string(bytes.Fields(b)[1])
}

// Attempts one after another run on one reused worker, and Shutdown ends
// the idle workers instead of leaving them to their idle timeout.
func TestWorkersAreReusedAndEndAtShutdown(t *testing.T) {
	baseline := runtime.NumGoroutine()
	s := New(Options{Concurrency: 8, EndpointMax: 8, QueueMax: 100, AttemptTimeout: 15 * time.Second, KeepAliveEvery: 10 * time.Second})
	workers := map[string]int{}
	for range 20 {
		ran := make(chan string, 1)
		s.Submit(Task{Key: "A", Run: func(context.Context, *Slot) { ran <- goroutineID() }, Defer: func(Verdict) {}, KeepAlive: func() {}})
		select {
		case id := <-ran:
			workers[id]++
		case <-time.After(5 * time.Second):
			t.Fatal("attempt did not run")
		}
		// Wait until the worker counts itself idle again.
		deadline := time.Now().Add(5 * time.Second)
		for {
			s.mu.Lock()
			idle, running := s.idleWorkers, s.running
			s.mu.Unlock()
			if idle == 1 && running == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("idle workers %d, running %d, want 1 and 0", idle, running)
			}
			time.Sleep(time.Millisecond)
		}
	}
	if len(workers) != 1 {
		t.Fatalf("20 attempts in a row ran on %d goroutines, want 1 reused worker: %v", len(workers), workers)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after Shutdown, %d before New: an idle worker outlived Shutdown", runtime.NumGoroutine(), baseline)
		}
		time.Sleep(time.Millisecond)
	}
}
