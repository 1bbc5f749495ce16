package delivery_test

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/blazelock/webhooks/dispatcher/deliver"
	"github.com/blazelock/webhooks/dispatcher/delivery"
	"github.com/blazelock/webhooks/dispatcher/deliverylog"
)

// cet is a zone other than UTC: every time the record keeps must be UTC
// whatever the zone of the times passed in.
var cet = time.FixedZone("CET", 3600)

var (
	created = time.Date(2026, 3, 9, 13, 0, 0, 0, cet)
	started = time.Date(2026, 3, 9, 14, 0, 0, 0, cet)
	now     = time.Date(2026, 3, 9, 15, 0, 0, 0, cet)
)

func job(series, attempt int) delivery.Job {
	return delivery.Job{
		DeliveryID: "0195a0c1-0000-7000-8000-0000000000aa", EventID: "0195a0c1-0000-7000-8000-0000000000bb",
		IntegrationID: "0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01", Event: "file_scan.completed",
		Attempt: attempt, Series: series, EventSequence: 42, CreatedAt: created,
		Body: []byte(`{}`), Trace: nats.Header{"traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}},
	}
}

func ok() deliver.Result {
	return deliver.Result{StartedAt: started, Duration: 1500 * time.Millisecond, StatusCode: 200, Class: deliver.ClassSuccess}
}

func failed() deliver.Result {
	return deliver.Result{StartedAt: started, Duration: 1500 * time.Millisecond, StatusCode: 503, Class: deliver.ClassServerError}
}

var (
	more = delivery.Decision{More: true, Delay: 5 * time.Minute}
	last = delivery.Decision{}
)

// record is a delivery of series 2 after 3 attempts of that series (5 in
// all) in the given state, as the log holds it.
func record(state string) *deliverylog.Delivery {
	rec := delivery.Start(job(2, 1))
	rec.State, rec.SeriesAttempts, rec.AttemptCount = state, 3, 5
	for i := range 5 {
		rec.Attempts = append(rec.Attempts, deliverylog.Attempt{Number: i%3 + 1, StartedAt: created.UTC()})
	}
	if state == deliverylog.StatePending {
		next := started.Add(time.Hour)
		rec.NextAttemptAt = &next
	}
	return rec
}

// TestTransitionTable applies every event to a record in every state and
// checks the state it ends in, or the refusal; a refused event leaves the
// record as it was.
func TestTransitionTable(t *testing.T) {
	const (
		stale        = "refused: stale"
		notRetryable = "refused: not retryable"
	)
	type event struct {
		name  string
		apply func(rec *deliverylog.Delivery) error
	}
	attempted := func(j delivery.Job, res deliver.Result, d delivery.Decision) func(*deliverylog.Delivery) error {
		return func(rec *deliverylog.Delivery) error { return delivery.Attempted(rec, j, res, d) }
	}
	skip := func(j delivery.Job) func(*deliverylog.Delivery) error {
		return func(rec *deliverylog.Delivery) error { return delivery.Skip(rec, j, "webhook disabled", now) }
	}
	events := []event{
		{"next attempt succeeds", attempted(job(2, 4), ok(), more)},
		{"next attempt fails, attempts left", attempted(job(2, 4), failed(), more)},
		{"next attempt fails, the last", attempted(job(2, 4), failed(), last)},
		{"next attempt skipped", skip(job(2, 4))},
		{"recorded attempt again", attempted(job(2, 3), ok(), more)},
		{"recorded attempt skipped", skip(job(2, 3))},
		{"older series attempted", attempted(job(1, 9), ok(), more)},
		{"older series skipped", skip(job(1, 9))},
		{"newer series attempted", attempted(job(3, 1), failed(), more)},
		{"newer series skipped", skip(job(3, 1))},
		{"replay", func(rec *deliverylog.Delivery) error { _, err := delivery.Replay(rec, now); return err }},
	}
	const (
		pending   = deliverylog.StatePending
		succeeded = deliverylog.StateSucceeded
		dead      = deliverylog.StateDead
		skipped   = deliverylog.StateSkipped
		rejected  = deliverylog.StateRejected
	)
	for _, row := range []struct {
		from string
		// want is the outcome of each event, in the order of events.
		want []string
	}{
		{pending, []string{succeeded, pending, dead, skipped, stale, stale, stale, stale, pending, skipped, notRetryable}},
		{succeeded, []string{stale, stale, stale, stale, stale, stale, stale, stale, pending, skipped, pending}},
		{dead, []string{stale, stale, stale, stale, stale, stale, stale, stale, pending, skipped, pending}},
		{skipped, []string{stale, stale, stale, stale, stale, stale, stale, stale, pending, skipped, pending}},
		{rejected, []string{stale, stale, stale, stale, stale, stale, stale, stale, stale, stale, notRetryable}},
	} {
		if len(row.want) != len(events) {
			t.Fatalf("row %s has %d outcomes for %d events", row.from, len(row.want), len(events))
		}
		for i, ev := range events {
			t.Run(row.from+"/"+ev.name, func(t *testing.T) {
				rec := record(row.from)
				before := record(row.from)
				err := ev.apply(rec)
				var got string
				switch {
				case errors.Is(err, delivery.ErrStale):
					got = stale
				case errors.Is(err, delivery.ErrNotRetryable):
					got = notRetryable
				case err != nil:
					t.Fatalf("unexpected error %v", err)
				default:
					got = rec.State
				}
				if got != row.want[i] {
					t.Fatalf("%s + %s = %s, want %s", row.from, ev.name, got, row.want[i])
				}
				if err != nil && !reflect.DeepEqual(rec, before) {
					t.Fatalf("a refused event changed the record:\n got %+v\nwant %+v", rec, before)
				}
			})
		}
	}
}

func TestStartIsAPendingRecordWithoutAttempts(t *testing.T) {
	j := job(1, 1)
	j.EventID, j.Event = "", "" // a rejected event's parts may be missing
	rec := delivery.Start(j)
	want := &deliverylog.Delivery{
		ID: j.DeliveryID, IntegrationID: j.IntegrationID, State: deliverylog.StatePending,
		CreatedAt: created.UTC(), UpdatedAt: created.UTC(), EventSequence: 42, Series: 1,
		Attempts: []deliverylog.Attempt{},
	}
	if !reflect.DeepEqual(rec, want) {
		t.Fatalf("Start = %+v, want %+v", rec, want)
	}
	if rec.CreatedAt.Location() != time.UTC {
		t.Fatalf("created at %s, want UTC", rec.CreatedAt)
	}
	full := delivery.Start(job(1, 1))
	if full.EventID == nil || *full.EventID != job(1, 1).EventID || full.Event == nil || *full.Event != "file_scan.completed" {
		t.Fatalf("event id %v, event %v", full.EventID, full.Event)
	}
}

func TestRejectKeepsTheReasonAndTheEventsTime(t *testing.T) {
	rec := delivery.Reject(job(1, 0), "invalid JSON")
	if rec.State != deliverylog.StateRejected || rec.LastError == nil || *rec.LastError != "invalid JSON" {
		t.Fatalf("rejected as %s with %v", rec.State, rec.LastError)
	}
	if rec.AttemptCount != 0 || len(rec.Attempts) != 0 || rec.Attempts == nil || rec.NextAttemptAt != nil {
		t.Fatalf("a rejected delivery has attempts or a next one: %+v", rec)
	}
	if !rec.CreatedAt.Equal(created) || !rec.UpdatedAt.Equal(created) || rec.UpdatedAt.Location() != time.UTC {
		t.Fatalf("created %s, updated %s; want both the event's time %s in UTC", rec.CreatedAt, rec.UpdatedAt, created)
	}
}

// TestAttemptedRecordsTheAttempt: the attempt as the log shows it, and the
// summary fields it sets.
func TestAttemptedRecordsTheAttempt(t *testing.T) {
	start := time.Date(2026, 1, 1, 1, 0, 0, 0, cet)
	for _, tc := range []struct {
		name     string
		res      deliver.Result
		decision delivery.Decision
		state    string
		status   *int
		errText  string
		excerpt  string
		next     time.Duration // from the attempt's end; 0: none
	}{
		{"success", deliver.Result{Class: deliver.ClassSuccess, StatusCode: 200, Excerpt: []byte("ok")}, more, deliverylog.StateSucceeded, ptr(200), "", "ok", 0},
		{"server error", deliver.Result{Class: deliver.ClassServerError, StatusCode: 503}, more, deliverylog.StatePending, ptr(503), "http_5xx: HTTP 503", "", 5 * time.Minute},
		{"timeout", deliver.Result{Class: deliver.ClassTimeout, Err: errors.New("deadline exceeded")}, more, deliverylog.StatePending, nil, "timeout: deadline exceeded", "", 5 * time.Minute},
		{"last attempt fails", deliver.Result{Class: deliver.ClassClientError, StatusCode: 404, Excerpt: []byte("no")}, last, deliverylog.StateDead, ptr(404), "http_4xx: HTTP 404", "no", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.res.StartedAt, tc.res.Duration = start, 1500*time.Millisecond
			rec := delivery.Start(job(1, 1))
			// A previous attempt's failure, cleared or replaced by this one.
			rec.LastError, rec.LastStatusCode, rec.SeriesAttempts, rec.AttemptCount = ptrs("earlier"), ptr(500), 3, 3
			if err := delivery.Attempted(rec, job(1, 4), tc.res, tc.decision); err != nil {
				t.Fatal(err)
			}
			if len(rec.Attempts) != 1 {
				t.Fatalf("%d attempts recorded", len(rec.Attempts))
			}
			a := rec.Attempts[0]
			if a.Number != 4 || a.DurationMillis != 1500 || !a.StartedAt.Equal(start) || a.StartedAt.Location() != time.UTC {
				t.Fatalf("unexpected attempt %+v", a)
			}
			if !equalInt(a.StatusCode, tc.status) || !equalInt(rec.LastStatusCode, tc.status) {
				t.Fatalf("status %v, last status %v, want %v", a.StatusCode, rec.LastStatusCode, tc.status)
			}
			if deref(a.Error) != tc.errText || deref(rec.LastError) != tc.errText {
				t.Fatalf("error %q, last error %q, want %q", deref(a.Error), deref(rec.LastError), tc.errText)
			}
			if got := deref(a.ResponseExcerpt); got != tc.excerpt {
				t.Fatalf("excerpt %q, want %q", got, tc.excerpt)
			}
			end := start.Add(1500 * time.Millisecond)
			if rec.State != tc.state || rec.AttemptCount != 4 || rec.SeriesAttempts != 4 || rec.Series != 1 {
				t.Fatalf("%s after %d attempts (%d of series %d), want %s after 4 (4 of series 1)",
					rec.State, rec.AttemptCount, rec.SeriesAttempts, rec.Series, tc.state)
			}
			if !rec.UpdatedAt.Equal(end) || rec.UpdatedAt.Location() != time.UTC {
				t.Fatalf("updated at %s, want the attempt's end %s in UTC", rec.UpdatedAt, end)
			}
			switch {
			case tc.next == 0 && rec.NextAttemptAt != nil:
				t.Fatalf("next attempt at %s, want none", rec.NextAttemptAt)
			case tc.next != 0 && (rec.NextAttemptAt == nil || !rec.NextAttemptAt.Equal(end.Add(tc.next))):
				t.Fatalf("next attempt at %v, want %s", rec.NextAttemptAt, end.Add(tc.next))
			}
		})
	}
}

