package main

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/blazelock/webhooks/dispatcher/deliverylog"
	"github.com/blazelock/webhooks/internal/testinfra"
	"github.com/blazelock/webhooks/publisher"
	"github.com/blazelock/webhooks/schemas"
	"github.com/blazelock/webhooks/subscriber/receiver"
)

// TestSlowEndpointDoesNotHoldBackOthers: an endpoint that hangs past the
// attempt timeout gets at most DISPATCHER_ENDPOINT_MAX_CONCURRENCY workers;
// the healthy integration's events, published after the hanging ones, are
// all delivered while every attempt to the hanging endpoint is still open.
func TestSlowEndpointDoesNotHoldBackOthers(t *testing.T) {
	const inFlight = 2
	s := newStack(t, map[string]string{
		"DISPATCHER_CONCURRENCY":              "16",
		"DISPATCHER_ENDPOINT_MAX_CONCURRENCY": "2",
		"DISPATCHER_ATTEMPT_TIMEOUT":          "10s",
	})
	a := s.dispatcher()
	hanging := newEndpoint(t, receiver.Faults{Hang: true})
	healthy := newEndpoint(t, receiver.Faults{})
	slowID, fastID := s.configure(a, hanging), s.configure(a, healthy)

	started := time.Now()
	for range 40 {
		s.publish(slowID, schemas.EventCompleted)
	}
	for range 100 {
		s.publish(fastID, schemas.EventCompleted)
	}
	testinfra.WaitFor(t, 8*time.Second, "all healthy deliveries", func() bool { return healthy.Stats().Accepted == 100 })
	elapsed := time.Since(started)

	var page struct{ Deliveries []deliveryJSON }
	a.api(t, "GET", "/v1/integrations/"+slowID+"/deliveries?limit=100", nil, &page)
	for _, d := range page.Deliveries {
		if d.AttemptCount > 0 {
			t.Fatalf("an attempt to the hanging endpoint finished before the healthy integration was served (%s): isolation did not come from the in-flight cap", elapsed)
		}
	}
	if n := hanging.Stats().Received; n > inFlight {
		t.Fatalf("the hanging endpoint holds %d connections, the cap is %d", n, inFlight)
	}
	t.Logf("100 healthy deliveries in %s beside 40 events to a hanging endpoint (%d connections held)", elapsed, hanging.Stats().Received)
}

// TestManySlowEndpointsShareABoundedBudget: more hanging integrations than
// the per-endpoint cap can contain. Once their first attempts have timed
// out they are stalled, and all of them together get a quarter of the
// workers: a healthy integration's events published then are delivered
// while no more than that budget of new attempts reaches the hanging ones.
func TestManySlowEndpointsShareABoundedBudget(t *testing.T) {
	s := newStack(t, map[string]string{
		"DISPATCHER_CONCURRENCY":              "16", // stalled budget 4
		"DISPATCHER_ENDPOINT_MAX_CONCURRENCY": "2",
		"DISPATCHER_ATTEMPT_TIMEOUT":          "6s",
		"DISPATCHER_RETRY_SCHEDULE":           "1s,1s,1s,1s,1s,1s,1s,1s,1s",
	})
	a := s.dispatcher()
	hanging := newEndpoint(t, receiver.Faults{Hang: true})
	var slowIDs []string
	for range 6 {
		id := s.configure(a, hanging)
		slowIDs = append(slowIDs, id)
		for range 5 {
			s.publish(id, schemas.EventCompleted)
		}
	}
	// The first wave: 6 integrations × 2 slots (at most 8, half the
	// workers, while none has answered yet), then every attempt times out
	// and the integrations are stalled.
	testinfra.WaitFor(t, 15*time.Second, "the first wave of attempts to time out", func() bool {
		for _, id := range slowIDs {
			var page struct{ Deliveries []deliveryJSON }
			a.api(t, "GET", "/v1/integrations/"+id+"/deliveries?limit=100", nil, &page)
			timedOut := false
			for _, d := range page.Deliveries {
				timedOut = timedOut || d.AttemptCount > 0
			}
			if !timedOut {
				return false
			}
		}
		return true
	})
	before := hanging.Stats().Received // counted when a request arrives, not when it ends
	healthy := newEndpoint(t, receiver.Faults{})
	fastID := s.configure(a, healthy)
	for range 100 {
		s.publish(fastID, schemas.EventCompleted)
	}
	testinfra.WaitFor(t, 4*time.Second, "all healthy deliveries while the slow ones hang", func() bool { return healthy.Stats().Accepted == 100 })
	// Watch a little longer, but never as long as the 6 s hang (the healthy
	// wait and this one stay under it), so no slow attempt ends and frees a
	// slot: the retries falling due meanwhile may start at most as many
	// attempts as the stalled budget.
	time.Sleep(2 * time.Second)
	if started := hanging.Stats().Received - before; started > 4 {
		t.Fatalf("%d new attempts reached the hanging endpoints meanwhile; the stalled budget is 4", started)
	}
}

