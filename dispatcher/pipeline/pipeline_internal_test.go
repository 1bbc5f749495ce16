package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/blazelock/webhooks/dispatcher/deliver"
	"github.com/blazelock/webhooks/dispatcher/deliverylog"
	"github.com/blazelock/webhooks/dispatcher/retrylane"
	"github.com/blazelock/webhooks/dispatcher/schedule"
	"github.com/blazelock/webhooks/dispatcher/webhooks"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
)

func TestAlreadyDone(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		recSeries, recAttempts int
		state                  string
		jobSeries, jobAttempt  int
		done                   bool
	}{
		{"next attempt of the series", 1, 2, deliverylog.StatePending, 1, 3, false},
		{"redelivered attempt already recorded", 1, 3, deliverylog.StatePending, 1, 3, true},
		{"series already ended", 1, 3, deliverylog.StateDead, 1, 4, true},
		{"job of an older series", 2, 1, deliverylog.StatePending, 1, 5, true},
		{"first attempt of a replay", 2, 0, deliverylog.StatePending, 2, 1, false},
		{"deferred first attempt, record written by a replay race", 1, 0, deliverylog.StatePending, 1, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &deliverylog.Delivery{Series: tc.recSeries, SeriesAttempts: tc.recAttempts, State: tc.state}
			if got := alreadyDone(rec, retrylane.Job{Series: tc.jobSeries, Attempt: tc.jobAttempt}); got != tc.done {
				t.Fatalf("alreadyDone = %v, want %v", got, tc.done)
			}
		})
	}
}

func TestDeferralBacksOff(t *testing.T) {
	want := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute, time.Minute, time.Minute}
	for i, w := range want {
		if got := deferral(i + 1); got != w {
			t.Errorf("deferral(%d) = %s, want %s", i+1, got, w)
		}
	}
}

func TestAttemptRecord(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		res     deliver.Result
		status  *int
		errText string
		excerpt string
	}{
		{"success", deliver.Result{Class: deliver.ClassSuccess, StatusCode: 200, Excerpt: []byte("ok")}, ptr(200), "", "ok"},
		{"server error", deliver.Result{Class: deliver.ClassServerError, StatusCode: 503}, ptr(503), "http_5xx: HTTP 503", ""},
		{"timeout", deliver.Result{Class: deliver.ClassTimeout, Err: errors.New("deadline exceeded")}, nil, "timeout: deadline exceeded", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.res.StartedAt, tc.res.Duration = start, 1500*time.Millisecond
			a := attemptRecord(4, tc.res)
			if a.Number != 4 || a.DurationMillis != 1500 || !a.StartedAt.Equal(start) {
				t.Fatalf("unexpected attempt %+v", a)
			}
			if (a.StatusCode == nil) != (tc.status == nil) || (a.StatusCode != nil && *a.StatusCode != *tc.status) {
				t.Fatalf("status %v, want %v", a.StatusCode, tc.status)
			}
			if got := deref(a.Error); got != tc.errText {
				t.Fatalf("error %q, want %q", got, tc.errText)
			}
			if got := deref(a.ResponseExcerpt); got != tc.excerpt {
				t.Fatalf("excerpt %q, want %q", got, tc.excerpt)
			}
		})
	}
}

func ptr(i int) *int { return &i }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

type fixedConfigs struct{}

func (fixedConfigs) Get(_ context.Context, id string) (webhooks.Config, error) {
	return webhooks.Config{IntegrationID: id, Settings: webhooks.Settings{
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

func (s takingStore) Schedule(context.Context, retrylane.Job, time.Time) error {
	s.clock.add(s.takes)
	return nil
}

// fakePipeline is a Pipeline on fakes and a fake clock, with 2 slots per
// integration and a slow budget of 4, and a first attempt for it to make.
func fakePipeline(t *testing.T, clock *fakeClock, sender Sender, log Recorder, lane Scheduler) (*Pipeline, retrylane.Job) {
	t.Helper()
	metrics, err := NewMetrics(noop.NewMeterProvider().Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	p := New(Deps{
		Configs: fixedConfigs{}, Sender: sender, Log: log, Retries: lane, Schedule: schedule.Default(), Metrics: metrics,
		Logger: slog.New(slog.DiscardHandler), IntegrationInFlight: 2, SlowInFlight: 4,
	})
	p.now, p.limiter.now = clock.now, clock.now
	return p, retrylane.Job{DeliveryID: "d-1", EventID: "e-1", IntegrationID: "i-1", Event: "file_scan.completed",
		Attempt: 1, Series: 1, CreatedAt: clock.now()}
}

func attemptOnce(t *testing.T, p *Pipeline, job retrylane.Job) {
	t.Helper()
	ctx := context.Background()
	if err := p.attempt(ctx, trace.SpanFromContext(ctx), job, nil, func() error { return nil }); err != nil {
		t.Fatalf("attempt = %v", err)
	}
}

// Only the endpoint's time makes an integration slow to the limiter: a
// delivery log or retry lane that takes seconds (NATS restarting) must not
// shrink every integration to the slow budget, or their attempts are
// deferred for up to a minute each.
func TestOnlyTheEndpointsTimeMakesAnIntegrationSlow(t *testing.T) {
	for _, tc := range []struct {
		name            string
		endpoint, store time.Duration
		status          int
		slow            bool
	}{
		{"fast endpoint, fast store", time.Millisecond, time.Millisecond, 200, false},
		{"fast endpoint, store taking 5 s to record a success", time.Millisecond, 5 * time.Second, 200, false},
		{"fast endpoint, store taking 5 s to record and schedule a failure", time.Millisecond, 5 * time.Second, 503, false},
		{"endpoint taking 3 s", 3 * time.Second, time.Millisecond, 200, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			store := takingStore{clock: clock, takes: tc.store}
			p, job := fakePipeline(t, clock, takingSender{clock: clock, takes: tc.endpoint, status: tc.status}, store, store)
			attemptOnce(t, p, job)
			if got := p.limiter.isSlow(job.IntegrationID, clock.now()); got != tc.slow {
				t.Fatalf("integration slow = %v, want %v", got, tc.slow)
			}
		})
	}
}

// recordingLane remembers when each job was scheduled for.
type recordingLane struct{ at []time.Time }

func (l *recordingLane) Schedule(_ context.Context, _ retrylane.Job, at time.Time) error {
	l.at = append(l.at, at)
	return nil
}

// An attempt refused because its integration is known to be slow is put
// off for at least slowDeferDelay; one refused at the cap of a healthy
// integration after deferDelay.
func TestDeferralOfSlowIntegrationsIsLonger(t *testing.T) {
	for _, tc := range []struct {
		name  string
		slow  bool
		delay time.Duration
	}{
		{"healthy integration at its cap", false, deferDelay},
		{"slow integration without room", true, slowDeferDelay},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			lane := &recordingLane{}
			p, job := fakePipeline(t, clock, takingSender{clock: clock, status: 200}, takingStore{clock: clock}, lane)
			if tc.slow {
				p.limiter.release("i-1", mustAcquire(t, p.limiter, "i-1"), true)
			}
			mustAcquire(t, p.limiter, "i-1")
			mustAcquire(t, p.limiter, "i-1")
			attemptOnce(t, p, job)
			if len(lane.at) != 1 || lane.at[0].Sub(clock.now()) != tc.delay {
				t.Fatalf("scheduled %v after %v, want one deferral after %s", lane.at, clock.now(), tc.delay)
			}
		})
	}
}
