package flow

import (
	"context"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// harness runs a Scheduler on a fake clock. Each task's Run reports its
// start on started and waits for an outcome on its own channel.
type harness struct {
	t       *testing.T
	clock   *fakeClock
	s       *Scheduler
	started chan *run

	mu       sync.Mutex
	deferred []Verdict
	alive    int
	runs     []*run
}

type run struct {
	key, name string
	end       chan Outcome
	ended     chan struct{} // closed once the outcome was given back
	slot      *Slot
}

func newHarness(t *testing.T, o Options) *harness {
	t.Helper()
	h := &harness{t: t, clock: &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}, started: make(chan *run, 10000)}
	o.Now = h.clock.now
	if o.QueueMax == 0 {
		o.QueueMax = 10000
	}
	if o.AttemptTimeout == 0 {
		o.AttemptTimeout = 15 * time.Second
	}
	if o.KeepAliveEvery == 0 {
		o.KeepAliveEvery = 10 * time.Second
	}
	h.s = New(o)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// Let every task end so Shutdown returns: those running now, and
		// any that start before it stops the scheduler.
		done := make(chan struct{})
		defer close(done)
		go func() {
			for {
				h.mu.Lock()
				for _, r := range h.runs {
					select {
					case r.end <- Outcome{}:
					default:
					}
				}
				h.mu.Unlock()
				select {
				case <-done:
					return
				case <-time.After(time.Millisecond):
				}
			}
		}()
		if err := h.s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return h
}

func (h *harness) submit(key, name string) {
	h.s.Submit(Task{
		Key: key,
		Run: func(_ context.Context, slot *Slot) {
			r := &run{key: key, name: name, end: make(chan Outcome, 1), ended: make(chan struct{}), slot: slot}
			defer close(r.ended)
			h.mu.Lock()
			h.runs = append(h.runs, r)
			h.mu.Unlock()
			h.started <- r
			if o, ok := <-r.end; ok {
				slot.Done(o)
			}
		},
		Defer: func(v Verdict) {
			h.mu.Lock()
			h.deferred = append(h.deferred, v)
			h.mu.Unlock()
		},
		KeepAlive: func() { h.mu.Lock(); h.alive++; h.mu.Unlock() },
	})
}

// next returns the next attempt to start.
func (h *harness) next() *run {
	h.t.Helper()
	select {
	case r := <-h.started:
		return r
	case <-time.After(5 * time.Second):
		h.t.Fatal("no attempt started")
		return nil
	}
}

// none checks that no attempt starts.
func (h *harness) none() {
	h.t.Helper()
	select {
	case r := <-h.started:
		h.t.Fatalf("attempt %s of %s started, want none", r.name, r.key)
	case <-time.After(20 * time.Millisecond):
	}
}

// finish ends r and waits until its outcome was given back.
func (h *harness) finish(r *run, o Outcome) {
	h.t.Helper()
	r.end <- o
	select {
	case <-r.ended:
	case <-time.After(5 * time.Second):
		h.t.Fatal("outcome not given back")
	}
}

func (h *harness) verdicts() []Verdict {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Verdict(nil), h.deferred...)
}

var fast = Outcome{Signal: Answered, Latency: time.Millisecond}

// One integration's backlog never delays another's first event: with one
// attempt at a time, B's only event takes its turn in the round (after at
// most one more of A's), ahead of A's backlog.
func TestRoundRobinServesANewKeyBeforeABacklog(t *testing.T) {
	h := newHarness(t, Options{Concurrency: 1, EndpointMax: 64})
	for range 100 {
		h.submit("A", "a")
	}
	h.submit("B", "b")
	for i := range 3 {
		r := h.next()
		if r.key == "B" {
			return
		}
		if i == 2 {
			t.Fatal("B's event waits behind A's backlog")
		}
		h.finish(r, fast)
	}
}

// Keys with backlogs alternate.
func TestRoundRobinAlternatesBacklogs(t *testing.T) {
	h := newHarness(t, Options{Concurrency: 1, EndpointMax: 64})
	for range 10 {
		h.submit("A", "a")
		h.submit("B", "b")
		h.submit("C", "c")
	}
	var order []string
	for range 9 {
		r := h.next()
		order = append(order, r.key)
		h.finish(r, fast)
	}
	for i := 3; i < len(order); i++ {
		if order[i] != order[i-3] {
			t.Fatalf("order %v is not round robin", order)
		}
	}
}

