package reliability

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/blazelock/webhooks/dispatcher/deliverylog"
	"github.com/blazelock/webhooks/internal/testinfra"
	"github.com/blazelock/webhooks/subscriber/receiver"
)

// TestReceiverDownThenBack: one integration's endpoint refuses connections
// for longer than several retry delays (schedule 1s,1s,1s,2s,...) while
// events keep coming for it and for a healthy integration, then comes back.
// The healthy integration must not wait for it, and every event of the
// down one must be delivered once it is back, after failed attempts that
// are each recorded as connection_refused. Duplicates: none (bound 0): a
// refused connection never reaches the endpoint, and no process dies.
func TestReceiverDownThenBack(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil)
	a := c.startDispatcher("a", nil)
	c.startDispatcher("b", nil)
	healthyEp, downEp := newEndpoint(t, receiver.Faults{}), newEndpoint(t, receiver.Faults{})
	healthy, down := c.configure(a, healthyEp), c.configure(a, downEp)

	downEp.down()
	wentDown := time.Now()
	// Publishing ends before the endpoint comes back.
	l := c.startLoad([]string{healthy, down}, scaled(40, 80), 100*time.Millisecond)
	sent := l.wait(t)
	testinfra.WaitFor(t, 20*time.Second, "the healthy integration's events delivered while the other endpoint is down", func() bool {
		return healthyEp.Stats().Accepted == int64(len(ofIntegration(sent, healthy)))
	})
	// Down for at least 7 s: attempts 1 to 4 of the first events (after
	// delays of 1 s, 1 s, 1 s, each rounded up to a whole second) surely
	// fail. The long variant: 12 s, attempts 1 to 6 (the tenth and last
	// comes after at least 15 s, so none dies).
	time.Sleep(time.Until(wentDown.Add(scaled(7*time.Second, 12*time.Second))))
	downEp.up()
	t.Logf("endpoint down for %s", time.Since(wentDown).Round(time.Millisecond))

	want, by := expectAll(sent, succeeded)
	got := c.awaitOutcomes(a, want, by, time.Minute)
	dups := checkArrivals(t, healthyEp, ofIntegration(sent, healthy)) + checkArrivals(t, downEp, ofIntegration(sent, down))
	maxAttempts := 0
	for _, ev := range ofIntegration(sent, down) {
		d := a.deliveryWithAttempts(got[ev.ID].ID)
		maxAttempts = max(maxAttempts, d.AttemptCount)
		if d.AttemptCount < 2 || d.AttemptCount > 10 {
			t.Errorf("event %s delivered after %d attempts, want 2 to 10 (it was published while the endpoint was down)", ev.ID, d.AttemptCount)
			continue
		}
		for _, at := range d.Attempts[:len(d.Attempts)-1] {
			if !strings.HasPrefix(deref(at.Error), "connection_refused") {
				t.Errorf("event %s: failed attempt %d recorded as %q, want connection_refused", ev.ID, at.Number, deref(at.Error))
			}
		}
	}
	if maxAttempts < scaled(5, 7) {
		t.Errorf("no event needed more than %d attempts: the outage did not span several retry delays", maxAttempts)
	}
	t.Logf("%d events delivered, up to %d attempts each; %d duplicates (bound 0)", len(sent), maxAttempts, dups)
	if dups != 0 {
		t.Errorf("%d duplicates, want none", dups)
	}
}

