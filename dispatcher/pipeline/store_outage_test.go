package pipeline_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/blazelock/webhooks/dispatcher/consume"
	"github.com/blazelock/webhooks/dispatcher/delivery"
	"github.com/blazelock/webhooks/dispatcher/deliverylog"
	"github.com/blazelock/webhooks/dispatcher/pipeline"
	"github.com/blazelock/webhooks/internal/natsinfra"
	"github.com/blazelock/webhooks/subscriber/receiver"
)

var errRefused = errors.New("store refuses writes")

// refusals counts down writes to refuse; a negative count refuses all.
type refusals struct {
	mu   sync.Mutex
	left int
}

func (r *refusals) refuse() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.left == 0 {
		return false
	}
	if r.left > 0 {
		r.left--
	}
	return true
}

func (r *refusals) set(n int) {
	r.mu.Lock()
	r.left = n
	r.mu.Unlock()
}

// refusingLog is the delivery log of a NATS server that refuses writes for
// a while (a restart, a leader election).
type refusingLog struct {
	pipeline.Recorder
	refusals
}

func (l *refusingLog) Save(ctx context.Context, d *deliverylog.Delivery) error {
	if l.refuse() {
		return errRefused
	}
	return l.Recorder.Save(ctx, d)
}

// refusingLane is the retry lane of such a server.
type refusingLane struct {
	pipeline.Scheduler
	refusals
}

func (l *refusingLane) Schedule(ctx context.Context, job delivery.Job, at time.Time) error {
	if l.refuse() {
		return errRefused
	}
	return l.Scheduler.Schedule(ctx, job, at)
}

type outageFixture struct {
	*fixture
	log  *refusingLog
	lane *refusingLane
}

func newOutageFixture(t *testing.T, budget time.Duration) *outageFixture {
	o := &outageFixture{}
	o.fixture = newFixture(t, func(d *pipeline.Deps) {
		o.log = &refusingLog{Recorder: d.DeliveryLog}
		o.lane = &refusingLane{Scheduler: d.RetryLane}
		d.DeliveryLog, d.RetryLane, d.StoreRetryBudget = o.log, o.lane, budget
	})
	return o
}

// next fetches the next message of the events consumer.
func (o *outageFixture) next(t *testing.T) jetstream.Msg {
	t.Helper()
	batch, err := o.consumer.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		return m
	}
	t.Fatalf("no message: %v", batch.Error())
	return nil
}

func (o *outageFixture) record(t *testing.T, msg jetstream.Msg) *deliverylog.Delivery {
	t.Helper()
	meta, err := msg.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	id := deliverylog.DeliveryID(natsinfra.EventsStream, meta.Sequence.Stream, meta.Timestamp)
	kv, err := o.js.KeyValue(context.Background(), natsinfra.DeliveriesBucket)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := deliverylog.New(kv).Load(context.Background(), o.integration, id)
	if err != nil {
		t.Fatalf("delivery %s: %v", id, err)
	}
	return rec
}

// scheduledAttempt is the attempt number of the delivery's schedule in
// the retry lane (0 when there is none).
func (o *outageFixture) scheduledAttempt(t *testing.T, deliveryID string) string {
	t.Helper()
	ctx := context.Background()
	stream, err := o.js.Stream(ctx, natsinfra.RetriesStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetLastMsgForSubject(ctx, natsinfra.RetriesSchedulePrefix+deliveryID)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return "0"
	}
	if err != nil {
		t.Fatal(err)
	}
	return m.Header.Get("Blazelock-Attempt")
}

// TestAttemptOutcomeOutlastsStoreRefusals: while NATS refuses a few writes
// (a restart), the outcome of an attempt is retried into the log and the
// retry lane instead of being dropped or handed back to be sent again.
func TestAttemptOutcomeOutlastsStoreRefusals(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		status                  int
		logRefuses, laneRefuses int
		state                   string
		scheduled               string
	}{
		{"delivered, the log refuses 3 writes", 0, 3, 0, deliverylog.StateSucceeded, "0"},
		{"failed, the log refuses 3 writes", 500, 3, 0, deliverylog.StatePending, "2"},
		{"failed, the lane refuses 3 writes", 500, 0, 3, deliverylog.StatePending, "2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOutageFixture(t, 10*time.Second)
			if err := o.receiver.SetFaults(receiver.Faults{Status: tc.status}); err != nil {
				t.Fatal(err)
			}
			o.log.set(tc.logRefuses)
			o.lane.set(tc.laneRefuses)
			o.publish(t, 1)
			msg := o.next(t)
			if err := o.pipe.HandleEvent(context.Background(), msg, noSlot{}); err != nil {
				t.Fatalf("HandleEvent = %v, want nil (acknowledge)", err)
			}
			rec := o.record(t, msg)
			if rec.State != tc.state || rec.AttemptCount != 1 {
				t.Fatalf("record %s after %d attempts, want %s after 1", rec.State, rec.AttemptCount, tc.state)
			}
			if got := o.scheduledAttempt(t, rec.ID); got != tc.scheduled {
				t.Fatalf("scheduled attempt %s, want %s", got, tc.scheduled)
			}
			if got := o.receiver.Stats().Received; got != 1 {
				t.Fatalf("the endpoint received %d requests, want 1", got)
			}
		})
	}
}

