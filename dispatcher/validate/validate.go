// Package validate decides whether a message on the events stream is an event
// the dispatcher may deliver (docs/contract.md, Rejected events). A message
// that is not is rejected with a reason, recorded, kept in the stream, and
// never redelivered.
package validate

import (
	"encoding/json"
	"fmt"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/blazelock/webhooks/internal/natsinfra"
	"github.com/blazelock/webhooks/schemas"
)

// Event is a valid event, ready to deliver.
type Event struct {
	ID            string
	IntegrationID string
	Name          string
	Body          []byte
}

// Rejection says why a message is not a deliverable event. Partial holds
// what could be read, so the rejected delivery can still be filed under its
// integration and listed.
type Rejection struct {
	Reason  string
	Partial Event
}

func (r *Rejection) Error() string { return "rejected: " + r.Reason }

// Message checks one message: size, subject shape, event id, schema, and
// that the subject agrees with the body. The checks run cheapest first.
func Message(subject string, header nats.Header, body []byte, maxEventBytes int) (Event, *Rejection) {
	var ev Event
	integrationID, name, ok := natsinfra.ParseEventSubject(subject)
	ev.IntegrationID, ev.Name = integrationID, name
	ev.ID = header.Get(jetstream.MsgIDHeader)
	reject := func(format string, args ...any) (Event, *Rejection) {
		return Event{}, &Rejection{Reason: fmt.Sprintf(format, args...), Partial: ev}
	}
	if len(body) > maxEventBytes {
		return reject("event is %d bytes; the limit is %d", len(body), maxEventBytes)
	}
	if !ok {
		return reject("subject %q is not blazelock.events.<integration_id>.<event>", subject)
	}
	if !schemas.IsEventName(name) {
		return reject("unknown event type %q in the subject", name)
	}
	if ev.ID == "" {
		return reject("missing Nats-Msg-Id header (the event id)")
	}
	if _, err := uuid.Parse(ev.ID); err != nil {
		return reject("Nats-Msg-Id %q is not a UUID", ev.ID)
	}
	if err := schemas.Validate(body); err != nil {
		return reject("%v", err)
	}
	if envelopeHeadIs(body, name, integrationID) {
		ev.Body = body
		return ev, nil
	}
	var head struct {
		Event         string `json:"event"`
		IntegrationID string `json:"integration_id"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return reject("body is not an envelope: %v", err)
	}
	if head.Event != name || head.IntegrationID != integrationID {
		return reject("subject says %s for integration %s but the body says %s for integration %s",
			name, integrationID, head.Event, head.IntegrationID)
	}
	ev.Body = body
	return ev, nil
}

// envelopeHeadIs is the fast path of the subject/body check: a valid body
// (schemas.Validate has passed: compact, keys in contract order, no duplicate
// keys) written without escapes in these two values starts exactly like
// this, so one prefix comparison replaces decoding the whole body again.
// Anything else, escapes included, takes the json.Unmarshal path.
func envelopeHeadIs(body []byte, event, integrationID string) bool {
	const (
		p1 = `{"event":"`
		p2 = `","integration_id":"`
		p3 = `",`
	)
	n := len(p1) + len(event) + len(p2) + len(integrationID) + len(p3)
	if len(body) < n {
		return false
	}
	b := body[:n]
	return string(b[:len(p1)]) == p1 &&
		string(b[len(p1):len(p1)+len(event)]) == event &&
		string(b[len(p1)+len(event):len(p1)+len(event)+len(p2)]) == p2 &&
		string(b[len(p1)+len(event)+len(p2):n-len(p3)]) == integrationID &&
		string(b[n-len(p3):]) == p3
}
