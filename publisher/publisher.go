// Package publisher is what scan services use to publish Blazelock scan
// events to JetStream (docs/contract.md, Publishing events).
//
// It builds the envelope from typed values in the contract's key order, assigns a
// UUIDv7 event id unless one is given, validates the bytes against the JSON
// Schemas and the size limit, and publishes them on
// blazelock.events.<integration_id>.<event> with Nats-Msg-Id (the event id,
// so JetStream drops re-publishes inside its duplicate window) and the W3C
// trace headers of the caller's span. Invalid input publishes nothing.
package publisher

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/blazelock/webhooks/internal/natsinfra"
	"github.com/blazelock/webhooks/schemas"
)

// DefaultMaxEventBytes is the default event size limit (256 KiB,
// docs/contract.md, Publishing events).
const DefaultMaxEventBytes = 256 << 10

// Event is one scan event to publish.
type Event struct {
	// ID is the event id (a UUID); empty assigns a new UUIDv7.
	ID            string
	Name          string // one of schemas.EventSubmitted, EventCompleted, EventFailed
	IntegrationID string
	OccurredAt    schemas.Timestamp
	// Data is the file scan object: a schemas.FileScan, or raw JSON
	// (json.RawMessage or []byte) which is compacted and kept otherwise as is.
	Data any
}

// Result says what JetStream did with a publish.
type Result struct {
	EventID  string
	Subject  string
	Sequence uint64
	// Duplicate is true when JetStream had already stored this event id
	// within its duplicate window and dropped this copy.
	Duplicate bool
}

// InvalidEventError means the event was not published because it breaks
// the contract; Err says how (a *schemas.ValidationError, or a size error).
type InvalidEventError struct{ Err error }

func (e *InvalidEventError) Error() string {
	return "invalid event, nothing published: " + e.Err.Error()
}
func (e *InvalidEventError) Unwrap() error { return e.Err }

// ErrTooLarge is wrapped by InvalidEventError for events over the size limit.
var ErrTooLarge = errors.New("event too large")

// Publisher publishes events. It is safe for concurrent use.
type Publisher struct {
	js            jetstream.JetStream
	maxEventBytes int
	tracer        trace.Tracer
	propagator    propagation.TextMapPropagator
}

// Option configures a Publisher.
type Option func(*Publisher)

// WithMaxEventBytes sets the size limit; keep it equal to the dispatchers'
// DISPATCHER_MAX_EVENT_BYTES, or they will reject what was published.
func WithMaxEventBytes(n int) Option { return func(p *Publisher) { p.maxEventBytes = n } }

// WithTracerProvider sets where publish spans go (default: the global one).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(p *Publisher) { p.tracer = tp.Tracer("github.com/blazelock/webhooks/publisher") }
}

// WithPropagator sets how trace context is written into the NATS headers
// (default: the global propagator).
func WithPropagator(prop propagation.TextMapPropagator) Option {
	return func(p *Publisher) { p.propagator = prop }
}

// New returns a Publisher over a JetStream handle.
func New(js jetstream.JetStream, opts ...Option) *Publisher {
	p := &Publisher{
		js:            js,
		maxEventBytes: DefaultMaxEventBytes,
		tracer:        otel.GetTracerProvider().Tracer("github.com/blazelock/webhooks/publisher"),
		propagator:    otel.GetTextMapPropagator(),
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Publish validates and publishes one event. An *InvalidEventError means
// nothing was published; other errors come from NATS, and the same Event
// (with the same ID) can be published again safely.
func (p *Publisher) Publish(ctx context.Context, ev Event) (Result, error) {
	body, id, err := p.Build(ev)
	if err != nil {
		return Result{}, err
	}
	subject := natsinfra.EventSubject(ev.IntegrationID, ev.Name)
	ctx, span := p.tracer.Start(ctx, "send "+natsinfra.EventsStream,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", subject),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.message.id", id),
			attribute.Int("messaging.message.body.size", len(body)),
		))
	defer span.End()

	msg := &nats.Msg{Subject: subject, Data: body, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, id)
	p.propagator.Inject(ctx, natsinfra.HeaderCarrier(msg.Header))
	ack, err := p.js.PublishMsg(ctx, msg)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		return Result{}, fmt.Errorf("publish event %s to %s: %w", id, subject, err)
	}
	span.SetAttributes(attribute.Bool("messaging.nats.duplicate", ack.Duplicate))
	return Result{EventID: id, Subject: subject, Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// Build returns the exact envelope bytes that would be published and
// delivered, and the event id, after every check Publish makes.
func (p *Publisher) Build(ev Event) (body []byte, eventID string, err error) {
	eventID = ev.ID
	if eventID == "" {
		u, err := uuid.NewV7()
		if err != nil {
			return nil, "", fmt.Errorf("generate event id: %w", err)
		}
		eventID = u.String()
	} else if _, err := uuid.Parse(eventID); err != nil {
		return nil, "", &InvalidEventError{fmt.Errorf("event id %q is not a UUID", eventID)}
	}
	data, err := marshalData(ev.Data)
	if err != nil {
		return nil, "", &InvalidEventError{err}
	}
	body, err = marshalCompact(schemas.Envelope{
		Event:         ev.Name,
		IntegrationID: ev.IntegrationID,
		OccurredAt:    ev.OccurredAt,
		Data:          data,
	})
	if err != nil {
		return nil, "", &InvalidEventError{err}
	}
	if len(body) > p.maxEventBytes {
		return nil, "", &InvalidEventError{fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(body), p.maxEventBytes)}
	}
	if err := schemas.Validate(body); err != nil {
		return nil, "", &InvalidEventError{err}
	}
	return body, eventID, nil
}

func marshalData(data any) (json.RawMessage, error) {
	var raw []byte
	switch d := data.(type) {
	case nil:
		return nil, errors.New("data is missing")
	case json.RawMessage:
		raw = d
	case []byte:
		raw = d
	default:
		return marshalCompact(d)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, fmt.Errorf("data is not valid JSON: %w", err)
	}
	return buf.Bytes(), nil
}

// marshalCompact encodes without HTML escaping, so a file name such as
// "a&b.pdf" reaches the receiver as written rather than as "a\u0026b.pdf".
func marshalCompact(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
