package replay_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/blazelock/webhooks/dispatcher/delivery"
	"github.com/blazelock/webhooks/dispatcher/deliverylog"
	"github.com/blazelock/webhooks/dispatcher/replay"
	"github.com/blazelock/webhooks/dispatcher/retrylane"
	"github.com/blazelock/webhooks/internal/natsinfra"
	"github.com/blazelock/webhooks/internal/testinfra"
)

// The tests run the Service on a JetStream provisioned as the dispatcher
// provisions it (testinfra.ProvisionedJetStream): the real events stream,
// deliveries bucket and retry lane with its consumer.

const (
	traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	tracestate  = "vendor=value"
)

type fixture struct {
	t       *testing.T
	js      jetstream.JetStream
	log     *deliverylog.Log
	svc     *replay.Service
	retries jetstream.Consumer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	js := testinfra.ProvisionedJetStream(t)
	kv, err := js.KeyValue(ctx, natsinfra.DeliveriesBucket)
	if err != nil {
		t.Fatal(err)
	}
	retries, err := js.Consumer(ctx, natsinfra.RetriesStream, natsinfra.RetriesConsumer)
	if err != nil {
		t.Fatal(err)
	}
	log := deliverylog.New(kv)
	return &fixture{t: t, js: js, log: log, svc: replay.New(log, retrylane.New(js), js), retries: retries}
}

// event is a published event and the delivery record the test gives it.
type event struct {
	seq   uint64
	body  []byte
	rec   *deliverylog.Delivery
	event string
}

// publish stores an event for integration on the events stream, with trace
// headers, and saves a delivery record for it in state.
func (f *fixture) publish(integration, state string, storedAt time.Time) event {
	f.t.Helper()
	ctx := context.Background()
	const name = "file_scan.completed"
	eventID := uuid.NewString()
	body := []byte(`{"event":"` + name + `","integration_id":"` + integration + `","n":"` + eventID + `"}`)
	ack, err := f.js.PublishMsg(ctx, &nats.Msg{
		Subject: natsinfra.EventSubject(integration, name), Data: body,
		Header: nats.Header{"traceparent": {traceparent}, "tracestate": {tracestate}, "Other": {"not carried"}},
	}, jetstream.WithMsgID(eventID))
	if err != nil {
		f.t.Fatal(err)
	}
	status, reason := 500, "http_5xx: HTTP 500"
	rec := &deliverylog.Delivery{
		ID: deliverylog.DeliveryID(natsinfra.EventsStream, ack.Sequence, storedAt), EventID: &eventID, Event: ptr(name),
		IntegrationID: integration, State: state, AttemptCount: 3, LastStatusCode: &status, LastError: &reason,
		CreatedAt: storedAt, UpdatedAt: storedAt.Add(time.Minute), EventSequence: ack.Sequence, Series: 1, SeriesAttempts: 3,
		Attempts: []deliverylog.Attempt{{Number: 3, StartedAt: storedAt.Add(time.Minute), DurationMillis: 12, StatusCode: &status, Error: &reason}},
	}
	if err := f.log.Save(ctx, rec); err != nil {
		f.t.Fatal(err)
	}
	return event{seq: ack.Sequence, body: body, rec: rec, event: name}
}

func ptr[T any](v T) *T { return &v }

// stored reads the delivery's record from the bucket, as JSON.
func (f *fixture) stored(id string) string {
	f.t.Helper()
	d, err := f.log.Get(context.Background(), id)
	if err != nil {
		f.t.Fatal(err)
	}
	return jsonOf(f.t, d)
}

