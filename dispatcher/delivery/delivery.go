// Package delivery owns a delivery's state: the work item that travels through
// the lanes (Job) and every transition of its record in the delivery log
// (docs/contract.md, Delivery states). The pipeline and the replay route
// change a record only through these functions; package retrylane only encodes
// a Job into NATS messages and back, and package deliverylog only stores
// records.
//
// The transitions are functions taking the record, not methods on it,
// because the record's type stays in deliverylog, beside the store: it is
// the log's JSON shape, read as such by the API and the end-to-end tests.
// Putting the transitions there instead would make the store depend on the
// HTTP attempt's result and give the retry lane a "log" package as the
// home of its work item. This package depends on neither lane nor store:
// its rules are tested without NATS, with times passed in.
//
// The transition table (job means the Job being worked on):
//
//	Start(job)                  → pending, no attempt (a new record)
//	Reject(job, reason)         → rejected (a new record: the event is invalid)
//	Attempted(rec, job, …)      pending → succeeded | pending (next attempt due) | dead
//	Skip(rec, job, reason, now) pending → skipped
//	Replay(rec, now)            dead | skipped | succeeded → pending, series+1
//
// Attempted and Skip refuse a job the record is already past (AlreadyDone:
// an attempt already recorded, a series that ended, a job of an older
// series, or a rejected delivery) with ErrStale; a job of a newer series
// than the record is accepted whatever the record's state (a replay whose
// record was restored after its enqueue seemed to fail). Replay refuses
// pending and rejected deliveries with ErrNotRetryable.
package delivery

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/blazelock/webhooks/dispatcher/deliver"
	"github.com/blazelock/webhooks/dispatcher/deliverylog"
)

// Job is one attempt to make: the work item of both lanes.
type Job struct {
	DeliveryID    string
	EventID       string
	IntegrationID string
	Event         string
	// Attempt is the number of the attempt to make (1..max within a series).
	Attempt int
	// Series is 1 for the original attempts, +1 for each API retry.
	Series int
	// Deferrals counts how often this attempt was parked by flow control
	// (its integration could not take it); it keeps the message id of each
	// parking distinct from the scheduled attempt it replaces.
	Deferrals     int
	EventSequence uint64
	CreatedAt     time.Time
	Body          []byte
	// Trace holds the W3C trace headers to carry along.
	Trace nats.Header
}

// Next is the job of the attempt after j: the next number, not parked yet.
func (j Job) Next() Job {
	j.Attempt++
	j.Deferrals = 0
	return j
}

// Parked is j put off once more by flow control: the same attempt, one
// deferral more.
func (j Job) Parked() Job {
	j.Deferrals++
	return j
}

// ErrStale means the record is already past the job: its attempt is
// recorded, its series ended, it belongs to an older series, or the
// delivery was rejected.
var ErrStale = errors.New("the delivery is already past this attempt")

// ErrNotRetryable means the delivery is pending (attempts remain) or was
// rejected (the event is invalid and would be rejected again).
var ErrNotRetryable = errors.New("delivery cannot be retried in its current state")

// maxKeptAttempts bounds a record's size when a delivery is replayed many
// times; the newest attempts are kept.
const maxKeptAttempts = 50

// Start returns the new record of job's delivery: pending, no attempt yet,
// created (and updated) when the events stream stored the event.
func Start(job Job) *deliverylog.Delivery {
	created := job.CreatedAt.UTC()
	return &deliverylog.Delivery{
		ID: job.DeliveryID, EventID: nonEmpty(job.EventID), Event: nonEmpty(job.Event),
		IntegrationID: job.IntegrationID, State: deliverylog.StatePending,
		CreatedAt: created, UpdatedAt: created, EventSequence: job.EventSequence, Series: job.Series,
		Attempts: []deliverylog.Attempt{},
	}
}

// Reject returns the record of an event that is not deliverable, with the
// reason: rejected from the start, with no attempt, its times the event's.
// It replaces whatever the log holds for the delivery: the message it
// describes is the same, and invalid.
func Reject(job Job, reason string) *deliverylog.Delivery {
	rec := Start(job)
	rec.State, rec.LastError = deliverylog.StateRejected, &reason
	return rec
}

// AlreadyDone reports whether rec is already past job: the job is of an
// older series, or of the record's series and either already recorded or
// after the series ended; a rejected delivery is past every job. Such a
// job is not attempted again (see Resume).
func AlreadyDone(rec *deliverylog.Delivery, job Job) bool {
	if rec.State == deliverylog.StateRejected {
		return true
	}
	if rec.Series != job.Series {
		return rec.Series > job.Series
	}
	return rec.SeriesAttempts >= job.Attempt || rec.State != deliverylog.StatePending
}

// Resume says what a job the record is already past still owes when it
// comes again (a redelivery): if rec shows job's attempt as the latest of
// its series and the delivery pending, the process that recorded it may
// have stopped before scheduling the next one (the record is written
// first), so that next attempt is due at the recorded time. ok is false
// when nothing is owed.
func Resume(rec *deliverylog.Delivery, job Job) (next Job, at time.Time, ok bool) {
	if rec.Series != job.Series || rec.SeriesAttempts != job.Attempt ||
		rec.State != deliverylog.StatePending || rec.NextAttemptAt == nil {
		return Job{}, time.Time{}, false
	}
	return job.Next(), *rec.NextAttemptAt, true
}

