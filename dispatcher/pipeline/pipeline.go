// Package pipeline runs one delivery attempt from a consumed message:
// validate → look up the webhook config → sign and deliver → record →
// schedule the next attempt, or end the delivery as succeeded, dead,
// skipped or rejected. It returns the typed outcome that package consume
// turns into Ack, Term or Nak.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/blazelock/webhooks/dispatcher/consume"
	"github.com/blazelock/webhooks/dispatcher/deliver"
	"github.com/blazelock/webhooks/dispatcher/delivery"
	"github.com/blazelock/webhooks/dispatcher/deliverylog"
	"github.com/blazelock/webhooks/dispatcher/flow"
	"github.com/blazelock/webhooks/dispatcher/retrylane"
	"github.com/blazelock/webhooks/dispatcher/schedule"
	"github.com/blazelock/webhooks/dispatcher/validate"
	"github.com/blazelock/webhooks/dispatcher/webhooks"
	"github.com/blazelock/webhooks/internal/natsinfra"
)

// WebhookGetter reads an integration's webhook as of now.
type WebhookGetter interface {
	Get(ctx context.Context, integrationID string) (webhooks.Webhook, error)
}

// Sender makes one HTTP attempt.
type Sender interface {
	Send(ctx context.Context, r deliver.Request) deliver.Result
}

// Recorder keeps the delivery log.
type Recorder interface {
	Save(ctx context.Context, d *deliverylog.Delivery) error
	Load(ctx context.Context, integrationID, deliveryID string) (*deliverylog.Delivery, error)
}

// Scheduler makes later attempts durable.
type Scheduler interface {
	Schedule(ctx context.Context, job delivery.Job, at time.Time) error
}

// Deps are what a Pipeline works with.
type Deps struct {
	// Webhooks is read when each attempt starts (webhooks.Store).
	Webhooks WebhookGetter
	// Sender makes the HTTP attempt (deliver.Sender).
	Sender Sender
	// DeliveryLog records every delivery and attempt (deliverylog.Log).
	DeliveryLog Recorder
	// RetryLane makes later attempts durable (retrylane.Lane).
	RetryLane Scheduler
	// RetryPolicy decides when a failed attempt is tried again, and when
	// the delivery is dead.
	RetryPolicy schedule.Schedule
	Metrics     *Metrics
	// Logger receives the per-attempt log lines.
	Logger    *slog.Logger
	Tracer    trace.Tracer
	Extractor propagation.TextMapPropagator
	// MaxEventBytes is the event size limit (docs/contract.md, Publishing events).
	MaxEventBytes int
	// StoreRetryBudget bounds how long the outcome of an attempt is
	// retried into the delivery log and the retry lane before the message
	// is handed back (see persist); zero means defaultStoreRetryBudget.
	StoreRetryBudget time.Duration
	// Jitter returns a value in [-1, 1); nil means schedule.Jitter.
	Jitter func() float64
	// AckWait is the events consumer's: a first delivery held in this
	// process longer than that is checked against the delivery log like a
	// redelivery (see HandleEvent). Zero: never.
	AckWait time.Duration
}

// Pipeline handles messages from both lanes. Safe for concurrent use.
type Pipeline struct {
	Deps
	now func() time.Time
}

// configRetryDelay is how soon a message is tried again when the config
// store (KV) cannot be read: nothing was attempted, so nothing is counted.
const configRetryDelay = 5 * time.Second

// A message parked by flow control (its endpoint hangs or asked for a
// long pause) waits in the retry lane, uncounted, for the delay the
// scheduler asked for or deferral(n) after its n-th parking, whichever is
// longer: deferDelay doubled per parking up to maxDeferDelay, so an
// endpoint that stays down costs fewer and fewer wake-ups. A healthy
// endpoint's overflow is never parked (see package flow).
const (
	deferDelay    = 2 * time.Second
	maxDeferDelay = time.Minute
)

