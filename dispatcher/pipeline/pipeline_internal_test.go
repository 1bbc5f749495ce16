package pipeline

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/blazelock/webhooks/dispatcher/deliver"
	"github.com/blazelock/webhooks/dispatcher/delivery"
	"github.com/blazelock/webhooks/dispatcher/deliverylog"
	"github.com/blazelock/webhooks/dispatcher/flow"
	"github.com/blazelock/webhooks/dispatcher/schedule"
	"github.com/blazelock/webhooks/dispatcher/webhooks"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
)

func TestDeferralBacksOff(t *testing.T) {
	want := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute, time.Minute, time.Minute}
	for i, w := range want {
		if got := deferral(i + 1); got != w {
			t.Errorf("deferral(%d) = %s, want %s", i+1, got, w)
		}
	}
}

type fixedWebhooks struct{}

func (fixedWebhooks) Get(_ context.Context, id string) (webhooks.Webhook, error) {
	return webhooks.Webhook{IntegrationID: id, Settings: webhooks.Settings{
		Enabled: true, URL: "https://hooks.example/x", Events: []string{"file_scan.completed"},
	}}, nil
}

// takingSender answers after `takes` on the fake clock.
type takingSender struct {
	clock  *fakeClock
	takes  time.Duration
	status int
}

func (s takingSender) Send(context.Context, deliver.Request) deliver.Result {
	start := s.clock.now()
	s.clock.add(s.takes)
	class := deliver.ClassSuccess
	if s.status >= 500 {
		class = deliver.ClassServerError
	}
	return deliver.Result{StartedAt: start, Duration: s.takes, StatusCode: s.status, Class: class}
}

// takingStore records and schedules after `takes` on the fake clock.
type takingStore struct {
	clock *fakeClock
	takes time.Duration
}

func (s takingStore) Save(context.Context, *deliverylog.Delivery) error {
	s.clock.add(s.takes)
	return nil
}

func (s takingStore) Load(context.Context, string, string) (*deliverylog.Delivery, error) {
	return nil, deliverylog.ErrNotFound
}

func (s takingStore) Schedule(context.Context, delivery.Job, time.Time) error {
	s.clock.add(s.takes)
	return nil
}