// A delivery replayed many times keeps its newest attempts only, and
// still counts them all.
func TestAttemptedKeepsTheNewest50Attempts(t *testing.T) {
	rec := delivery.Start(job(1, 1))
	for series := 1; series <= 7; series++ {
		for attempt := 1; attempt <= 10; attempt++ {
			if err := delivery.Attempted(rec, job(series, attempt), failed(), delivery.Decision{More: attempt < 10, Delay: time.Minute}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := delivery.Replay(rec, now); err != nil {
			t.Fatal(err)
		}
	}
	if len(rec.Attempts) != 50 || rec.AttemptCount != 70 {
		t.Fatalf("%d attempts kept of %d, want 50 of 70", len(rec.Attempts), rec.AttemptCount)
	}
	// The oldest kept is attempt 1 of series 3 (series 1 and 2 dropped).
	if rec.Attempts[0].Number != 1 || rec.Attempts[49].Number != 10 {
		t.Fatalf("kept attempts %d..%d", rec.Attempts[0].Number, rec.Attempts[49].Number)
	}
}

// A job of a newer series than its record (a replay whose record was put
// back after its enqueue seemed to fail) is attempted, and the record
// moves to its series.
func TestAttemptedOfANewerSeriesMovesTheRecord(t *testing.T) {
	rec := record(deliverylog.StateDead)
	if err := delivery.Attempted(rec, job(3, 1), ok(), more); err != nil {
		t.Fatal(err)
	}
	if rec.Series != 3 || rec.SeriesAttempts != 1 || rec.AttemptCount != 6 || rec.State != deliverylog.StateSucceeded {
		t.Fatalf("series %d attempt %d (%d in all) %s, want series 3 attempt 1 (6) succeeded", rec.Series, rec.SeriesAttempts, rec.AttemptCount, rec.State)
	}
}

func TestSkipEndsTheDeliveryWithoutAnAttempt(t *testing.T) {
	rec := record(deliverylog.StatePending)
	if err := delivery.Skip(rec, job(2, 4), "event file_scan.completed not selected", now); err != nil {
		t.Fatal(err)
	}
	if rec.State != deliverylog.StateSkipped || deref(rec.LastError) != "event file_scan.completed not selected" || rec.NextAttemptAt != nil {
		t.Fatalf("skipped as %s, %q, next %v", rec.State, deref(rec.LastError), rec.NextAttemptAt)
	}
	if rec.AttemptCount != 5 || rec.SeriesAttempts != 3 || len(rec.Attempts) != 5 {
		t.Fatalf("a skip counted an attempt: %d (%d of the series)", rec.AttemptCount, rec.SeriesAttempts)
	}
	if !rec.UpdatedAt.Equal(now) || rec.UpdatedAt.Location() != time.UTC {
		t.Fatalf("updated at %s, want %s in UTC", rec.UpdatedAt, now)
	}
}

func TestReplayStartsTheNextSeries(t *testing.T) {
	for _, state := range []string{deliverylog.StateDead, deliverylog.StateSkipped, deliverylog.StateSucceeded} {
		t.Run(state, func(t *testing.T) {
			rec := record(state)
			rec.LastError = ptrs("http_5xx: HTTP 503")
			attempts := rec.Attempts
			j, err := delivery.Replay(rec, now)
			if err != nil {
				t.Fatal(err)
			}
			if rec.State != deliverylog.StatePending || rec.Series != 3 || rec.SeriesAttempts != 0 {
				t.Fatalf("%s, series %d after %d attempts; want pending, series 3 after 0", rec.State, rec.Series, rec.SeriesAttempts)
			}
			if rec.NextAttemptAt == nil || !rec.NextAttemptAt.Equal(now) || rec.NextAttemptAt.Location() != time.UTC ||
				!rec.UpdatedAt.Equal(now) || rec.UpdatedAt.Location() != time.UTC {
				t.Fatalf("next attempt %v, updated %s; want both %s in UTC", rec.NextAttemptAt, rec.UpdatedAt, now)
			}
			if rec.AttemptCount != 5 || !reflect.DeepEqual(rec.Attempts, attempts) || deref(rec.LastError) != "http_5xx: HTTP 503" {
				t.Fatalf("the history changed: %d attempts, last error %q", rec.AttemptCount, deref(rec.LastError))
			}
			want := job(3, 1)
			want.Body, want.Trace, want.CreatedAt = nil, nil, created.UTC()
			if !reflect.DeepEqual(j, want) {
				t.Fatalf("replay job\n got %+v\nwant %+v", j, want)
			}
			// Its attempt is the record's next.
			if delivery.AlreadyDone(rec, j) {
				t.Fatal("the replay's first attempt counts as done")
			}
		})
	}
	for _, state := range []string{deliverylog.StatePending, deliverylog.StateRejected} {
		t.Run(state, func(t *testing.T) {
			_, err := delivery.Replay(record(state), now)
			if !errors.Is(err, delivery.ErrNotRetryable) || err.Error() != fmt.Sprintf("%s: it is %s", delivery.ErrNotRetryable, state) {
				t.Fatalf("Replay of a %s delivery = %v", state, err)
			}
		})
	}
}

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
		{"job of a newer series than a finished record", 1, 10, deliverylog.StateDead, 2, 1, false},
		{"rejected delivery, any job", 1, 0, deliverylog.StateRejected, 2, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &deliverylog.Delivery{Series: tc.recSeries, SeriesAttempts: tc.recAttempts, State: tc.state}
			if got := delivery.AlreadyDone(rec, delivery.Job{Series: tc.jobSeries, Attempt: tc.jobAttempt}); got != tc.done {
				t.Fatalf("AlreadyDone = %v, want %v", got, tc.done)
			}
		})
	}
}