// The per-endpoint cap is EndpointMax divided by the live dispatchers,
// whatever the adaptive limit says.
func TestEndpointCapIsSharedByTheFleet(t *testing.T) {
	for _, tc := range []struct {
		fleet, max, want int
	}{
		{1, 8, 8},
		{2, 8, 4},
		{4, 8, 2},
		{3, 8, 2},
		{16, 8, 1}, // never below one per process
	} {
		h := newHarness(t, Options{Concurrency: 100, EndpointMax: tc.max, FleetSize: func() int { return tc.fleet }})
		for range 100 {
			h.submit("A", "a")
		}
		// Answers grow the limit past the share; the share holds.
		inFlight := h.startedNow()
		for range 30 {
			h.finish(inFlight[0], fast)
			inFlight = append(inFlight[1:], h.startedNow()...)
		}
		if len(inFlight) != tc.want {
			t.Errorf("fleet of %d, max %d: %d attempts in flight, want %d", tc.fleet, tc.max, len(inFlight), tc.want)
		}
	}
}

// startedNow returns the attempts that start until none has for a moment.
func (h *harness) startedNow() []*run {
	var rs []*run
	for {
		select {
		case r := <-h.started:
			rs = append(rs, r)
		case <-time.After(20 * time.Millisecond):
			return rs
		}
	}
}

// A healthy endpoint's limit grows while its answers keep coming, up to
// the cap, so a backlog is served with the concurrency it can take.
func TestLimitGrowsToTheCapForAHealthyBacklog(t *testing.T) {
	h := newHarness(t, Options{Concurrency: 100, EndpointMax: 16})
	for range 200 {
		h.submit("A", "a")
	}
	inFlight := map[*run]bool{}
	for range initialLimit {
		inFlight[h.next()] = true
	}
	for range 60 {
		for r := range inFlight {
			delete(inFlight, r)
			h.finish(r, Outcome{Signal: Answered, Latency: 200 * time.Millisecond})
			break
		}
		// Take every attempt the freed slot and the grown limit allow.
		for _, r := range h.startedNow() {
			inFlight[r] = true
		}
	}
	if len(inFlight) != 16 {
		t.Fatalf("%d attempts in flight after 60 answers, want the cap of 16", len(inFlight))
	}
}

// An endpoint that hangs holds few attempts: once its oldest is overdue it
// gets one probe per probeInterval, and the first answer ends the stall.
func TestStalledEndpointGetsSpacedProbes(t *testing.T) {
	h := newHarness(t, Options{Concurrency: 100, EndpointMax: 64})
	for range 100 {
		h.submit("A", "a")
	}
	var hung []*run
	for range initialLimit {
		hung = append(hung, h.next())
	}
	h.none()
	h.clock.add(minStallAfter)
	h.s.sweep()
	h.none() // stalled, and the last start was under probeInterval ago
	h.clock.add(probeInterval)
	h.s.sweep()
	probe := h.next()
	h.none()
	h.clock.add(probeInterval / 2)
	h.s.sweep()
	h.none()
	// The endpoint heals: the probe is answered while the first attempts
	// still hang. Overdue attempts do not count against the limit.
	h.finish(probe, fast)
	for range initialLimit {
		h.next()
	}
	if len(hung) != initialLimit {
		t.Fatalf("%d attempts hung", len(hung))
	}
}

// Only the endpoint's time makes an attempt overdue: time spent before the
// request starts (waiting for the config store or a CPU) is the
// dispatcher's, and must not make a healthy endpoint look stalled.
func TestOverdueCountsFromTheRequestStart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sending bool
		stalled bool
	}{
		{"request started late", true, false},
		{"request started at admission", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{Concurrency: 100, EndpointMax: 64})
			h.submit("A", "a")
			r := h.next()
			h.clock.add(3 * minStallAfter / 2)
			if tc.sending {
				r.slot.Sending()
			}
			h.clock.add(minStallAfter / 2)
			h.s.mu.Lock()
			stalled := h.s.stalled(h.s.keys["A"], h.clock.now())
			h.s.mu.Unlock()
			if stalled != tc.stalled {
				t.Fatalf("stalled = %v, want %v", stalled, tc.stalled)
			}
		})
	}
}

// However many endpoints hang, their attempts together stay within the
// stalled budget.
func TestStalledEndpointsShareABudget(t *testing.T) {
	h := newHarness(t, Options{Concurrency: 100, EndpointMax: 64, StalledBudget: 10})
	keys := []string{"A", "B", "C", "D", "E", "F", "G", "H"}
	for _, k := range keys {
		for range 10 {
			h.submit(k, k)
		}
	}
	for range len(keys) * initialLimit {
		h.next()
	}
	h.none()
	// All are stalled, with 32 attempts in flight: over the budget, no
	// probe starts however long they wait.
	for range 5 {
		h.clock.add(probeInterval)
		h.s.sweep()
		h.none()
	}
}

