package reliability

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/blazelock/webhooks/dispatcher/deliverylog"
	"github.com/blazelock/webhooks/dispatcher/sign"
	"github.com/blazelock/webhooks/schemas"
	"github.com/blazelock/webhooks/subscriber/receiver"
)

// TestConfigChangesRaceAttempts: the "immediately" of docs/contract.md,
// Configuration at attempt time. Two dispatchers
// (with the Redis cache) keep three integrations busy with attempts in
// flight and retries due every second, against endpoints that fail; then,
// through one dispatcher's API, X's URL is changed, Y's secret rotated and
// Z disabled. Once the API has answered, no attempt that starts afterwards,
// on either dispatcher, may use the old setting: nothing reaches X's old
// URL, nothing is signed with Y's old secret, nothing is sent to Z. The
// attempt's start is the started_at the delivery log records for it; the
// endpoints map each request to its attempt by event id and attempt
// number. X's and Y's events must all end succeeded (at the new URL, with
// the new secret), Z's skipped.
func TestConfigChangesRaceAttempts(t *testing.T) {
	t.Parallel()
	// Ten attempts a second apart: retries are due all the time.
	c := newCluster(t, map[string]string{"DISPATCHER_RETRY_SCHEDULE": "1s,1s,1s,1s,1s,1s,1s,1s,1s"})
	a := c.startDispatcher("a", nil)
	b := c.startDispatcher("b", nil)
	failing := receiver.Faults{Status: 500, Delay: receiver.Duration(200 * time.Millisecond)}
	xOld, xNew := newEndpoint(t, failing), newEndpoint(t, receiver.Faults{})
	yEp := newEndpoint(t, failing)
	zEp := newEndpoint(t, failing)
	x, y, z := c.configure(a, xOld), c.configure(b, yEp), c.configure(a, zEp)
	oldSecret := c.secret(a, y)

	// Events keep coming before and after the changes: first attempts and
	// retries are in flight when they are made.
	l := c.startLoad([]string{x, y, z}, 150, 30*time.Millisecond)
	time.Sleep(2500 * time.Millisecond)

	xNew.SetSecret(x, c.secret(b, x)) // a URL change keeps the secret
	c.putWebhook(a, x, true, xNew.base()+"/webhooks/"+x, schemas.EventNames)
	xChanged := time.Now()
	var rotated struct{ Secret string }
	if code := b.api("POST", "/v1/integrations/"+y+"/webhook/secret/rotate", nil, &rotated); code != http.StatusOK {
		t.Fatalf("rotate: %d", code)
	}
	yRotated := time.Now()
	yEp.SetSecret(y, rotated.Secret)
	if err := yEp.SetFaults(receiver.Faults{}); err != nil {
		t.Fatal(err)
	}
	c.putWebhook(a, z, false, zEp.base()+"/webhooks/"+z, schemas.EventNames)
	zDisabled := time.Now()
	sent := l.wait(t)

	want, by := expectAll(ofIntegration(sent, x, y), succeeded)
	for _, ev := range ofIntegration(sent, z) {
		want[ev.ID] = outcome{State: deliverylog.StateSkipped, Reason: "disabled"}
		by[z] = append(by[z], ev.ID)
	}
	got := c.awaitOutcomes(a, want, by, time.Minute)

	// started returns when the attempt behind a request started.
	started := func(ev sentEvent, arrival receiver.Arrival) time.Time {
		t.Helper()
		// The raw header: the receiver parses it only for requests that
		// verify, and a request with the old signature does not.
		number, err := strconv.Atoi(arrival.AttemptHeader)
		if err != nil {
			t.Fatalf("event %s: attempt header %q", ev.ID, arrival.AttemptHeader)
		}
		d := a.deliveryWithAttempts(got[ev.ID].ID)
		for _, at := range d.Attempts {
			if at.Number == number {
				ts, err := time.Parse(time.RFC3339Nano, at.StartedAt)
				if err != nil {
					t.Fatal(err)
				}
				return ts
			}
		}
		t.Fatalf("event %s: the endpoint saw attempt %d, the delivery log has no such attempt: %+v", ev.ID, number, d.Attempts)
		return time.Time{}
	}
	// closest is how shortly before the API's answer the last request with
	// the old setting started: how tight the race was.
	closest := map[string]time.Duration{}
	check := func(name string, ep *endpoint, events []sentEvent, changed time.Time, old func(receiver.Arrival) bool) {
		t.Helper()
		arrivals := ep.arrivals()
		closest[name] = time.Hour
		for _, ev := range events {
			for _, arr := range arrivals[ev.ID] {
				if !old(arr) {
					continue
				}
				if s := started(ev, arr); s.After(changed) {
					t.Errorf("%s: attempt %s of event %s started %s after the API answered, with the old setting",
						name, arr.AttemptHeader, ev.ID, s.Sub(changed))
				} else {
					closest[name] = min(closest[name], changed.Sub(s))
				}
			}
		}
	}
	always := func(receiver.Arrival) bool { return true }
	check("URL change", xOld, ofIntegration(sent, x), xChanged, always)
	check("disable", zEp, ofIntegration(sent, z), zDisabled, always)
	check("rotation", yEp, ofIntegration(sent, y), yRotated, func(arr receiver.Arrival) bool {
		ts, err := strconv.ParseInt(arr.Timestamp, 10, 64)
		return err == nil && arr.Signature == sign.Signature(oldSecret, ts, arr.Body)
	})
	// The new settings were used: X's events at the new URL, Y's with the
	// new secret (the receiver verifies), each accepted once.
	checkArrivals(t, xNew, ofIntegration(sent, x))
	arrivals := yEp.arrivals()
	for _, ev := range ofIntegration(sent, y) {
		accepted := 0
		for _, arr := range arrivals[ev.ID] {
			if arr.Outcome == receiver.OutcomeAccepted {
				accepted++
			}
		}
		if accepted != 1 {
			t.Errorf("rotation: event %s accepted %d times with the new secret, want 1", ev.ID, accepted)
		}
	}
	retriedAfter := 0
	for _, ev := range ofIntegration(sent, x) {
		if got[ev.ID].AttemptCount > 1 && ev.Published.Before(xChanged) {
			retriedAfter++
		}
	}
	if retriedAfter == 0 {
		t.Errorf("no X event had failed before the URL change: the change raced nothing")
	}
	t.Logf("%d events; %d X events moved to the new URL after failing at the old one; the last request with the old setting started %s before the answer (URL), %s (secret), %s (disable)",
		len(sent), retriedAfter, closest["URL change"], closest["rotation"], closest["disable"])
}