// enqueued returns the jobs due in the retry lane: up to max of them,
// waiting at most wait for them.
func (f *fixture) enqueued(max int, wait time.Duration) []delivery.Job {
	f.t.Helper()
	batch, err := f.retries.Fetch(max, jetstream.FetchMaxWait(wait))
	if err != nil {
		f.t.Fatal(err)
	}
	var jobs []delivery.Job
	for m := range batch.Messages() {
		job, err := retrylane.Decode(m)
		if err != nil {
			f.t.Fatal(err)
		}
		jobs = append(jobs, job)
		_ = m.Ack()
	}
	return jobs
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var storedAt = time.Date(2026, 3, 9, 12, 34, 56, 789000000, time.UTC)

// TestRetryStartsANewSeries: a finished delivery goes back to pending, in a
// new series whose first attempt is due at once in the retry lane with the
// event's original bytes and trace headers; its attempts so far are kept.
func TestRetryStartsANewSeries(t *testing.T) {
	for _, state := range []string{deliverylog.StateDead, deliverylog.StateSkipped, deliverylog.StateSucceeded} {
		t.Run(state, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			integration := uuid.NewString()
			ev := f.publish(integration, state, storedAt)

			before := time.Now()
			got, err := f.svc.Retry(context.Background(), ev.rec.ID)
			after := time.Now()
			if err != nil {
				t.Fatalf("Retry: %v", err)
			}
			if got.State != deliverylog.StatePending || got.Series != 2 || got.SeriesAttempts != 0 {
				t.Fatalf("after the retry: state %s, series %d, series attempts %d; want pending, 2, 0", got.State, got.Series, got.SeriesAttempts)
			}
			if got.NextAttemptAt == nil || got.NextAttemptAt.Before(before) || got.NextAttemptAt.After(after) {
				t.Fatalf("next attempt at %v, want now (%s..%s)", got.NextAttemptAt, before, after)
			}
			if got.AttemptCount != ev.rec.AttemptCount || jsonOf(t, got.Attempts) != jsonOf(t, ev.rec.Attempts) {
				t.Fatalf("the retry changed the attempts so far: %d %+v", got.AttemptCount, got.Attempts)
			}
			if stored := f.stored(ev.rec.ID); stored != jsonOf(t, got) {
				t.Fatalf("stored record differs from the answer:\nstored %s\nanswer %s", stored, jsonOf(t, got))
			}

			jobs := append(f.enqueued(1, 5*time.Second), f.enqueued(10, 300*time.Millisecond)...)
			if len(jobs) != 1 {
				t.Fatalf("%d jobs due in the retry lane, want 1", len(jobs))
			}
			job := jobs[0]
			if !job.CreatedAt.Equal(storedAt) {
				t.Fatalf("job created at %s, want the event's %s", job.CreatedAt, storedAt)
			}
			job.CreatedAt = time.Time{}
			want := delivery.Job{
				DeliveryID: ev.rec.ID, EventID: *ev.rec.EventID, IntegrationID: integration, Event: ev.event,
				Attempt: 1, Series: 2, EventSequence: ev.seq, Body: ev.body,
				Trace: nats.Header{"traceparent": {traceparent}, "tracestate": {tracestate}},
			}
			if !reflect.DeepEqual(job, want) {
				t.Fatalf("enqueued job\n got %+v\nwant %+v", job, want)
			}

			// The delivery is pending now: a second retry is refused.
			if _, err := f.svc.Retry(context.Background(), ev.rec.ID); !errors.Is(err, delivery.ErrNotRetryable) {
				t.Fatalf("second Retry: %v, want ErrNotRetryable", err)
			}
		})
	}
}

// TestRetryRefusals: what cannot be retried is refused with the error the
// API maps to its status, and leaves the record and the retry lane alone.
func TestRetryRefusals(t *testing.T) {
	cases := []struct {
		name    string
		state   string
		prepare func(f *fixture, ev event) (deliveryID string)
		want    error
	}{
		{name: "pending", state: deliverylog.StatePending, want: delivery.ErrNotRetryable},
		{name: "rejected", state: deliverylog.StateRejected, want: delivery.ErrNotRetryable},
		{name: "unknown id", state: deliverylog.StateDead, want: deliverylog.ErrNotFound,
			prepare: func(*fixture, event) string { return uuid.NewString() }},
		{name: "not a uuid", state: deliverylog.StateDead, want: deliverylog.ErrNotFound,
			prepare: func(*fixture, event) string { return "../" }},
		{name: "event left the stream", state: deliverylog.StateDead, want: replay.ErrEventExpired,
			prepare: func(f *fixture, ev event) string {
				stream, err := f.js.Stream(context.Background(), natsinfra.EventsStream)
				if err != nil {
					f.t.Fatal(err)
				}
				if err := stream.DeleteMsg(context.Background(), ev.seq); err != nil {
					f.t.Fatal(err)
				}
				return ev.rec.ID
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			ev := f.publish(uuid.NewString(), tc.state, storedAt)
			id := ev.rec.ID
			if tc.prepare != nil {
				id = tc.prepare(f, ev)
			}
			before := f.stored(ev.rec.ID)

			got, err := f.svc.Retry(context.Background(), id)
			if !errors.Is(err, tc.want) || got != nil {
				t.Fatalf("Retry = %+v, %v; want nil, %v", got, err, tc.want)
			}
			if after := f.stored(ev.rec.ID); after != before {
				t.Fatalf("a refused retry changed the record:\nbefore %s\nafter  %s", before, after)
			}
			if jobs := f.enqueued(10, 300*time.Millisecond); len(jobs) != 0 {
				t.Fatalf("a refused retry enqueued %+v", jobs)
			}
		})
	}
}