// The delivery log and the retry lane live in NATS. A server restart or a
// stream leader election refuses writes for a few seconds; an attempt's
// outcome is retried into them for up to the StoreRetryBudget, with waits
// from firstStoreWait doubling to maxStoreWait, instead of being dropped
// (a delivered event with no record) or handed back (sent again).
//
// Each write has storeWriteTimeout: a write to a stream whose leader has
// just died gets no answer, and nats.go would wait its default 10 s,
// during which the message is not kept in progress and can outlive its
// AckWait (9 s in the reliability suite): JetStream then hands it to
// another dispatcher, which makes the attempt again (seen in
// TestClusterRetriesLeaderKilled). Bounded, a write and a wait together
// last at most 4 s between two keep-alives, below the smallest AckWait
// (2 × DISPATCHER_ATTEMPT_TIMEOUT + 5 s).
const (
	defaultStoreRetryBudget = 30 * time.Second
	firstStoreWait          = 100 * time.Millisecond
	maxStoreWait            = 2 * time.Second
	storeWriteTimeout       = 2 * time.Second
)

func deferral(deferrals int) time.Duration {
	d := deferDelay << min(deferrals-1, 5)
	return min(d, maxDeferDelay)
}

// New returns a Pipeline.
func New(d Deps) *Pipeline {
	if d.Jitter == nil {
		d.Jitter = schedule.Jitter
	}
	if d.StoreRetryBudget == 0 {
		d.StoreRetryBudget = defaultStoreRetryBudget
	}
	return &Pipeline{Deps: d, now: time.Now}
}

// HandleEvent processes a message of BLAZELOCK_EVENTS: a first attempt.
// slot is the attempt's place in its endpoint's limit.
func (p *Pipeline) HandleEvent(ctx context.Context, msg jetstream.Msg, slot consume.Slot) error {
	meta, err := msg.Metadata()
	if err != nil {
		return &consume.Retry{Err: fmt.Errorf("read message metadata: %w", err), Delay: time.Second}
	}
	deliveryID := deliverylog.DeliveryID(natsinfra.EventsStream, meta.Sequence.Stream, meta.Timestamp)
	ctx, span := p.startSpan(ctx, msg.Headers(), msg.Subject(), natsinfra.EventsConsumer)
	defer span.End()

	ev, rejection := validate.Message(msg.Subject(), msg.Headers(), msg.Data(), p.MaxEventBytes)
	if rejection != nil {
		return p.reject(ctx, span, deliveryID, meta, rejection)
	}
	job := firstAttempt(deliveryID, meta, ev, msg.Headers())
	if meta.NumDelivered > 1 || (p.AckWait > 0 && slot.Held() > p.AckWait) {
		// A redelivery: a dispatcher may have made this attempt and died
		// before acknowledging. If the log shows it, do not send it again.
		// A message held here past AckWait may have been redelivered to
		// another dispatcher meanwhile, if our keep-alives did not reach
		// the server (our NATS node was cut off): the same check. (Other
		// first deliveries skip this read: it would cost every event a
		// round trip to find nothing.)
		rec, err := p.DeliveryLog.Load(ctx, job.IntegrationID, job.DeliveryID)
		switch {
		case err == nil && delivery.AlreadyDone(rec, job):
			return p.resume(ctx, rec, job)
		case err != nil && !errors.Is(err, deliverylog.ErrNotFound):
			return &consume.Retry{Err: err, Delay: configRetryDelay}
		}
	}
	return p.attempt(ctx, span, job, nil, msg.InProgress, slot)
}

// HandleRetry processes a due message of BLAZELOCK_RETRIES.
func (p *Pipeline) HandleRetry(ctx context.Context, msg jetstream.Msg, slot consume.Slot) error {
	ctx, span := p.startSpan(ctx, msg.Headers(), msg.Subject(), natsinfra.RetriesConsumer)
	defer span.End()
	job, err := retrylane.Decode(msg)
	if err != nil {
		// Only this program writes the lane: a bad message is a bug, and
		// redelivering it would loop forever.
		p.Logger.ErrorContext(ctx, "undecodable retry message dropped", "subject", msg.Subject(), "err", err)
		return &consume.Terminate{Reason: err.Error()}
	}
	rec, err := p.DeliveryLog.Load(ctx, job.IntegrationID, job.DeliveryID)
	switch {
	case errors.Is(err, deliverylog.ErrNotFound):
		rec = nil // expired or never saved: start a fresh record
	case err != nil:
		return &consume.Retry{Err: err, Delay: configRetryDelay}
	case delivery.AlreadyDone(rec, job):
		// A redelivery of an attempt this delivery already moved past
		// (for example after a crash between recording and acknowledging).
		return p.resume(ctx, rec, job)
	}
	return p.attempt(ctx, span, job, rec, msg.InProgress, slot)
}

