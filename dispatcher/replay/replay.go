// Package replay starts a new attempt series for a finished delivery
// (POST /v1/deliveries/{id}/retry) and gives the API read access to the
// delivery log. Which deliveries can be replayed, and what a replay does to
// the record, is package delivery's rule (delivery.Replay); this package
// fetches the event and makes the first attempt of the series due.
package replay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/blazelock/webhooks/dispatcher/delivery"
	"github.com/blazelock/webhooks/dispatcher/deliverylog"
	"github.com/blazelock/webhooks/dispatcher/retrylane"
	"github.com/blazelock/webhooks/internal/natsinfra"
)

// ErrEventExpired means the event has left the events stream (retention).
var ErrEventExpired = errors.New("the event is no longer stored; it cannot be replayed")

// Service answers the API's delivery routes.
type Service struct {
	log  *deliverylog.Log
	lane *retrylane.Lane
	js   jetstream.JetStream
	now  func() time.Time
}

// New returns a Service.
func New(log *deliverylog.Log, lane *retrylane.Lane, js jetstream.JetStream) *Service {
	return &Service{log: log, lane: lane, js: js, now: time.Now}
}

// List lists an integration's deliveries, newest first.
func (s *Service) List(ctx context.Context, integrationID string, o deliverylog.ListOptions) ([]*deliverylog.Delivery, string, error) {
	return s.log.List(ctx, integrationID, o)
}

// Get returns one delivery with its attempts.
func (s *Service) Get(ctx context.Context, deliveryID string) (*deliverylog.Delivery, error) {
	return s.log.Get(ctx, deliveryID)
}

// Retry starts a new series of attempts for a dead, skipped or succeeded
// delivery: attempt 1 of series n+1 is due at once, with the event's
// original bytes from the events stream. The configuration is read when the
// attempt starts, as for every attempt. A pending or rejected delivery gives
// delivery.ErrNotRetryable, an event no longer stored ErrEventExpired.
func (s *Service) Retry(ctx context.Context, deliveryID string) (*deliverylog.Delivery, error) {
	d, err := s.log.Get(ctx, deliveryID)
	if err != nil {
		return nil, err
	}
	// The new series, in memory until the event is found (previous is put
	// back if the enqueue fails, below).
	previous := *d
	job, err := delivery.Replay(d, s.now())
	if err != nil {
		return nil, err
	}
	stream, err := s.js.Stream(ctx, natsinfra.EventsStream)
	if err != nil {
		return nil, fmt.Errorf("open events stream: %w", err)
	}
	raw, err := stream.GetMsg(ctx, d.EventSequence)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, ErrEventExpired
	}
	if err != nil {
		return nil, fmt.Errorf("read event %d: %w", d.EventSequence, err)
	}
	job.Body, job.Trace = raw.Data, nats.Header{}
	for _, k := range []string{"traceparent", "tracestate"} {
		if v := raw.Header.Values(k); len(v) > 0 {
			job.Trace[k] = v
		}
	}
	// Record the new series before enqueueing, so the answer shows the
	// state the attempt will find. If the enqueue fails, the previous state
	// is put back so the operator can simply retry again.
	if err := s.log.Save(ctx, d); err != nil {
		return nil, err
	}
	if err := s.lane.Enqueue(ctx, job); err != nil {
		if restoreErr := s.log.Save(ctx, &previous); restoreErr != nil {
			err = errors.Join(err, restoreErr)
		}
		return nil, err
	}
	return d, nil
}