// TestRedeliveryOfARecordedAttemptOnlySchedules: the lane refuses writes
// for longer than the budget, so the message is handed back with its
// attempt recorded as pending. Its redelivery must schedule the next
// attempt without sending this one again.
func TestRedeliveryOfARecordedAttemptOnlySchedules(t *testing.T) {
	o := newOutageFixture(t, 300*time.Millisecond)
	if err := o.receiver.SetFaults(receiver.Faults{Status: 503}); err != nil {
		t.Fatal(err)
	}
	o.lane.set(-1)
	o.publish(t, 1)
	ctx := context.Background()
	msg := o.next(t)
	var retry *consume.Retry
	if err := o.pipe.HandleEvent(ctx, msg, noSlot{}); !errors.As(err, &retry) {
		t.Fatalf("HandleEvent = %v, want a hand-back (*consume.Retry)", err)
	}
	rec := o.record(t, msg)
	if rec.State != deliverylog.StatePending || rec.SeriesAttempts != 1 || o.scheduledAttempt(t, rec.ID) != "0" {
		t.Fatalf("before the redelivery: %s after %d attempts, schedule %s; want pending after 1, none",
			rec.State, rec.SeriesAttempts, o.scheduledAttempt(t, rec.ID))
	}
	if err := msg.Nak(); err != nil {
		t.Fatal(err)
	}

	o.lane.set(0)
	again := o.next(t)
	if meta, _ := again.Metadata(); meta.NumDelivered != 2 {
		t.Fatalf("NumDelivered = %d, want the redelivery", meta.NumDelivered)
	}
	if err := o.pipe.HandleEvent(ctx, again, noSlot{}); err != nil {
		t.Fatalf("HandleEvent of the redelivery = %v, want nil", err)
	}
	if got := o.scheduledAttempt(t, rec.ID); got != "2" {
		t.Fatalf("scheduled attempt %s, want 2", got)
	}
	if got := o.receiver.Stats().Received; got != 1 {
		t.Fatalf("the endpoint received %d requests, want 1 (the recorded attempt is not repeated)", got)
	}
	if rec := o.record(t, again); rec.SeriesAttempts != 1 {
		t.Fatalf("record shows %d attempts, want 1", rec.SeriesAttempts)
	}
}

// hangingLog gets no answer to its first write (a stream whose leader has
// just died): the write waits for its context.
type hangingLog struct {
	pipeline.Recorder
	once sync.Once
}

func (l *hangingLog) Save(ctx context.Context, d *deliverylog.Delivery) error {
	hang := false
	l.once.Do(func() { hang = true })
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return l.Recorder.Save(ctx, d)
}

// TestUnansweredStoreWriteIsCutShort: a write that gets no answer is given
// up after a bounded time and made again (keeping the message in
// progress), rather than holding the attempt's outcome past the message's
// AckWait, after which another dispatcher would make the attempt again.
func TestUnansweredStoreWriteIsCutShort(t *testing.T) {
	var log *hangingLog
	f := newFixture(t, func(d *pipeline.Deps) {
		log = &hangingLog{Recorder: d.DeliveryLog}
		d.DeliveryLog = log
	})
	f.publish(t, 1)
	batch, err := f.consumer.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	msg := <-batch.Messages()
	if msg == nil {
		t.Fatalf("no message: %v", batch.Error())
	}
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- f.pipe.HandleEvent(context.Background(), msg, noSlot{}) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("HandleEvent = %v, want nil (recorded on the second write)", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("HandleEvent still waits for the unanswered write after 20 s")
	}
	if took := time.Since(start); took > 8*time.Second {
		t.Errorf("the outcome took %s to record; each write should be bounded to a few seconds", took)
	}
	if got := f.receiver.Stats().Received; got != 1 {
		t.Fatalf("the endpoint received %d requests, want 1", got)
	}
}

// heldSlot stands for the slot of a message that has waited in this
// process for held.
type heldSlot struct {
	noSlot
	held time.Duration
}

func (s heldSlot) Held() time.Duration { return s.held }