// Retry-After pauses the endpoint's new attempts; a long pause moves its
// waiting messages out (parked), a short one keeps them.
func TestRetryAfterPausesTheEndpoint(t *testing.T) {
	for _, tc := range []struct {
		name       string
		retryAfter time.Duration
		park       bool
	}{
		{"short pause", 3 * time.Second, false},
		{"long pause", time.Minute, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{Concurrency: 100, EndpointMax: 1})
			for range 5 {
				h.submit("A", "a")
			}
			r := h.next()
			h.finish(r, Outcome{Signal: Overloaded, RetryAfter: tc.retryAfter})
			h.none()
			h.submit("A", "late")
			vs := h.verdicts()
			if tc.park {
				if len(vs) != 5 || !vs[0].Park || vs[0].Reason != ReasonPaused {
					t.Fatalf("deferred %+v, want the 4 waiting and the late one parked", vs)
				}
				return
			}
			if len(vs) != 0 {
				t.Fatalf("deferred %+v during a short pause, want none", vs)
			}
			h.clock.add(tc.retryAfter)
			h.s.sweep()
			h.next()
		})
	}
}

// What does not fit is handed back with a delay from the key's own drain
// rate while it is healthy, never parked; the last quarter of the budget
// stays for keys with short queues.
func TestAFullQueueRequeuesForAShortDelayAndKeepsAReserve(t *testing.T) {
	h := newHarness(t, Options{Concurrency: 1, EndpointMax: 1, QueueMax: 1000})
	for range 1 + 750 + 1 { // one starts, 750 wait, one is deferred
		h.submit("A", "a")
	}
	vs := h.verdicts()
	if len(vs) != 1 {
		t.Fatalf("%d deferred, want 1", len(vs))
	}
	if v := vs[0]; v.Reason != ReasonQueueFull || v.Park || v.Delay < minRequeueDelay || v.Delay > maxRequeueDelay {
		t.Fatalf("verdict %+v, want a requeue within [%s, %s]", v, minRequeueDelay, maxRequeueDelay)
	}
	for range 200 {
		h.submit("B", "b")
	}
	if vs := h.verdicts(); len(vs) != 1 {
		t.Fatalf("%d of B's events deferred, want all 200 queued in the reserve", len(vs)-1)
	}
}

// Waiting messages are kept alive; a shutdown hands them all back.
func TestKeepAliveAndShutdown(t *testing.T) {
	h := newHarness(t, Options{Concurrency: 1, EndpointMax: 1})
	for range 3 {
		h.submit("A", "a")
	}
	r := h.next()
	h.clock.add(10 * time.Second)
	h.s.sweep()
	h.mu.Lock()
	alive := h.alive
	h.mu.Unlock()
	if alive != 2 {
		t.Fatalf("%d keep-alives, want 2 (the waiting messages)", alive)
	}
	// Shutdown hands the waiting messages back at once and waits for the
	// running attempt.
	stopped := make(chan error, 1)
	go func() { stopped <- h.s.Shutdown(context.Background()) }()
	deadline := time.Now().Add(5 * time.Second)
	for len(h.verdicts()) < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-stopped:
		t.Fatalf("Shutdown returned %v while an attempt was running", err)
	default:
	}
	r.end <- fast
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	vs := h.verdicts()
	if len(vs) != 2 || vs[0].Reason != ReasonShutdown || vs[1].Reason != ReasonShutdown {
		t.Fatalf("deferred %+v, want 2 shutdown hand-backs", vs)
	}
}

// A slot tells how long its message has been in the process, from the
// task's Received; a task that does not say has 0.
func TestSlotHeldCountsFromReceived(t *testing.T) {
	for _, tc := range []struct {
		name     string
		received time.Duration // before the attempt starts; < 0: not given
		want     time.Duration
	}{
		{"received 7 s before", 7 * time.Second, 7 * time.Second},
		{"not given", -1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{Concurrency: 1, EndpointMax: 1})
			var received time.Time
			if tc.received >= 0 {
				received = h.clock.now().Add(-tc.received)
			}
			held := make(chan time.Duration, 1)
			h.s.Submit(Task{Key: "A", Received: received, Run: func(_ context.Context, slot *Slot) { held <- slot.Held() },
				Defer: func(Verdict) {}, KeepAlive: func() {}})
			select {
			case got := <-held:
				if got != tc.want {
					t.Fatalf("Held() = %s, want %s", got, tc.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("attempt did not run")
			}
		})
	}
}