// Decision is the retry schedule's answer after an attempt
// (schedule.Schedule.NextDelay): whether another attempt is allowed, and
// its delay from the end of this one.
type Decision struct {
	More  bool
	Delay time.Duration
}

// Attempted records job's attempt, whose result is res, in rec: succeeded
// on a 2xx; pending with the next attempt due Delay after this one ended
// when the schedule allows More; dead otherwise. The attempt's start and
// end set the record's update time. ErrStale when rec is already past job.
func Attempted(rec *deliverylog.Delivery, job Job, res deliver.Result, next Decision) error {
	if AlreadyDone(rec, job) {
		return stale(rec, job)
	}
	rec.Series = job.Series
	addAttempt(rec, attemptRecord(job.Attempt, res))
	rec.NextAttemptAt = nil
	switch {
	case res.OK():
		rec.State = deliverylog.StateSucceeded
	case next.More:
		at := res.StartedAt.Add(res.Duration).Add(next.Delay)
		rec.State, rec.NextAttemptAt = deliverylog.StatePending, &at
	default:
		rec.State = deliverylog.StateDead
	}
	return nil
}

// Skip ends the delivery as skipped at now, with the reason (docs/contract.md,
// Configuration at attempt time: the webhook is disabled or gone, or no longer
// selects the event); no attempt is made or counted. ErrStale when rec is
// already past job.
func Skip(rec *deliverylog.Delivery, job Job, reason string, now time.Time) error {
	if AlreadyDone(rec, job) {
		return stale(rec, job)
	}
	rec.Series = job.Series
	rec.State, rec.LastError, rec.NextAttemptAt, rec.UpdatedAt = deliverylog.StateSkipped, &reason, nil, now.UTC()
	return nil
}

// Replay starts a new series of attempts for a dead, skipped or succeeded
// delivery at now: pending, attempt 1 of series n+1 due at once. It
// returns that attempt's job, without the event's body and trace headers,
// which the caller reads from the events stream. ErrNotRetryable for a
// pending or rejected delivery.
func Replay(rec *deliverylog.Delivery, now time.Time) (Job, error) {
	if !Replayable(rec.State) {
		return Job{}, fmt.Errorf("%w: it is %s", ErrNotRetryable, rec.State)
	}
	now = now.UTC()
	rec.State, rec.Series, rec.SeriesAttempts, rec.NextAttemptAt, rec.UpdatedAt = deliverylog.StatePending, rec.Series+1, 0, &now, now
	return Job{
		DeliveryID: rec.ID, EventID: deref(rec.EventID), IntegrationID: rec.IntegrationID, Event: deref(rec.Event),
		Attempt: 1, Series: rec.Series, EventSequence: rec.EventSequence, CreatedAt: rec.CreatedAt,
	}, nil
}

// Replayable reports whether a delivery in state can be replayed: it is
// finished (dead, skipped or succeeded), and not rejected, whose event
// would be rejected again.
func Replayable(state string) bool {
	switch state {
	case deliverylog.StateDead, deliverylog.StateSkipped, deliverylog.StateSucceeded:
		return true
	}
	return false
}

func stale(rec *deliverylog.Delivery, job Job) error {
	return fmt.Errorf("%w: attempt %d of series %d, the record is %s after attempt %d of series %d",
		ErrStale, job.Attempt, job.Series, rec.State, rec.SeriesAttempts, rec.Series)
}

// addAttempt appends an attempt, keeping the newest maxKeptAttempts, and
// updates the summary fields from it.
func addAttempt(rec *deliverylog.Delivery, a deliverylog.Attempt) {
	rec.Attempts = append(rec.Attempts, a)
	if len(rec.Attempts) > maxKeptAttempts {
		rec.Attempts = rec.Attempts[len(rec.Attempts)-maxKeptAttempts:]
	}
	rec.AttemptCount++
	rec.SeriesAttempts = a.Number
	rec.LastStatusCode = a.StatusCode
	rec.LastError = a.Error
	rec.UpdatedAt = a.StartedAt.Add(time.Duration(a.DurationMillis) * time.Millisecond)
}

// attemptRecord is the log's account of attempt number whose result is res.
func attemptRecord(number int, res deliver.Result) deliverylog.Attempt {
	a := deliverylog.Attempt{Number: number, StartedAt: res.StartedAt.UTC(), DurationMillis: res.Duration.Milliseconds()}
	if res.StatusCode != 0 {
		code := res.StatusCode
		a.StatusCode = &code
	}
	if !res.OK() {
		msg := res.Class
		if res.Err != nil {
			msg += ": " + res.Err.Error()
		} else if res.StatusCode != 0 {
			msg = fmt.Sprintf("%s: HTTP %d", res.Class, res.StatusCode)
		}
		a.Error = &msg
	}
	if len(res.Excerpt) > 0 {
		s := string(res.Excerpt)
		a.ResponseExcerpt = &s
	}
	return a
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