// fakePipeline is a Pipeline on fakes and a fake clock, and a first
// attempt for it to make.
func fakePipeline(t *testing.T, clock *fakeClock, sender Sender, log Recorder, lane Scheduler) (*Pipeline, delivery.Job) {
	t.Helper()
	metrics, err := NewMetrics(noop.NewMeterProvider().Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	p := New(Deps{
		Webhooks: fixedWebhooks{}, Sender: sender, DeliveryLog: log, RetryLane: lane, RetryPolicy: schedule.Default(), Metrics: metrics,
		Logger: slog.New(slog.DiscardHandler),
	})
	p.now = clock.now
	return p, delivery.Job{DeliveryID: "d-1", EventID: "e-1", IntegrationID: "i-1", Event: "file_scan.completed",
		Attempt: 1, Series: 1, CreatedAt: clock.now()}
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// recordingSlot remembers the outcomes given back and when.
type recordingSlot struct {
	clock    *fakeClock
	outcomes []flow.Outcome
	at       []time.Time
}

func (s *recordingSlot) Sending()            {}
func (s *recordingSlot) Held() time.Duration { return 0 }

func (s *recordingSlot) Done(o flow.Outcome) {
	s.outcomes = append(s.outcomes, o)
	s.at = append(s.at, s.clock.now())
}

// The endpoint's slot is given back as soon as the request ends, with the
// request's time only: a delivery log or retry lane that takes seconds
// (NATS restarting) must neither hold the endpoint's slots nor make it
// look slow to its limiter.
func TestTheSlotCarriesOnlyTheEndpointsTime(t *testing.T) {
	for _, tc := range []struct {
		name            string
		endpoint, store time.Duration
		status          int
		want            flow.Outcome
	}{
		{"fast endpoint, fast store", time.Millisecond, time.Millisecond, 200, flow.Outcome{Signal: flow.Answered, Latency: time.Millisecond}},
		{"fast endpoint, store taking 5 s to record a success", time.Millisecond, 5 * time.Second, 200, flow.Outcome{Signal: flow.Answered, Latency: time.Millisecond}},
		{"fast endpoint, store taking 5 s to record and schedule a failure", time.Millisecond, 5 * time.Second, 503, flow.Outcome{Signal: flow.Overloaded}},
		{"endpoint taking 3 s", 3 * time.Second, time.Millisecond, 200, flow.Outcome{Signal: flow.Answered, Latency: 3 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			store := takingStore{clock: clock, takes: tc.store}
			p, job := fakePipeline(t, clock, takingSender{clock: clock, takes: tc.endpoint, status: tc.status}, store, store)
			start := clock.now()
			slot := &recordingSlot{clock: clock}
			ctx := context.Background()
			if err := p.attempt(ctx, trace.SpanFromContext(ctx), job, nil, func() error { return nil }, slot); err != nil {
				t.Fatalf("attempt = %v", err)
			}
			if len(slot.outcomes) != 1 || slot.outcomes[0] != tc.want {
				t.Fatalf("slot outcomes %+v, want one %+v", slot.outcomes, tc.want)
			}
			if held := slot.at[0].Sub(start); held != tc.endpoint {
				t.Fatalf("slot held for %s, want the endpoint's %s", held, tc.endpoint)
			}
		})
	}
}

func TestEndpointOutcome(t *testing.T) {
	for _, tc := range []struct {
		res  deliver.Result
		want flow.Outcome
	}{
		{deliver.Result{Class: deliver.ClassSuccess, Duration: time.Second}, flow.Outcome{Signal: flow.Answered, Latency: time.Second}},
		{deliver.Result{Class: deliver.ClassClientError, Duration: time.Millisecond}, flow.Outcome{Signal: flow.Answered, Latency: time.Millisecond}},
		{deliver.Result{Class: deliver.ClassRedirect, Duration: time.Millisecond}, flow.Outcome{Signal: flow.Answered, Latency: time.Millisecond}},
		{deliver.Result{Class: deliver.ClassRateLimited, RetryAfter: time.Minute}, flow.Outcome{Signal: flow.Overloaded, RetryAfter: time.Minute}},
		{deliver.Result{Class: deliver.ClassServerError}, flow.Outcome{Signal: flow.Overloaded}},
		{deliver.Result{Class: deliver.ClassTimeout, Duration: 15 * time.Second}, flow.Outcome{Signal: flow.TimedOut}},
		{deliver.Result{Class: deliver.ClassReset}, flow.Outcome{Signal: flow.Overloaded}},
		{deliver.Result{Class: deliver.ClassRefused}, flow.Outcome{Signal: flow.Overloaded}},
		{deliver.Result{Class: deliver.ClassSSRF}, flow.Outcome{}},
		{deliver.Result{Class: deliver.ClassDNS}, flow.Outcome{}},
		{deliver.Result{Class: deliver.ClassTLS}, flow.Outcome{}},
	} {
		if got := endpointOutcome(tc.res); got != tc.want {
			t.Errorf("endpointOutcome(%s) = %+v, want %+v", tc.res.Class, got, tc.want)
		}
	}
}

// recordingLane remembers what was scheduled and when for.
type recordingLane struct {
	jobs []delivery.Job
	at   []time.Time
}

func (l *recordingLane) Schedule(_ context.Context, job delivery.Job, at time.Time) error {
	l.jobs, l.at = append(l.jobs, job), append(l.at, at)
	return nil
}

// A parked message waits for the scheduler's delay or its backoff,
// whichever is longer, and counts a deferral, not an attempt.
func TestParkWaitsForTheLongerOfDelayAndBackoff(t *testing.T) {
	for _, tc := range []struct {
		name      string
		deferrals int
		delay     time.Duration
		want      time.Duration
	}{
		{"first parking, scheduler's delay longer", 0, 15 * time.Second, 15 * time.Second},
		{"first parking, backoff longer", 0, time.Second, deferDelay},
		{"sixth parking", 5, 15 * time.Second, maxDeferDelay},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			lane := &recordingLane{}
			p, job := fakePipeline(t, clock, takingSender{clock: clock, status: 200}, takingStore{clock: clock}, lane)
			job.Deferrals = tc.deferrals
			if err := p.park(context.Background(), job, tc.delay); err != nil {
				t.Fatal(err)
			}
			if len(lane.at) != 1 || lane.at[0].Sub(clock.now()) != tc.want {
				t.Fatalf("scheduled %v after %v, want one after %s", lane.at, clock.now(), tc.want)
			}
			if got := lane.jobs[0]; got.Attempt != job.Attempt || got.Deferrals != tc.deferrals+1 {
				t.Fatalf("parked attempt %d with %d deferrals, want attempt %d with %d", got.Attempt, got.Deferrals, job.Attempt, tc.deferrals+1)
			}
		})
	}
}
