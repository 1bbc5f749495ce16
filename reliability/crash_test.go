package reliability

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/blazelock/webhooks/internal/testinfra"
	"github.com/blazelock/webhooks/subscriber/receiver"
)

// TestSIGKILLMidLoad: two dispatchers share a steady load over three
// integrations, one of whose endpoints fails every event's first attempt
// (so the retry lane is busy too). One dispatcher is killed with SIGKILL
// while it certainly has attempts in flight, then restarted (four times in
// the long variant). Every event must end succeeded, delivered, with
// duplicates bounded.
//
// The victim runs `concurrency` (16) attempts per lane, the survivor 4: so
// when the endpoints are answering more than 2 × 4 requests at once, some
// are the victim's, and that is when it is killed.
//
// Duplicate bound: a duplicate needs an attempt that reached the endpoint
// (which answers 2xx) before the kill but whose message was not yet
// acknowledged. The victim runs at most `concurrency` attempts per lane
// (events and retries), so at most 2 × concurrency events can arrive twice
// per kill.
func TestSIGKILLMidLoad(t *testing.T) {
	t.Parallel()
	const survivorConcurrency = 4
	c := newCluster(t, nil)
	victim := c.startDispatcher("victim", nil)
	survivor := c.startDispatcher("survivor", map[string]string{"DISPATCHER_CONCURRENCY": fmt.Sprint(survivorConcurrency)})
	// A 200 ms answer keeps the workers of both processes busy at this
	// publish rate.
	eps := c.mixedEndpoints(victim, survivor, 200*time.Millisecond)

	l := c.startLoad(eps.ids, scaled(400, 2000), 5*time.Millisecond)
	inFlight, accepted, abandoned := eps.inFlight, eps.accepted, eps.abandoned
	abandonedBefore := abandoned()
	kills := scaled(1, 4)
	for range kills {
		progress := accepted() + 50
		testinfra.WaitFor(t, 60*time.Second, "50 more events delivered, and the victim with attempts in flight", func() bool {
			return accepted() >= progress && inFlight() > 2*survivorConcurrency
		})
		victim.Kill()
		// The survivor works alone for a while, then the victim is back.
		time.Sleep(2 * time.Second)
		victim.Start()
	}

	sent := l.wait(t)
	want, by := expectAll(sent, succeeded)
	c.awaitOutcomes(survivor, want, by, 2*time.Minute)
	dups := eps.checkArrivals(t, sent)
	bound := kills * 2 * concurrency
	t.Logf("%d events delivered; %d SIGKILLs (the endpoints saw %d requests abandoned); %d duplicate arrivals (bound %d)",
		len(sent), kills, abandoned()-abandonedBefore, dups, bound)
	if dups > bound {
		t.Errorf("%d duplicates after %d SIGKILLs, want at most %d (attempts in flight in the killed process)", dups, kills, bound)
	}
}

// TestNATSRestartMidLoad: the NATS server is shut down mid-load and
// started again (same port, same JetStream store) three seconds later.
// Publishers retry with the same event id until JetStream acknowledges;
// both dispatchers must reconnect on their own (readiness comes back,
// events published after the restart are delivered), and every
// acknowledged event must end succeeded, none lost.
//
// Duplicate bound: while the server is down, acknowledgements cannot reach
// it; a message whose attempt succeeded but whose ack was lost is
// redelivered after AckWait. Only messages held unacknowledged at the
// moment of the outage can be affected: at most `concurrency` per lane per
// process, 2 lanes × 2 processes × concurrency.
func TestNATSRestartMidLoad(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil)
	a := c.startDispatcher("a", nil)
	b := c.startDispatcher("b", nil)
	eps := c.mixedEndpoints(a, b, 50*time.Millisecond)

	events := scaled(400, 2000)
	l := c.startLoad(eps.ids, events, 15*time.Millisecond)
	testinfra.WaitFor(t, 60*time.Second, "100 events delivered before the restart", func() bool {
		return eps.accepted() >= 100
	})
	c.nats.Stop()
	down := time.Now()
	time.Sleep(scaled(3*time.Second, 15*time.Second))
	c.nats.Start()
	t.Logf("NATS was down for %s", time.Since(down).Round(time.Millisecond))
	for _, d := range []*dispatcher{a, b} {
		testinfra.WaitFor(t, 30*time.Second, "dispatcher "+d.Name()+" ready again after the restart", d.Ready)
	}
	readyAgain := l.count()

	sent := l.wait(t)
	if len(sent) <= readyAgain {
		t.Fatalf("no event was published once the dispatchers were ready again (%d before, %d in all)", readyAgain, len(sent))
	}
	want, by := expectAll(sent, succeeded)
	c.awaitOutcomes(a, want, by, 2*time.Minute)
	dups := eps.checkArrivals(t, sent)
	bound := 2 * 2 * concurrency
	t.Logf("%d events delivered (%d published once the dispatchers were ready again); %d duplicate arrivals (bound %d)",
		len(sent), len(sent)-readyAgain, dups, bound)
	if dups > bound {
		t.Errorf("%d duplicates after a NATS restart, want at most %d", dups, bound)
	}
}