// TestRetryPutsTheRecordBackWhenTheEnqueueFails: the new series is recorded
// before it is enqueued; if the retry lane refuses it, the previous record
// is restored, so the operator can simply retry again.
func TestRetryPutsTheRecordBackWhenTheEnqueueFails(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ev := f.publish(uuid.NewString(), deliverylog.StateDead, storedAt)
	before := f.stored(ev.rec.ID)
	if err := f.js.DeleteStream(context.Background(), natsinfra.RetriesStream); err != nil {
		t.Fatal(err)
	}

	got, err := f.svc.Retry(context.Background(), ev.rec.ID)
	if err == nil || got != nil {
		t.Fatalf("Retry with no retry lane = %+v, %v; want an error", got, err)
	}
	for _, sentinel := range []error{delivery.ErrNotRetryable, deliverylog.ErrNotFound, replay.ErrEventExpired} {
		if errors.Is(err, sentinel) {
			t.Fatalf("Retry error %v reads as %v, which the API answers as the operator's mistake", err, sentinel)
		}
	}
	if after := f.stored(ev.rec.ID); after != before {
		t.Fatalf("record not restored:\nbefore %s\nafter  %s", before, after)
	}
}

// TestListAndGetReadTheDeliveryLog: the read routes see the bucket as the
// pipeline writes it: an integration's deliveries newest first, filtered by
// state and paged, and one delivery with its attempts.
func TestListAndGetReadTheDeliveryLog(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	integration, other := uuid.NewString(), uuid.NewString()
	states := []string{deliverylog.StateSucceeded, deliverylog.StateDead, deliverylog.StateDead, deliverylog.StateSkipped}
	var ids []string // oldest first
	for i, state := range states {
		ids = append(ids, f.publish(integration, state, storedAt.Add(time.Duration(i)*time.Second)).rec.ID)
	}
	otherID := f.publish(other, deliverylog.StateDead, storedAt).rec.ID

	cases := []struct {
		name        string
		integration string
		opts        deliverylog.ListOptions
		want        []string
		wantCursor  string
	}{
		{name: "all, newest first", integration: integration, want: []string{ids[3], ids[2], ids[1], ids[0]}},
		{name: "by state", integration: integration, opts: deliverylog.ListOptions{State: deliverylog.StateDead}, want: []string{ids[2], ids[1]}},
		{name: "first page", integration: integration, opts: deliverylog.ListOptions{Limit: 2}, want: []string{ids[3], ids[2]}, wantCursor: ids[2]},
		{name: "next page", integration: integration, opts: deliverylog.ListOptions{Limit: 2, Cursor: ids[2]}, want: []string{ids[1], ids[0]}},
		{name: "another integration", integration: other, want: []string{otherID}},
		{name: "no deliveries", integration: uuid.NewString(), want: nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			list, cursor, err := f.svc.List(context.Background(), tc.integration, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range list {
				got = append(got, d.ID)
			}
			if !reflect.DeepEqual(got, tc.want) || cursor != tc.wantCursor {
				t.Fatalf("List = %v, cursor %q; want %v, cursor %q", got, cursor, tc.want, tc.wantCursor)
			}
		})
	}

	d, err := f.svc.Get(context.Background(), ids[1])
	if err != nil {
		t.Fatal(err)
	}
	if d.ID != ids[1] || d.State != deliverylog.StateDead || len(d.Attempts) != 1 || d.Attempts[0].Number != 3 {
		t.Fatalf("Get = %+v, want the dead delivery with its attempt", d)
	}
	if _, err := f.svc.Get(context.Background(), uuid.NewString()); !errors.Is(err, deliverylog.ErrNotFound) {
		t.Fatalf("Get of an unknown id: %v, want ErrNotFound", err)
	}
}
