// Package retrylane keeps attempts 2..N (and API retries) durable in the
// BLAZELOCK_RETRIES stream.
//
// A retry is a NATS message schedule: a message on
// blazelock.retries.schedule.<delivery_id> that the server itself publishes
// onto blazelock.retries.due.<integration_id> at the given time. Waiting
// retries therefore hold no consumer ack slot, so a few dead endpoints can
// never stall the consumer for everyone (the MaxAckPending trap of
// NakWithDelay), and a dispatcher restart loses nothing: the schedule lives
// in the stream. Schedules have one-second resolution; times are rounded up
// so an attempt never starts before its delay has passed.
//
// The lane carries delivery.Job: this package only encodes a job into a
// message (the envelope as body, the rest as headers), publishes it, and
// decodes it back.
package retrylane

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/blazelock/webhooks/dispatcher/delivery"
	"github.com/blazelock/webhooks/internal/natsinfra"
)

// Header names carried by retry messages (the body is the envelope).
const (
	hdrDelivery    = "Blazelock-Delivery-Id"
	hdrEventID     = "Blazelock-Event-Id"
	hdrIntegration = "Blazelock-Integration-Id"
	hdrEvent       = "Blazelock-Event"
	hdrAttempt     = "Blazelock-Attempt"
	hdrSeries      = "Blazelock-Series"
	hdrSequence    = "Blazelock-Event-Sequence"
	hdrCreatedAt   = "Blazelock-Created-At"
	hdrDeferrals   = "Blazelock-Deferrals"
)

// traceHeaders are copied from the original event so every attempt joins
// the publisher's trace.
var traceHeaders = []string{"traceparent", "tracestate"}

// Lane publishes retries.
type Lane struct {
	js jetstream.JetStream
}

// New returns a Lane.
func New(js jetstream.JetStream) *Lane { return &Lane{js: js} }

// Schedule makes the job due at `at`. Publishing the same job twice (same
// delivery, series and attempt) inside the duplicate window is a no-op, so a
// dispatcher that crashes between scheduling and acknowledging cannot
// schedule an attempt twice.
//
// The time is rounded up to a whole second (schedules have one-second
// resolution, and an attempt must never start before its delay has passed),
// and to at least one second from now, so a time that has already passed
// (a schedule made again after a crash) still fires promptly.
func (l *Lane) Schedule(ctx context.Context, job delivery.Job, at time.Time) error {
	if earliest := time.Now().Add(time.Second); at.Before(earliest) {
		at = earliest
	}
	if at.Truncate(time.Second) != at {
		at = at.Truncate(time.Second).Add(time.Second)
	}
	msg := message(job, natsinfra.RetriesSchedulePrefix+job.DeliveryID)
	_, err := l.js.PublishMsg(ctx, msg,
		jetstream.WithMsgID(msgID(job)),
		jetstream.WithScheduleAt(at),
		jetstream.WithScheduleTarget(dueSubject(job.IntegrationID)))
	if err != nil {
		return fmt.Errorf("schedule attempt %d of delivery %s: %w", job.Attempt, job.DeliveryID, err)
	}
	return nil
}

// Enqueue makes the job due now.
func (l *Lane) Enqueue(ctx context.Context, job delivery.Job) error {
	msg := message(job, dueSubject(job.IntegrationID))
	if _, err := l.js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID(job))); err != nil {
		return fmt.Errorf("enqueue attempt %d of delivery %s: %w", job.Attempt, job.DeliveryID, err)
	}
	return nil
}

func dueSubject(integrationID string) string { return natsinfra.RetriesDuePrefix + integrationID }

// msgID is the job's message id, "<delivery id>.<series>.<attempt>.<deferrals>":
// scheduling the same job again inside the duplicate window is a no-op.
func msgID(j delivery.Job) string {
	return j.DeliveryID + "." + strconv.Itoa(j.Series) + "." + strconv.Itoa(j.Attempt) + "." + strconv.Itoa(j.Deferrals)
}

func message(j delivery.Job, subject string) *nats.Msg {
	h := nats.Header{}
	for _, k := range traceHeaders {
		if v := j.Trace[k]; len(v) > 0 {
			h[k] = v
		}
	}
	h[hdrDelivery] = []string{j.DeliveryID}
	h[hdrEventID] = []string{j.EventID}
	h[hdrIntegration] = []string{j.IntegrationID}
	h[hdrEvent] = []string{j.Event}
	h[hdrAttempt] = []string{strconv.Itoa(j.Attempt)}
	h[hdrSeries] = []string{strconv.Itoa(j.Series)}
	h[hdrSequence] = []string{strconv.FormatUint(j.EventSequence, 10)}
	h[hdrDeferrals] = []string{strconv.Itoa(j.Deferrals)}
	h[hdrCreatedAt] = []string{j.CreatedAt.UTC().Format(time.RFC3339Nano)}
	return &nats.Msg{Subject: subject, Header: h, Data: j.Body}
}

// Decode reads a job from a due message.
func Decode(msg jetstream.Msg) (delivery.Job, error) {
	h := msg.Headers()
	j := delivery.Job{
		DeliveryID:    h.Get(hdrDelivery),
		EventID:       h.Get(hdrEventID),
		IntegrationID: h.Get(hdrIntegration),
		Event:         h.Get(hdrEvent),
		Body:          msg.Data(),
		Trace:         nats.Header{},
	}
	for _, k := range traceHeaders {
		if v := h.Values(k); len(v) > 0 {
			j.Trace[k] = v
		}
	}
	var errs []error
	var err error
	if j.Attempt, err = strconv.Atoi(h.Get(hdrAttempt)); err != nil || j.Attempt < 1 {
		errs = append(errs, fmt.Errorf("bad %s header %q", hdrAttempt, h.Get(hdrAttempt)))
	}
	if j.Series, err = strconv.Atoi(h.Get(hdrSeries)); err != nil || j.Series < 1 {
		errs = append(errs, fmt.Errorf("bad %s header %q", hdrSeries, h.Get(hdrSeries)))
	}
	if j.Deferrals, err = strconv.Atoi(h.Get(hdrDeferrals)); err != nil || j.Deferrals < 0 {
		errs = append(errs, fmt.Errorf("bad %s header %q", hdrDeferrals, h.Get(hdrDeferrals)))
	}
	if j.EventSequence, err = strconv.ParseUint(h.Get(hdrSequence), 10, 64); err != nil {
		errs = append(errs, fmt.Errorf("bad %s header %q", hdrSequence, h.Get(hdrSequence)))
	}
	if j.CreatedAt, err = time.Parse(time.RFC3339Nano, h.Get(hdrCreatedAt)); err != nil {
		errs = append(errs, fmt.Errorf("bad %s header %q", hdrCreatedAt, h.Get(hdrCreatedAt)))
	}
	if j.DeliveryID == "" || j.IntegrationID == "" || j.Event == "" {
		errs = append(errs, errors.New("missing delivery, integration or event header"))
	}
	if err := errors.Join(errs...); err != nil {
		return delivery.Job{}, fmt.Errorf("decode retry message: %w", err)
	}
	return j, nil
}