// TestGracefulSIGTERMMidLoad: one of two dispatchers gets SIGTERM while
// its workers are inside 300 ms attempts. It must stop pulling, let those
// attempts finish (the endpoints see none abandoned), settle them, hand
// back what it had buffered but not started, and exit 0 within
// DISPATCHER_SHUTDOWN_TIMEOUT (5 s) plus a margin; it is then started
// again. Every event must end succeeded. Duplicates: none (bound
// 0): an attempt is either finished and acknowledged, or never started and
// handed back, so nothing that was delivered is redelivered.
func TestGracefulSIGTERMMidLoad(t *testing.T) {
	t.Parallel()
	// As in TestSIGKILLMidLoad, the other process runs 4 attempts per lane,
	// so more than 8 requests in flight means some are a's.
	const otherConcurrency = 4
	c := newCluster(t, nil)
	a := c.startDispatcher("a", nil)
	b := c.startDispatcher("b", map[string]string{"DISPATCHER_CONCURRENCY": fmt.Sprint(otherConcurrency)})
	eps := c.mixedEndpoints(a, b, 300*time.Millisecond)

	l := c.startLoad(eps.ids, scaled(300, 1500), 10*time.Millisecond)
	testinfra.WaitFor(t, 60*time.Second, "60 events delivered, and a with attempts in flight", func() bool {
		return eps.accepted() >= 60 && eps.inFlight() > 2*otherConcurrency
	})
	code, took := a.Terminate(20 * time.Second)
	if code != 0 {
		t.Errorf("dispatcher exited with code %d after SIGTERM, want 0", code)
	}
	if took > 10*time.Second {
		t.Errorf("shutdown took %s, want at most DISPATCHER_SHUTDOWN_TIMEOUT (5s) plus 5s", took)
	}
	logs := a.Log.String()
	afterSignal := logs[strings.LastIndex(logs, "--- test: terminated"):]
	finished := strings.Count(afterSignal, "msg=delivery.attempted")
	if finished == 0 {
		t.Errorf("no attempt finished after SIGTERM: the signal did not catch attempts in flight, the test proves nothing")
	}
	if strings.Contains(afterSignal, "still running at shutdown") || strings.Contains(afterSignal, "outcome=timeout") {
		t.Errorf("in-flight attempts were cut off or left running at shutdown")
	}
	if n := eps.abandoned(); n != 0 {
		t.Errorf("endpoints saw %d requests abandoned mid-answer, want 0: SIGTERM must let attempts finish", n)
	}
	t.Logf("SIGTERM: exit %d after %s, %d attempts finished after the signal", code, took.Round(time.Millisecond), finished)
	a.Start()

	sent := l.wait(t)
	want, by := expectAll(sent, succeeded)
	c.awaitOutcomes(b, want, by, 2*time.Minute)
	dups := eps.checkArrivals(t, sent)
	t.Logf("%d events delivered; %d duplicates (bound 0)", len(sent), dups)
	if dups != 0 {
		t.Errorf("%d duplicates after a graceful shutdown, want none", dups)
	}
}

// mixedEndpoints is the load of the crash tests: a healthy endpoint and a
// flaky one (each event's first attempt fails), both answering after a
// delay, configured as three integrations: healthy through a and through
// b, flaky through a.
type mixedEndpoints struct {
	healthy, flaky *endpoint
	ids            []string
}

func (c *cluster) mixedEndpoints(a, b *dispatcher, delay time.Duration) *mixedEndpoints {
	d := receiver.Duration(delay)
	m := &mixedEndpoints{
		healthy: newEndpoint(c.t, receiver.Faults{Delay: d}),
		flaky:   newEndpoint(c.t, receiver.Faults{FailFirst: 1, Delay: d}),
	}
	m.ids = []string{c.configure(a, m.healthy), c.configure(b, m.healthy), c.configure(a, m.flaky)}
	return m
}

func (m *mixedEndpoints) inFlight() int64 { return m.healthy.inFlight.Load() + m.flaky.inFlight.Load() }
func (m *mixedEndpoints) accepted() int64 {
	return m.healthy.Stats().Accepted + m.flaky.Stats().Accepted
}
func (m *mixedEndpoints) abandoned() int64 {
	return m.healthy.Stats().Abandoned + m.flaky.Stats().Abandoned
}

// checkArrivals checks both endpoints' arrivals against the events sent
// (see checkArrivals) and returns the duplicates.
func (m *mixedEndpoints) checkArrivals(t *testing.T, sent []sentEvent) int {
	return checkArrivals(t, m.healthy, ofIntegration(sent, m.ids[0], m.ids[1])) +
		checkArrivals(t, m.flaky, ofIntegration(sent, m.ids[2]))
}
