package publisher_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/blazelock/webhooks/internal/natsinfra"
	"github.com/blazelock/webhooks/internal/testinfra"
	"github.com/blazelock/webhooks/publisher"
	"github.com/blazelock/webhooks/schemas"
)

// specBody is the test-vector body of docs/contract.md, Signature, byte for byte.
const specBody = `{"event":"file_scan.submitted","integration_id":"0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01","occurred_at":"2026-03-09T12:34:56.000Z","data":{"id":"019583d8-b2e4-7b8d-9d1f-6f4cb3d0b6f1","external_reference_id":"invoice-4711","status":"processing","execution_mode":"async","file_name":"invoice.pdf","file_size":245761,"submitted_at":"2026-03-09T12:34:56.000Z"}}`

func specEvent() publisher.Event {
	at := schemas.At(time.Date(2026, 3, 9, 12, 34, 56, 0, time.UTC))
	ref := "invoice-4711"
	return publisher.Event{
		Name:          schemas.EventSubmitted,
		IntegrationID: "0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01",
		OccurredAt:    at,
		Data: schemas.FileScan{
			ID:                  "019583d8-b2e4-7b8d-9d1f-6f4cb3d0b6f1",
			ExternalReferenceID: &ref,
			Status:              schemas.StatusProcessing,
			ExecutionMode:       schemas.ModeAsync,
			FileName:            "invoice.pdf",
			FileSize:            245761,
			SubmittedAt:         at,
		},
	}
}

type env struct {
	js     jetstream.JetStream
	stream jetstream.Stream
}

func setup(t *testing.T) env {
	t.Helper()
	ctx := context.Background()
	js := testinfra.ProvisionedJetStream(t)
	s, err := js.Stream(ctx, natsinfra.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	return env{js: js, stream: s}
}

func (e env) count(t *testing.T) uint64 {
	t.Helper()
	info, err := e.stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestEnvelopeByteLayoutMatchesSpecVector(t *testing.T) {
	body, id, err := publisher.New(nil).Build(specEvent())
	if err != nil {
		t.Fatal(err)
	}
	if string(body) != specBody {
		t.Fatalf("envelope bytes differ from the test vector of docs/contract.md, Signature:\n got %s\nwant %s", body, specBody)
	}
	u, err := uuid.Parse(id)
	if err != nil || u.Version() != 7 {
		t.Fatalf("assigned id %q is not a UUIDv7", id)
	}
}

func TestRawDataIsCompactedAndKeptAsWritten(t *testing.T) {
	ev := specEvent()
	ev.Data = json.RawMessage(`{ "id": "019583d8-b2e4-7b8d-9d1f-6f4cb3d0b6f1", "external_reference_id": null,
	  "status": "processing", "execution_mode": "sync", "file_name": "a&b <1>.pdf", "file_size": 1,
	  "submitted_at": "2026-03-09T12:34:56.000Z", "future_field": {"x": 1} }`)
	body, _, err := publisher.New(nil).Build(ev)
	if err != nil {
		t.Fatal(err)
	}
	want := `"data":{"id":"019583d8-b2e4-7b8d-9d1f-6f4cb3d0b6f1","external_reference_id":null,"status":"processing","execution_mode":"sync","file_name":"a&b <1>.pdf","file_size":1,"submitted_at":"2026-03-09T12:34:56.000Z","future_field":{"x":1}}}`
	if !strings.HasSuffix(string(body), want) {
		t.Fatalf("body %s does not end with %s", body, want)
	}
}

func TestPublishLandsWithHeadersAndDeduplicates(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	p := publisher.New(e.js, publisher.WithTracerProvider(tp), publisher.WithPropagator(propagation.TraceContext{}))

	ev := specEvent()
	ev.ID = "0195a0c1-0000-7000-8000-000000000001"
	first, err := p.Publish(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate || first.EventID != ev.ID || first.Subject != "blazelock.events.0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01.file_scan.submitted" {
		t.Fatalf("unexpected result %+v", first)
	}
	second, err := p.Publish(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	if !second.Duplicate || second.Sequence != first.Sequence {
		t.Fatalf("re-publish inside the window not reported as duplicate: %+v", second)
	}
	if n := e.count(t); n != 1 {
		t.Fatalf("stream holds %d messages, want 1", n)
	}

	msg, err := e.stream.GetMsg(ctx, first.Sequence)
	if err != nil {
		t.Fatal(err)
	}
	if string(msg.Data) != specBody {
		t.Fatalf("stored body differs:\n%s", msg.Data)
	}
	if got := msg.Header.Get(jetstream.MsgIDHeader); got != ev.ID {
		t.Fatalf("Nats-Msg-Id = %q", got)
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("want 2 producer spans, got %d", len(spans))
	}
	tp0 := msg.Header.Get("traceparent")
	if !strings.Contains(tp0, spans[0].SpanContext().TraceID().String()) {
		t.Fatalf("traceparent %q does not carry the publish span's trace %s", tp0, spans[0].SpanContext().TraceID())
	}
}

func TestInvalidEventsPublishNothing(t *testing.T) {
	e := setup(t)
	p := publisher.New(e.js, publisher.WithMaxEventBytes(2048))
	big := specEvent()
	scan := big.Data.(schemas.FileScan)
	scan.FileName = strings.Repeat("x", 4096)
	big.Data = scan

	for _, tc := range []struct {
		name   string
		mutate func(*publisher.Event)
		want   string
	}{
		{"unknown event", func(ev *publisher.Event) { ev.Name = "file_scan.deleted" }, "event"},
		{"integration id not a uuid", func(ev *publisher.Event) { ev.IntegrationID = "acme" }, "integration_id"},
		{"event id not a uuid", func(ev *publisher.Event) { ev.ID = "42" }, "not a UUID"},
		{"status does not match event", func(ev *publisher.Event) { ev.Name = schemas.EventCompleted }, "status"},
		{"missing data", func(ev *publisher.Event) { ev.Data = nil }, "data is missing"},
		{"data not JSON", func(ev *publisher.Event) { ev.Data = []byte("{") }, "not valid JSON"},
		{"oversized", func(ev *publisher.Event) { *ev = big }, "too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := specEvent()
			tc.mutate(&ev)
			_, err := p.Publish(context.Background(), ev)
			var invalid *publisher.InvalidEventError
			if !errors.As(err, &invalid) {
				t.Fatalf("want InvalidEventError, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
	if n := e.count(t); n != 0 {
		t.Fatalf("invalid events published %d messages", n)
	}
}