// A first delivery held in this process past AckWait may have been handed
// to another dispatcher meanwhile, if the keep-alives did not reach the
// server (this process's NATS node was cut off), and delivered there. It
// is checked against the delivery log like a redelivery, and not sent
// again. A first delivery held briefly is not checked (that read would
// cost every event a round trip): handled twice, it is sent twice.
func TestAMessageHeldPastAckWaitIsCheckedAgainstTheLog(t *testing.T) {
	const ackWait = 10 * time.Second
	for _, tc := range []struct {
		name     string
		held     time.Duration
		requests int64
	}{
		{"held briefly", time.Second, 2},
		{"held past AckWait", ackWait + time.Second, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &outageFixture{}
			o.fixture = newFixture(t, func(d *pipeline.Deps) { d.AckWait = ackWait })
			o.publish(t, 1)
			msg := o.next(t)
			ctx := context.Background()
			// The other dispatcher's copy of the message, delivered and
			// recorded in the shared log.
			if err := o.pipe.HandleEvent(ctx, msg, noSlot{}); err != nil {
				t.Fatalf("first HandleEvent = %v", err)
			}
			if rec := o.record(t, msg); rec.State != deliverylog.StateSucceeded {
				t.Fatalf("after the first delivery: %s, want succeeded", rec.State)
			}
			// This process's copy: the same first delivery, held for tc.held.
			if err := o.pipe.HandleEvent(ctx, msg, heldSlot{held: tc.held}); err != nil {
				t.Fatalf("second HandleEvent = %v", err)
			}
			if got := o.receiver.Stats().Received; got != tc.requests {
				t.Fatalf("the endpoint received %d requests, want %d", got, tc.requests)
			}
		})
	}
}

// takenOverLog is the delivery log as seen by a dispatcher whose NATS node
// is cut off: its writes fail, and during the first failure another
// dispatcher (meanwhile) takes over the message and records its own
// outcome in the shared log. lostAnswer instead applies the first write
// and fails it anyway (its answer was lost).
type takenOverLog struct {
	pipeline.Recorder
	once       sync.Once
	takeOver   func()
	lostAnswer bool
}

func (l *takenOverLog) Save(ctx context.Context, d *deliverylog.Delivery) error {
	first := false
	l.once.Do(func() { first = true })
	switch {
	case first && l.lostAnswer:
		if err := l.Recorder.Save(ctx, d); err != nil {
			return err
		}
		return context.DeadlineExceeded
	case first:
		l.takeOver()
		return errRefused
	}
	return l.Recorder.Save(ctx, d)
}

// TestALateRecordDoesNotReplaceAnotherDispatchers: an attempt whose record
// could not be written at once (its dispatcher cut off from NATS) may have
// been made again meanwhile by another dispatcher, to which JetStream handed
// the message after AckWait, and recorded there. Its late write must not
// replace that record: here the first attempt failed (500), the other
// dispatcher's succeeded, and a late "pending" record would have this
// dispatcher schedule attempt 2, sending the event twice. A write applied
// although its answer was lost is this dispatcher's own, and the next
// attempt is still scheduled.
func TestALateRecordDoesNotReplaceAnotherDispatchers(t *testing.T) {
	for _, tc := range []struct {
		name       string
		lostAnswer bool
		requests   int64
		state      string
		attempts   int
		scheduled  string
	}{
		{"taken over by another dispatcher", false, 2, deliverylog.StateSucceeded, 1, "0"},
		{"own write applied, its answer lost", true, 1, deliverylog.StatePending, 1, "2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &outageFixture{}
			var log *takenOverLog
			var other *pipeline.Pipeline
			var msg jetstream.Msg
			o.fixture = newFixture(t, func(d *pipeline.Deps) {
				other = pipeline.New(*d) // the other dispatcher writes the log freely
				log = &takenOverLog{Recorder: d.DeliveryLog, lostAnswer: tc.lostAnswer}
				d.DeliveryLog, d.StoreRetryBudget = log, 10*time.Second
			})
			log.takeOver = func() {
				if err := other.HandleEvent(context.Background(), msg, noSlot{}); err != nil {
					t.Errorf("the other dispatcher's HandleEvent = %v", err)
				}
			}
			// The endpoint fails the event's first request only.
			if err := o.receiver.SetFaults(receiver.Faults{FailFirst: 1}); err != nil {
				t.Fatal(err)
			}
			o.publish(t, 1)
			msg = o.next(t)
			if err := o.pipe.HandleEvent(context.Background(), msg, noSlot{}); err != nil {
				t.Fatalf("HandleEvent = %v, want nil (acknowledge)", err)
			}
			rec := o.record(t, msg)
			if rec.State != tc.state || rec.AttemptCount != tc.attempts {
				t.Fatalf("record %s after %d attempts, want %s after %d", rec.State, rec.AttemptCount, tc.state, tc.attempts)
			}
			if got := o.scheduledAttempt(t, rec.ID); got != tc.scheduled {
				t.Fatalf("scheduled attempt %s, want %s", got, tc.scheduled)
			}
			if got := o.receiver.Stats().Received; got != tc.requests {
				t.Fatalf("the endpoint received %d requests, want %d", got, tc.requests)
			}
		})
	}
}
