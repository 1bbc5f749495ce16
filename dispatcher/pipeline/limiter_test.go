package pipeline

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

func testLimiter(perIntegration, slowBudget int) (*limiter, *fakeClock) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := newLimiter(perIntegration, slowBudget, 0)
	l.now = clock.now
	return l, clock
}

func mustAcquire(t *testing.T, l *limiter, id string) lease {
	t.Helper()
	le, ok := l.acquire(context.Background(), id, 0)
	if !ok {
		t.Fatalf("acquire %s refused", id)
	}
	return le
}

func TestLimiterCapsHealthyIntegrations(t *testing.T) {
	ctx := context.Background()
	l, _ := testLimiter(2, 4)
	a1, a2 := mustAcquire(t, l, "a"), mustAcquire(t, l, "a")
	if _, ok := l.acquire(ctx, "a", 10*time.Millisecond); ok {
		t.Fatal("cap of 2 not enforced")
	}
	b := mustAcquire(t, l, "b")
	// A waiter gets the slot as soon as a holder releases it.
	got := make(chan bool)
	go func() { _, ok := l.acquire(ctx, "a", 5*time.Second); got <- ok }()
	for {
		l.mu.Lock()
		waiting := l.slots["a"].users == 3
		l.mu.Unlock()
		if waiting {
			break
		}
		time.Sleep(time.Millisecond)
	}
	l.release("a", a1, false)
	if !<-got {
		t.Fatal("waiter did not get the released slot")
	}
	l.release("a", a2, false)
	l.release("a", lease{start: a1.start}, false)
	l.release("b", b, false)
	if len(l.slots) != 0 || len(l.slowUntil) != 0 || l.slowInFlight != 0 || l.inFlight != 0 {
		t.Fatalf("state left behind: slots %v slow %v in flight %d (slow %d)", l.slots, l.slowUntil, l.inFlight, l.slowInFlight)
	}
}

func TestLimiterNarrowsSlowIntegrations(t *testing.T) {
	ctx := context.Background()
	l, clock := testLimiter(8, 3)
	// A timed-out attempt marks "a" slow.
	l.release("a", mustAcquire(t, l, "a"), true)
	// Slow: at most slowMax (2) in flight, refused at once beyond.
	a1, a2 := mustAcquire(t, l, "a"), mustAcquire(t, l, "a")
	if !a1.slow || !a2.slow {
		t.Fatal("slow integration's leases not counted as slow")
	}
	start := time.Now()
	if _, ok := l.acquire(ctx, "a", time.Second); ok {
		t.Fatal("slow integration got a third slot")
	}
	if waited := time.Since(start); waited > 100*time.Millisecond {
		t.Fatalf("a refused slow attempt waited %s", waited)
	}
	// The slow budget (3) is shared: "b", also slow, gets one, then none.
	l.release("b", mustAcquire(t, l, "b"), true)
	mustAcquire(t, l, "b")
	if _, ok := l.acquire(ctx, "b", 0); ok {
		t.Fatal("slow budget of 3 exceeded")
	}
	// A healthy integration is not limited by the slow budget.
	mustAcquire(t, l, "c")
	mustAcquire(t, l, "c")
	// A minute after the last sign of slowness, "a" is healthy again.
	l.release("a", a1, false)
	l.release("a", a2, false)
	clock.add(l.slowFor)
	if le := mustAcquire(t, l, "a"); le.slow {
		t.Fatal("integration still slow after slowFor")
	}
}

func TestLimiterSpotsAHangingIntegrationBeforeItTimesOut(t *testing.T) {
	ctx := context.Background()
	l, clock := testLimiter(2, 4)
	mustAcquire(t, l, "a")
	mustAcquire(t, l, "a")
	clock.add(l.slowAttempt) // both attempts have been running this long
	if _, ok := l.acquire(ctx, "a", time.Millisecond); ok {
		t.Fatal("integration at its cap gave a slot")
	}
	if !l.isSlow("a", clock.now()) {
		t.Fatal("a full integration whose oldest attempt is slowAttempt old was not marked slow")
	}
}

func TestLimiterLongAttemptMarksSlow(t *testing.T) {
	l, clock := testLimiter(4, 4)
	le := mustAcquire(t, l, "a")
	clock.add(l.slowAttempt)
	l.release("a", le, false) // succeeded, but took slowAttempt
	if !l.isSlow("a", clock.now()) {
		t.Fatal("an attempt that took slowAttempt did not mark the integration slow")
	}
}

// Under pressure, an integration whose oldest attempt is overdue gets no
// more room than a slow one, long before slowAttempt; fast integrations
// are unaffected, and without pressure nobody is limited by age.
func TestLimiterHoldsOverdueIntegrationsUnderPressure(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := newLimiter(8, 3, 6) // pressure from 6 attempts in flight
	l.now = clock.now

	// "hang" has 4 attempts in flight, 300 ms old: overdue, but 4 in
	// flight is no pressure, so it may start more.
	var hang []lease
	for range 4 {
		hang = append(hang, mustAcquire(t, l, "hang"))
	}
	clock.add(300 * time.Millisecond)
	hang = append(hang, mustAcquire(t, l, "hang"))
	// A fast integration's fresh attempt brings the process to 6: pressure.
	fast := mustAcquire(t, l, "fast")
	if _, ok := l.acquire(ctx, "hang", 0); ok {
		t.Fatal("an overdue integration under pressure got a slot beyond slowMax")
	}
	if l.isSlow("hang", clock.now()) {
		t.Fatal("the overdue rule marked the integration slow")
	}
	// The fast integration has nothing overdue: it still gets slots.
	fast2 := mustAcquire(t, l, "fast")
	if fast2.slow {
		t.Fatal("a fast integration's lease counted as slow")
	}
	// Once the pressure is gone, the overdue integration gets slots again.
	l.release("fast", fast, false)
	l.release("fast", fast2, false)
	for _, le := range hang[3:] {
		l.release("hang", le, false)
	}
	if le := mustAcquire(t, l, "hang"); le.slow {
		t.Fatal("limited like a slow integration without pressure")
	}
}