// TestTraceFromPublishToHTTPAttempt: the publisher's trace continues into
// the dispatcher's consumer span, whose child is the HTTP client span.
func TestTraceFromPublishToHTTPAttempt(t *testing.T) {
	s := newStack(t, nil)
	dispatcherSpans := tracetest.NewSpanRecorder()
	a := s.dispatcherWith(dispatcherSpans)
	ep := newEndpoint(t, receiver.Faults{})
	id := s.configure(a, ep)

	publisherSpans := tracetest.NewSpanRecorder()
	pub := publisher.New(s.js,
		publisher.WithTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(publisherSpans))),
		publisher.WithPropagator(propagation.TraceContext{}))
	at := schemas.At(time.Now())
	res, err := pub.Publish(context.Background(), publisher.Event{Name: schemas.EventSubmitted, IntegrationID: id, OccurredAt: at, Data: publisher.SampleScan(schemas.EventSubmitted, at)})
	if err != nil {
		t.Fatal(err)
	}
	s.delivery(a, id, res.EventID, 10*time.Second, deliverylog.StateSucceeded)
	send := publisherSpans.Ended()[0]

	var consumer, client sdktrace.ReadOnlySpan
	testinfra.WaitFor(t, 5*time.Second, "consumer and HTTP spans", func() bool {
		for _, sp := range dispatcherSpans.Ended() {
			switch sp.SpanKind() {
			case trace.SpanKindConsumer:
				consumer = sp
			case trace.SpanKindClient:
				client = sp
			}
		}
		return consumer != nil && client != nil
	})
	if consumer.SpanContext().TraceID() != send.SpanContext().TraceID() || consumer.Parent().SpanID() != send.SpanContext().SpanID() {
		t.Fatalf("consumer span is not a child of the publish span")
	}
	if client.Parent().SpanID() != consumer.SpanContext().SpanID() || client.SpanContext().TraceID() != send.SpanContext().TraceID() {
		t.Fatalf("HTTP span is not a child of the consumer span")
	}
	if arrivals := ep.Deliveries(); len(arrivals) != 1 || arrivals[0].Header.Get("Traceparent") != "" {
		t.Fatalf("trace context reached the customer endpoint")
	}
}

// TestNewlyHangingEndpointsDoNotTakeEveryWorker: endpoints that have just
// started hanging, with more room in their per-integration caps together
// (4 × 8) than the process has workers (16), while events keep coming for
// them and for a healthy integration. Long before the 10 s timeout, their
// limits (2 to start with, and no growth without answers) and then the
// stalled budget must stop them at a share of the workers: the healthy
// events are delivered meanwhile, and the hanging endpoints never hold
// every worker.
func TestNewlyHangingEndpointsDoNotTakeEveryWorker(t *testing.T) {
	const workers = 16
	s := newStack(t, map[string]string{
		"DISPATCHER_CONCURRENCY":              "16",
		"DISPATCHER_ENDPOINT_MAX_CONCURRENCY": "8",
		"DISPATCHER_ATTEMPT_TIMEOUT":          "10s",
	})
	a := s.dispatcher()
	hanging := newEndpoint(t, receiver.Faults{Hang: true})
	healthy := newEndpoint(t, receiver.Faults{})
	var hangIDs []string
	for range 4 {
		hangIDs = append(hangIDs, s.configure(a, hanging))
	}
	fastID := s.configure(a, healthy)

	// 20 events/s to the hanging endpoints and 20/s to the healthy one,
	// for 3 s: with a fixed cap of 8 the hanging ones would take all 16
	// workers within a second, and healthy events wait for the 10 s
	// timeout. Adaptive, they stop at 4 × 2, plus a probe each 2 s within
	// the stalled budget of 4.
	const events = 120
	started := time.Now()
	for i := range events {
		if i%2 == 1 {
			s.publish(fastID, schemas.EventCompleted)
		} else {
			s.publish(hangIDs[i/2%4], schemas.EventCompleted)
		}
		time.Sleep(time.Until(started.Add(time.Duration(i+1) * 3 * time.Second / events)))
	}
	testinfra.WaitFor(t, 5*time.Second, "all healthy deliveries while the hanging attempts are open", func() bool {
		return healthy.Stats().Accepted == events/2
	})
	elapsed := time.Since(started)
	held := hanging.Stats().Received
	if held >= workers {
		t.Fatalf("the hanging endpoints hold %d connections: every worker", held)
	}
	t.Logf("%d healthy deliveries in %s while newly hanging endpoints held %d of %d workers", events/2, elapsed, held, workers)
}