// ParkEvent moves a message of BLAZELOCK_EVENTS that flow control cannot
// hold into the retry lane, as its first attempt, due after delay (see
// deferDelay). An invalid event is not parked: it is rejected when its
// turn comes.
func (p *Pipeline) ParkEvent(ctx context.Context, msg jetstream.Msg, delay time.Duration) error {
	meta, err := msg.Metadata()
	if err != nil {
		return fmt.Errorf("read message metadata: %w", err)
	}
	ev, rejection := validate.Message(msg.Subject(), msg.Headers(), msg.Data(), p.MaxEventBytes)
	if rejection != nil {
		return fmt.Errorf("not parked: %s", rejection.Reason)
	}
	deliveryID := deliverylog.DeliveryID(natsinfra.EventsStream, meta.Sequence.Stream, meta.Timestamp)
	return p.park(ctx, firstAttempt(deliveryID, meta, ev, msg.Headers()), delay)
}

// firstAttempt is the job of a message of BLAZELOCK_EVENTS: attempt 1 of
// series 1.
func firstAttempt(deliveryID string, meta *jetstream.MsgMetadata, ev validate.Event, trace nats.Header) delivery.Job {
	return delivery.Job{
		DeliveryID: deliveryID, EventID: ev.ID, IntegrationID: ev.IntegrationID, Event: ev.Name,
		Attempt: 1, Series: 1, EventSequence: meta.Sequence.Stream, CreatedAt: meta.Timestamp,
		Body: ev.Body, Trace: trace,
	}
}

// ParkRetry moves a due message of BLAZELOCK_RETRIES that flow control
// cannot hold back into the lane, due after delay (see deferDelay).
func (p *Pipeline) ParkRetry(ctx context.Context, msg jetstream.Msg, delay time.Duration) error {
	job, err := retrylane.Decode(msg)
	if err != nil {
		return err
	}
	return p.park(ctx, job, delay)
}

func (p *Pipeline) park(ctx context.Context, job delivery.Job, delay time.Duration) error {
	job = job.Parked()
	delay = max(delay, deferral(job.Deferrals))
	if err := p.RetryLane.Schedule(ctx, job, p.now().Add(delay)); err != nil {
		return err
	}
	p.Logger.LogAttrs(ctx, slog.LevelDebug, "delivery.parked",
		slog.String("delivery_id", job.DeliveryID), slog.String("integration_id", job.IntegrationID),
		slog.Int("attempt", job.Attempt), slog.Int("deferrals", job.Deferrals), slog.Duration("delay", delay))
	return nil
}

// resume settles a redelivered message whose attempt the log already
// shows. If that attempt left the delivery pending, the process that made
// it may have stopped between recording it and scheduling the next one
// (attempt records first): schedule the next one now (delivery.Resume).
// When it exists this is a no-op by its message id; a second schedule
// after the duplicate window ends is skipped by delivery.AlreadyDone when
// it comes due.
func (p *Pipeline) resume(ctx context.Context, rec *deliverylog.Delivery, job delivery.Job) error {
	next, at, ok := delivery.Resume(rec, job)
	if !ok {
		return nil
	}
	if err := p.RetryLane.Schedule(ctx, next, at); err != nil {
		return &consume.Retry{Err: err, Delay: time.Second}
	}
	return nil
}