// TestResume: a redelivered job whose attempt left the delivery pending
// owes the next attempt at the recorded time; any other owes nothing.
func TestResume(t *testing.T) {
	due := started.Add(time.Hour)
	for _, tc := range []struct {
		name string
		rec  func() *deliverylog.Delivery
		job  delivery.Job
		ok   bool
	}{
		{"latest attempt, pending", func() *deliverylog.Delivery { return record(deliverylog.StatePending) }, job(2, 3), true},
		{"an earlier attempt", func() *deliverylog.Delivery { return record(deliverylog.StatePending) }, job(2, 2), false},
		{"an older series", func() *deliverylog.Delivery { return record(deliverylog.StatePending) }, job(1, 3), false},
		{"latest attempt, dead", func() *deliverylog.Delivery { return record(deliverylog.StateDead) }, job(2, 3), false},
		{"latest attempt, succeeded", func() *deliverylog.Delivery { return record(deliverylog.StateSucceeded) }, job(2, 3), false},
		{"pending without a time", func() *deliverylog.Delivery {
			rec := record(deliverylog.StatePending)
			rec.NextAttemptAt = nil
			return rec
		}, job(2, 3), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := tc.job
			j.Deferrals = 2
			next, at, ok := delivery.Resume(tc.rec(), j)
			if ok != tc.ok {
				t.Fatalf("Resume ok = %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if want := job(2, 4); !reflect.DeepEqual(next, want) || !at.Equal(due) {
				t.Fatalf("Resume = %+v at %s, want %+v at %s", next, at, want, due)
			}
		})
	}
}

func TestJobNextAndParked(t *testing.T) {
	j := job(2, 3)
	parked := j.Parked().Parked()
	if parked.Attempt != 3 || parked.Series != 2 || parked.Deferrals != 2 {
		t.Fatalf("parked twice: attempt %d series %d deferrals %d", parked.Attempt, parked.Series, parked.Deferrals)
	}
	next := parked.Next()
	if next.Attempt != 4 || next.Series != 2 || next.Deferrals != 0 {
		t.Fatalf("next: attempt %d series %d deferrals %d", next.Attempt, next.Series, next.Deferrals)
	}
	if j.Attempt != 3 || j.Deferrals != 0 {
		t.Fatal("Next or Parked changed the job it was called on")
	}
	next.Attempt, next.Deferrals = j.Attempt, j.Deferrals
	if !reflect.DeepEqual(next, j) {
		t.Fatalf("Next changed more than the attempt:\n%+v\n%+v", next, j)
	}
}

func ptr(i int) *int          { return &i }
func ptrs(s string) *string   { return &s }
func equalInt(a, b *int) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }
func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