// TestEndpointFailureModes: endpoints that answer 3xx, 4xx, 5xx, 429 with
// Retry-After, hang past the attempt timeout (2 s here) or reset the
// connection, first for a few attempts and then for good. Each failure
// must be retried on the schedule (1s,1s,2s,2s: 5 attempts), recorded with
// its class, never followed (3xx), and end succeeded once the endpoint
// answers 2xx, or dead after exactly 5 attempts; a dead delivery is then
// replayed through the API. Retry-After lengthens the wait. Duplicates:
// none (bound 0): no failure mode gets a 2xx before the endpoint recovers.
func TestEndpointFailureModes(t *testing.T) {
	t.Parallel()
	const schedule = "1s,1s,2s,2s"
	const maxAttempts = 5
	c := newCluster(t, map[string]string{"DISPATCHER_RETRY_SCHEDULE": schedule})
	a := c.startDispatcher("a", nil)
	c.startDispatcher("b", nil)

	cases := []struct {
		name   string
		faults receiver.Faults
		class  string
		// fails is how many attempts of each event fail (maxAttempts: all).
		fails int
	}{
		{"302 twice", receiver.Faults{FailFirst: 2, Status: 302}, "http_3xx", 2},
		{"404 twice", receiver.Faults{FailFirst: 2, Status: 404}, "http_4xx", 2},
		{"503 twice", receiver.Faults{FailFirst: 2, Status: 503}, "http_5xx", 2},
		{"429 with Retry-After", receiver.Faults{FailFirst: 1, RetryAfter: 3}, "http_429", 1},
		{"hang once", receiver.Faults{FailFirst: 1, Hang: true}, "timeout", 1},
		{"reset once", receiver.Faults{FailFirst: 1, Reset: true}, "connection_reset", 1},
		{"always 500", receiver.Faults{Status: 500}, "http_5xx", maxAttempts},
		{"always 301", receiver.Faults{Status: 301}, "http_3xx", maxAttempts},
		{"always hang", receiver.Faults{Hang: true}, "timeout", maxAttempts},
		{"always reset", receiver.Faults{Reset: true}, "connection_reset", maxAttempts},
	}
	const perCase = 3
	eps := make([]*endpoint, len(cases))
	ids := make([]string, len(cases))
	want, by := map[string]outcome{}, map[string][]string{}
	var sent []sentEvent
	for i, tc := range cases {
		eps[i] = newEndpoint(t, tc.faults)
		ids[i] = c.configure(a, eps[i])
	}
	for i, tc := range cases {
		for range perCase {
			ev := c.publish(ids[i], "file_scan.completed")
			sent = append(sent, ev)
			o := succeeded
			if tc.fails == maxAttempts {
				o = outcome{State: deliverylog.StateDead, Reason: tc.class}
			}
			want[ev.ID] = o
			by[ev.Integration] = append(by[ev.Integration], ev.ID)
		}
	}
	got := c.awaitOutcomes(a, want, by, 90*time.Second)

	dups := 0
	for i, tc := range cases {
		events := ofIntegration(sent, ids[i])
		if tc.fails < maxAttempts {
			dups += checkArrivals(t, eps[i], events)
		}
		arrivals := eps[i].arrivals()
		for _, ev := range events {
			d := a.deliveryWithAttempts(got[ev.ID].ID)
			wantAttempts := min(tc.fails+1, maxAttempts)
			if d.AttemptCount != wantAttempts || len(d.Attempts) != wantAttempts {
				t.Errorf("%s: event %s has %d attempts recorded, want %d", tc.name, ev.ID, d.AttemptCount, wantAttempts)
				continue
			}
			for _, at := range d.Attempts[:tc.fails] {
				if !strings.HasPrefix(deref(at.Error), tc.class) {
					t.Errorf("%s: attempt %d recorded as %q, want class %s", tc.name, at.Number, deref(at.Error), tc.class)
				}
				if tc.class == "timeout" && (at.DurationMillis < 1900 || at.DurationMillis > 5000) {
					t.Errorf("%s: timed-out attempt took %d ms, want about the 2 s attempt timeout", tc.name, at.DurationMillis)
				}
			}
			arr := arrivals[ev.ID]
			if len(arr) != wantAttempts {
				t.Errorf("%s: endpoint saw %d requests for event %s, want %d (one per attempt, no redirect followed)", tc.name, len(arr), ev.ID, wantAttempts)
				continue
			}
			for n, x := range arr {
				if x.Attempt != n+1 || x.Path != "/webhooks/"+ids[i] {
					t.Errorf("%s: request %d carried attempt %d to %s", tc.name, n+1, x.Attempt, x.Path)
				}
			}
			if tc.faults.RetryAfter > 0 {
				gap := arr[1].ArrivedAt.Sub(arr[0].ArrivedAt)
				if gap < time.Duration(tc.faults.RetryAfter)*time.Second {
					t.Errorf("%s: attempt 2 came %s after attempt 1, want at least the Retry-After of %ds (the schedule says 1s)", tc.name, gap, tc.faults.RetryAfter)
				}
			}
		}
	}
	if dups != 0 {
		t.Errorf("%d duplicates, want none", dups)
	}

	// A dead delivery replayed through the API once the endpoint is healthy:
	// a new series, attempt 1 again, same body.
	deadEp := eps[6]
	if err := deadEp.SetFaults(receiver.Faults{}); err != nil {
		t.Fatal(err)
	}
	ev := ofIntegration(sent, ids[6])[0]
	var retried delivery
	if code := a.api("POST", "/v1/deliveries/"+got[ev.ID].ID+"/retry", nil, &retried); code != http.StatusAccepted || retried.State != deliverylog.StatePending {
		t.Fatalf("retry a dead delivery: %d %+v", code, retried)
	}
	testinfra.WaitFor(t, 30*time.Second, "the replayed delivery to succeed", func() bool {
		return a.deliveryWithAttempts(got[ev.ID].ID).State == deliverylog.StateSucceeded
	})
	arr := deadEp.arrivals()[ev.ID]
	if last := arr[len(arr)-1]; len(arr) != maxAttempts+1 || last.Attempt != 1 || last.Outcome != receiver.OutcomeAccepted || string(last.Body) != string(arr[0].Body) {
		t.Errorf("replay: %d requests, last attempt header %d outcome %s; want %d, 1, accepted, same body", len(arr), last.Attempt, last.Outcome, maxAttempts+1)
	}
	t.Logf("%d cases × %d events ended as expected; replay of a dead delivery succeeded; 0 duplicates", len(cases), perCase)
}