// attempt makes one attempt of job. keepAlive tells JetStream that the
// message is still being worked on (see persist).
//
// rec is the delivery's record, or nil to start a new one. The callers
// have settled a job the record is already past (resume), so the record's
// transitions cannot refuse this one; if they did, the record would not
// change and the message is terminated rather than looping.
func (p *Pipeline) attempt(ctx context.Context, span trace.Span, job delivery.Job, rec *deliverylog.Delivery, keepAlive func() error, slot consume.Slot) error {
	span.SetAttributes(
		attribute.String("messaging.message.id", job.EventID),
		attribute.String("blazelock.integration.id", job.IntegrationID),
		attribute.String("blazelock.delivery.id", job.DeliveryID),
		attribute.String("blazelock.event", job.Event),
		attribute.Int("blazelock.webhook.attempt", job.Attempt),
	)
	if rec == nil {
		rec = delivery.Start(job)
	}
	cfg, res, skipReason, err := p.request(ctx, job, slot)
	switch {
	case err != nil:
		span.SetStatus(codes.Error, "config lookup failed")
		return &consume.Retry{Err: err, Delay: configRetryDelay}
	case skipReason != "":
		return p.skip(ctx, span, job, rec, skipReason)
	}

	delay, more := p.RetryPolicy.NextDelay(job.Attempt, res.RetryAfter, p.Jitter)
	if err := delivery.Attempted(rec, job, res, delivery.Decision{More: more, Delay: delay}); err != nil {
		return p.stale(ctx, span, err)
	}
	// The record is written before the next attempt is scheduled, so that
	// attempt always finds this one in the log; a stop in between leaves a
	// pending record, and the redelivered message only schedules (resume).
	saveErr := p.persist(ctx, keepAlive, p.saveUnlessSuperseded(rec, job))
	if errors.Is(saveErr, errSuperseded) {
		// The other dispatcher made this attempt again and scheduled what
		// follows: record and schedule nothing.
		p.observe(ctx, span, job, rec, res, cfg.URL, saveErr)
		return nil
	}
	if saveErr != nil && rec.State == deliverylog.StateDead {
		// The last attempt failed but the log does not say dead: acking now
		// would lose the delivery for good (never listed as dead, never
		// replayable). Hand the message back, as skip and reject do; the
		// last attempt is made again and recorded.
		span.SetStatus(codes.Error, "record failed")
		return &consume.Retry{Err: fmt.Errorf("record dead delivery %s: %w", job.DeliveryID, saveErr), Delay: configRetryDelay}
	}
	if rec.State == deliverylog.StatePending {
		err := p.persist(ctx, keepAlive, func(ctx context.Context) error {
			return p.RetryLane.Schedule(ctx, job.Next(), *rec.NextAttemptAt)
		})
		if err != nil {
			// The next attempt is not durable: hand the message back. Its
			// redelivery finds this attempt in the log and only schedules
			// (resume); if the record was not written either, this attempt
			// is made again.
			span.SetStatus(codes.Error, "schedule failed")
			return &consume.Retry{Err: err, Delay: time.Second}
		}
	}
	p.observe(ctx, span, job, rec, res, cfg.URL, saveErr)
	return nil
}

// errSuperseded: another dispatcher recorded this attempt, or a later
// one, while this one could not write the log (see saveUnlessSuperseded).
var errSuperseded = errors.New("another dispatcher recorded this delivery meanwhile")

// saveUnlessSuperseded returns the write of rec, job's record, for
// persist. The first try just saves. A write that failed is made again
// only after reading the log: while this process cannot write it, its
// keep-alives may not reach the server either (its NATS node is cut off),
// and once the message outlives AckWait JetStream hands it to another
// dispatcher, which finds no record, makes the attempt again and records
// it. This process's late write would replace that record with its own
// outcome: a succeeded delivery turned back into pending, whose next
// attempt, scheduled by this process, sends the event once more
// (TestClusterNodePartitioned). So a record already past job is left
// alone (errSuperseded, not retried), unless it is this process's own
// write, applied although its answer was lost.
func (p *Pipeline) saveUnlessSuperseded(rec *deliverylog.Delivery, job delivery.Job) func(context.Context) error {
	tries := 0
	return func(ctx context.Context) error {
		if tries++; tries > 1 {
			cur, err := p.DeliveryLog.Load(ctx, job.IntegrationID, job.DeliveryID)
			switch {
			case errors.Is(err, deliverylog.ErrNotFound):
			case err != nil:
				return err
			case cur.UpdatedAt.Equal(rec.UpdatedAt) && cur.AttemptCount == rec.AttemptCount:
				return nil // this process's write
			case delivery.AlreadyDone(cur, job):
				return errSuperseded
			}
		}
		return p.DeliveryLog.Save(ctx, rec)
	}
}

// request reads the webhook config and, unless the attempt is to be
// skipped (skipReason), makes the HTTP request. It holds the endpoint's
// slot for just that: recording the outcome is not the endpoint's time,
// and a slow or restarting NATS must not make every endpoint look slow to
// the limiter.
func (p *Pipeline) request(ctx context.Context, job delivery.Job, slot consume.Slot) (cfg webhooks.Webhook, res deliver.Result, skipReason string, err error) {
	outcome := flow.Outcome{}
	defer func() { slot.Done(outcome) }()

	// The config is read after the slot is granted, right before the
	// request: the "immediately" of docs/contract.md, Configuration at
	// attempt time, means no attempt that starts after
	// the API answered a change may use the old setting, and waiting for a
	// slot between the read and the request would open such a window.
	cfg, err = p.Webhooks.Get(ctx, job.IntegrationID)
	switch {
	case errors.Is(err, webhooks.ErrNotFound):
		return cfg, res, "no webhook configured for the integration", nil
	case err != nil:
		return cfg, res, "", fmt.Errorf("look up webhook config: %w", err)
	case !cfg.Enabled:
		return cfg, res, "webhook disabled", nil
	case !cfg.Selects(job.Event):
		return cfg, res, "event " + job.Event + " not selected", nil
	}
	slot.Sending()
	res = p.Sender.Send(ctx, deliver.Request{
		URL: cfg.URL, Secret: cfg.Secret, EventID: job.EventID, Attempt: job.Attempt, Body: job.Body,
	})
	outcome = endpointOutcome(res)
	return cfg, res, "", nil
}

// endpointOutcome says what an attempt's result tells about the endpoint's
// capacity. Failures before the endpoint was reached (the SSRF guard, DNS,
// TLS) say nothing about it.
func endpointOutcome(res deliver.Result) flow.Outcome {
	switch res.Class {
	case deliver.ClassSuccess, deliver.ClassRedirect, deliver.ClassClientError:
		return flow.Outcome{Signal: flow.Answered, Latency: res.Duration}
	case deliver.ClassTimeout:
		return flow.Outcome{Signal: flow.TimedOut}
	case deliver.ClassRateLimited, deliver.ClassServerError,
		deliver.ClassRefused, deliver.ClassReset, deliver.ClassNetwork:
		return flow.Outcome{Signal: flow.Overloaded, RetryAfter: res.RetryAfter}
	default:
		return flow.Outcome{}
	}
}

// persist runs write until it succeeds, reports errSuperseded or
// StoreRetryBudget has passed, and returns its last error. Between tries it calls keepAlive, so that
// JetStream does not hand the message to another process meanwhile
// (while the server is unreachable that fails too, and a redelivery after
// AckWait makes the attempt again: at-least-once).
func (p *Pipeline) persist(ctx context.Context, keepAlive func() error, write func(context.Context) error) error {
	deadline := p.now().Add(p.StoreRetryBudget)
	wait := firstStoreWait
	for {
		writeCtx, cancel := context.WithTimeout(ctx, storeWriteTimeout)
		err := write(writeCtx)
		cancel()
		if err == nil || errors.Is(err, errSuperseded) || p.now().Add(wait).After(deadline) {
			return err
		}
		_ = keepAlive()
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, maxStoreWait)
	}
}

// stale ends a message whose job the record's transitions refused (see
// attempt).
func (p *Pipeline) stale(ctx context.Context, span trace.Span, err error) error {
	p.Logger.ErrorContext(ctx, "attempt refused by its delivery record", "err", err)
	span.SetStatus(codes.Error, "stale attempt")
	return &consume.Terminate{Reason: err.Error()}
}

func (p *Pipeline) skip(ctx context.Context, span trace.Span, job delivery.Job, rec *deliverylog.Delivery, reason string) error {
	if err := delivery.Skip(rec, job, reason, p.now()); err != nil {
		return p.stale(ctx, span, err)
	}
	if err := p.DeliveryLog.Save(ctx, rec); err != nil {
		return &consume.Retry{Err: err, Delay: configRetryDelay}
	}
	p.Metrics.final(ctx, deliverylog.StateSkipped)
	p.Logger.LogAttrs(ctx, slog.LevelInfo, "delivery.skipped",
		slog.String("delivery_id", job.DeliveryID), slog.String("event_id", job.EventID),
		slog.String("integration_id", job.IntegrationID), slog.String("event", job.Event),
		slog.Int("attempt", job.Attempt), slog.String("reason", reason))
	span.SetAttributes(attribute.String("blazelock.delivery.state", deliverylog.StateSkipped))
	return nil
}

func (p *Pipeline) reject(ctx context.Context, span trace.Span, deliveryID string, meta *jetstream.MsgMetadata, r *validate.Rejection) error {
	rec := delivery.Reject(delivery.Job{
		DeliveryID: deliveryID, EventID: r.Partial.ID, IntegrationID: r.Partial.IntegrationID,
		Event: r.Partial.Name, Series: 1, EventSequence: meta.Sequence.Stream, CreatedAt: meta.Timestamp,
	}, r.Reason)
	if err := p.DeliveryLog.Save(ctx, rec); err != nil {
		return &consume.Retry{Err: err, Delay: configRetryDelay}
	}
	p.Metrics.final(ctx, deliverylog.StateRejected)
	p.Logger.LogAttrs(ctx, slog.LevelWarn, "event.rejected",
		slog.String("delivery_id", deliveryID), slog.Uint64("stream_sequence", meta.Sequence.Stream),
		slog.String("integration_id", r.Partial.IntegrationID), slog.String("reason", r.Reason))
	span.SetStatus(codes.Error, "event rejected")
	// Term, not Ack: the stream keeps the message (limits retention) for
	// inspection, and the server never offers it again.
	return &consume.Terminate{Reason: r.Reason}
}

// observe writes the one wide log line of the attempt, its metrics and
// span attributes. An attempt superseded by another dispatcher's record
// (errSuperseded) is counted and logged at warn, but its rec is not the
// delivery's state: that is the other dispatcher's to report.
func (p *Pipeline) observe(ctx context.Context, span trace.Span, job delivery.Job, rec *deliverylog.Delivery, res deliver.Result, target string, saveErr error) {
	recorded := !errors.Is(saveErr, errSuperseded)
	p.Metrics.attempt(ctx, job.Event, res)
	if recorded && rec.State != deliverylog.StatePending {
		p.Metrics.final(ctx, rec.State)
	}
	if recorded && rec.State == deliverylog.StateSucceeded {
		p.Metrics.latency(ctx, job.Event, res.StartedAt.Add(res.Duration).Sub(job.CreatedAt))
	}
	if recorded {
		span.SetAttributes(attribute.String("blazelock.delivery.state", rec.State))
	}
	span.SetAttributes(attribute.String("blazelock.attempt.outcome", res.Class))
	if !res.OK() {
		span.SetStatus(codes.Error, res.Class)
	}
	level := slog.LevelInfo
	switch {
	case !recorded:
		level = slog.LevelWarn
	case saveErr != nil:
		level = slog.LevelError
	}
	// Building the line costs a URL parse and a dozen attributes per
	// attempt; skip it when the level is off (production often runs warn).
	if !p.Logger.Enabled(ctx, level) {
		return
	}
	host := ""
	if u, err := url.Parse(target); err == nil {
		host = u.Host
	}
	attrs := []slog.Attr{
		slog.String("delivery_id", job.DeliveryID), slog.String("event_id", job.EventID),
		slog.String("integration_id", job.IntegrationID), slog.String("event", job.Event),
		slog.Int("attempt", job.Attempt), slog.Int("max_attempts", p.RetryPolicy.MaxAttempts()),
		slog.Int("series", job.Series), slog.String("host", host),
		slog.String("outcome", res.Class), slog.Int("status", res.StatusCode),
		slog.Int64("duration_ms", res.Duration.Milliseconds()),
	}
	if recorded {
		attrs = append(attrs, slog.String("state", rec.State))
	}
	if recorded && rec.NextAttemptAt != nil {
		attrs = append(attrs, slog.Time("next_attempt_at", *rec.NextAttemptAt))
	}
	if res.Err != nil {
		attrs = append(attrs, slog.String("err", res.Err.Error()))
	}
	if saveErr != nil {
		attrs = append(attrs, slog.String("record_err", saveErr.Error()))
	}
	p.Logger.LogAttrs(ctx, level, "delivery.attempted", attrs...)
}

func (p *Pipeline) startSpan(ctx context.Context, h nats.Header, subject, consumer string) (context.Context, trace.Span) {
	ctx = p.Extractor.Extract(ctx, natsinfra.HeaderCarrier(h))
	return p.Tracer.Start(ctx, "process "+consumer,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", subject),
			attribute.String("messaging.consumer.group.name", consumer),
		))
}
