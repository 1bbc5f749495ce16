package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/blazelock/webhooks/dispatcher/deliverylog"
	"github.com/blazelock/webhooks/dispatcher/sign"
	"github.com/blazelock/webhooks/dispatcher/webhooks"
	"github.com/blazelock/webhooks/internal/natsinfra"
	"github.com/blazelock/webhooks/internal/testinfra"
	"github.com/blazelock/webhooks/schemas"
	"github.com/blazelock/webhooks/subscriber/receiver"
)

func TestDeliveryIsSignedWithEverySpecHeader(t *testing.T) {
	s := newStack(t, nil)
	a := s.dispatcher()
	ep := newEndpoint(t, receiver.Faults{})
	id := s.configure(a, ep)
	eventID := s.publish(id, schemas.EventCompleted)

	d := s.delivery(a, id, eventID, 10*time.Second, deliverylog.StateSucceeded)
	arrivals := ep.DeliveriesFor(eventID)
	if len(arrivals) != 1 {
		t.Fatalf("want 1 arrival, got %d", len(arrivals))
	}
	got := arrivals[0]
	if !got.Verified {
		t.Fatalf("receiver could not verify the webhook: %s", got.Reason)
	}
	// Independently of the receiver: recompute the signature
	// (docs/contract.md, Signature).
	ts, _ := strconv.ParseInt(got.Timestamp, 10, 64)
	if want := sign.Signature(s.secret(a, id), ts, got.Body); got.Signature != want {
		t.Fatalf("signature %s, want %s", got.Signature, want)
	}
	if age := time.Since(time.Unix(ts, 0)); age < 0 || age > time.Minute {
		t.Fatalf("timestamp %d is not the time of sending", ts)
	}
	for header, want := range map[string]string{
		"Content-Type":                "application/json",
		"User-Agent":                  "Blazelock-Webhooks/" + version,
		"X-Blazelock-Webhook-Id":      eventID,
		"X-Blazelock-Webhook-Attempt": "1",
	} {
		if v := got.Header.Get(header); v != want {
			t.Errorf("%s = %q, want %q", header, v, want)
		}
	}
	if v := got.Header.Get("Traceparent"); v != "" {
		t.Errorf("our trace context leaked to the customer endpoint: %q", v)
	}
	if d.AttemptCount != 1 || len(d.Attempts) != 1 || d.Attempts[0].StatusCode == nil || *d.Attempts[0].StatusCode != 200 {
		t.Fatalf("delivery log does not show one successful attempt: %+v", d)
	}
	resp, err := http.Get("http://" + a.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`webhook_attempts_total{event="file_scan.completed"`,
		`webhook_deliveries_total{`, `webhook_delivery_latency_seconds_bucket{`,
		`webhook_consumer_pending{`, `http_client_request_duration_seconds_bucket{`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, metrics)
		}
	}
}

func TestFullScheduleThenDeadThenRetryViaAPI(t *testing.T) {
	s := newStack(t, nil) // schedule 1s,1s,1s: 4 attempts
	a := s.dispatcher()
	ep := newEndpoint(t, receiver.Faults{Status: 503})
	id := s.configure(a, ep)
	eventID := s.publish(id, schemas.EventFailed)

	d := s.delivery(a, id, eventID, 30*time.Second, deliverylog.StateDead)
	arrivals := ep.DeliveriesFor(eventID)
	if len(arrivals) != 4 || d.AttemptCount != 4 {
		t.Fatalf("want 4 attempts (1 + 3 retries), endpoint saw %d, log says %d", len(arrivals), d.AttemptCount)
	}
	for i, arr := range arrivals {
		if arr.Attempt != i+1 {
			t.Errorf("arrival %d carries attempt %d", i, arr.Attempt)
		}
		if string(arr.Body) != string(arrivals[0].Body) {
			t.Errorf("attempt %d body differs from attempt 1", i+1)
		}
		if !arr.Verified {
			t.Errorf("attempt %d not verified: %s", i+1, arr.Reason)
		}
		if i > 0 {
			if arr.Timestamp == arrivals[i-1].Timestamp || arr.Signature == arrivals[i-1].Signature {
				t.Errorf("attempt %d reused the timestamp or signature of attempt %d", i+1, i)
			}
			if gap := arr.ArrivedAt.Sub(arrivals[i-1].ArrivedAt); gap < 900*time.Millisecond {
				t.Errorf("attempt %d came %s after the previous one; the schedule says 1s", i+1, gap)
			}
		}
	}

	// Replay: the endpoint is healthy again.
	_ = ep.SetFaults(receiver.Faults{})
	var retried deliveryJSON
	if code := a.api(t, "POST", "/v1/deliveries/"+d.ID+"/retry", nil, &retried); code != http.StatusAccepted || retried.State != deliverylog.StatePending {
		t.Fatalf("retry: %d %+v", code, retried)
	}
	d = s.delivery(a, id, eventID, 10*time.Second, deliverylog.StateSucceeded)
	arrivals = ep.DeliveriesFor(eventID)
	if last := arrivals[len(arrivals)-1]; len(arrivals) != 5 || last.Attempt != 1 || string(last.Body) != string(arrivals[0].Body) {
		t.Fatalf("replay did not send attempt 1 of a new series with the same body (arrivals %d)", len(arrivals))
	}
	if d.AttemptCount != 5 {
		t.Fatalf("attempt_count %d, want 5", d.AttemptCount)
	}
	// A pending or succeeded delivery: succeeded may be replayed, pending not.
	if code := a.api(t, "POST", "/v1/deliveries/"+d.ID+"/retry", nil, nil); code != http.StatusAccepted {
		t.Fatalf("retry of a succeeded delivery: %d", code)
	}
}

func TestEveryFailureKindIsRetried(t *testing.T) {
	s := newStack(t, map[string]string{"DISPATCHER_ATTEMPT_TIMEOUT": "1s"})
	a := s.dispatcher()
	for _, tc := range []struct {
		name   string
		faults receiver.Faults
		class  string
	}{
		{"redirect", receiver.Faults{FailFirst: 1, Status: 302}, "http_3xx"},
		{"client error", receiver.Faults{FailFirst: 1, Status: 400}, "http_4xx"},
		{"gone", receiver.Faults{FailFirst: 1, Status: 410}, "http_4xx"},
		{"server error", receiver.Faults{FailFirst: 1, Status: 500}, "http_5xx"},
		{"rate limited", receiver.Faults{FailFirst: 1, RetryAfter: 1}, "http_429"},
		{"timeout", receiver.Faults{FailFirst: 1, Hang: true}, "timeout"},
		{"connection reset", receiver.Faults{FailFirst: 1, Reset: true}, "connection_reset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ep := newEndpoint(t, tc.faults)
			id := s.configure(a, ep)
			eventID := s.publish(id, schemas.EventSubmitted)
			d := s.delivery(a, id, eventID, 20*time.Second, deliverylog.StateSucceeded)
			if d.AttemptCount != 2 || d.Attempts[0].Error == nil {
				t.Fatalf("want a failed attempt then a success, got %+v", d.Attempts)
			}
			if got := *d.Attempts[0].Error; len(got) < len(tc.class) || got[:len(tc.class)] != tc.class {
				t.Fatalf("first attempt error %q, want class %s", got, tc.class)
			}
			if len(ep.Deliveries()) != 2 {
				t.Fatalf("endpoint saw %d requests (a followed redirect shows up as a third)", len(ep.Deliveries()))
			}
		})
	}
}

func TestConfigChangesApplyToTheNextAttempt(t *testing.T) {
	testConfigChangesApplyToTheNextAttempt(t, newStack(t, map[string]string{"DISPATCHER_RETRY_SCHEDULE": "2s,2s,2s"}))
}

// The same through a Redis Cluster cache: REDIS_URL in go-redis's cluster
// form, and every change honoured by the next attempt.
func TestConfigChangesApplyThroughARedisCluster(t *testing.T) {
	rc := testinfra.StartRedisCluster(t)
	s := newStack(t, map[string]string{"DISPATCHER_RETRY_SCHEDULE": "2s,2s,2s", "REDIS_URL": rc.URL})
	testConfigChangesApplyToTheNextAttempt(t, s)
	if logs := s.logs.String(); !strings.Contains(logs, "redis_cluster=true") {
		t.Fatalf("the dispatcher did not open a Redis Cluster client:\n%s", logs)
	}
	var entries int64 // three integrations: not necessarily one per shard
	for _, shard := range rc.Shards {
		entries += rc.ShardClient(shard).DBSize(context.Background()).Val()
	}
	if entries == 0 {
		t.Error("no shard holds a cache entry: the attempts did not read through the cluster")
	}
}

func testConfigChangesApplyToTheNextAttempt(t *testing.T, s *stack) {
	a := s.dispatcher()

	t.Run("disable skips", func(t *testing.T) {
		ep := newEndpoint(t, receiver.Faults{Status: 500})
		id := s.configure(a, ep)
		eventID := s.publish(id, schemas.EventSubmitted)
		testinfra.WaitFor(t, 10*time.Second, "first attempt", func() bool { return len(ep.DeliveriesFor(eventID)) == 1 })
		s.setWebhook(a, id, map[string]any{"enabled": false, "url": ep.URL, "events": schemas.EventNames})
		d := s.delivery(a, id, eventID, 10*time.Second, deliverylog.StateSkipped)
		if len(ep.DeliveriesFor(eventID)) != 1 || d.LastError == nil {
			t.Fatalf("disabled webhook still received attempts, or no reason recorded: %+v", d)
		}
	})
	t.Run("deselected event skips", func(t *testing.T) {
		ep := newEndpoint(t, receiver.Faults{Status: 500})
		id := s.configure(a, ep)
		eventID := s.publish(id, schemas.EventSubmitted)
		testinfra.WaitFor(t, 10*time.Second, "first attempt", func() bool { return len(ep.DeliveriesFor(eventID)) == 1 })
		s.setWebhook(a, id, map[string]any{"enabled": true, "url": ep.URL, "events": []string{schemas.EventCompleted}})
		s.delivery(a, id, eventID, 10*time.Second, deliverylog.StateSkipped)
	})
	t.Run("url change and rotation", func(t *testing.T) {
		old := newEndpoint(t, receiver.Faults{Status: 500})
		id := s.configure(a, old)
		eventID := s.publish(id, schemas.EventSubmitted)
		testinfra.WaitFor(t, 10*time.Second, "first attempt", func() bool { return len(old.DeliveriesFor(eventID)) == 1 })
		oldSecret := s.secret(a, id)
		fresh := newEndpoint(t, receiver.Faults{})
		s.setWebhook(a, id, map[string]any{"enabled": true, "url": fresh.URL, "events": schemas.EventNames})
		var rotated struct{ Secret string }
		if code := a.api(t, "POST", "/v1/integrations/"+id+"/webhook/secret/rotate", nil, &rotated); code != 200 || rotated.Secret == oldSecret {
			t.Fatalf("rotate: %d", code)
		}
		fresh.SetSecret(id, rotated.Secret)
		s.delivery(a, id, eventID, 10*time.Second, deliverylog.StateSucceeded)
		arrivals := fresh.DeliveriesFor(eventID)
		if len(arrivals) != 1 || !arrivals[0].Verified || arrivals[0].Attempt != 2 {
			t.Fatalf("attempt 2 did not reach the new URL signed with the new secret: %+v", arrivals)
		}
		ts, _ := strconv.ParseInt(arrivals[0].Timestamp, 10, 64)
		if arrivals[0].Signature == sign.Signature(oldSecret, ts, arrivals[0].Body) {
			t.Fatal("attempt signed with the old secret")
		}
		if len(old.DeliveriesFor(eventID)) != 1 {
			t.Fatal("old URL received another attempt")
		}
	})
}

func TestInvalidEventsAreRejectedKeptAndNotRedelivered(t *testing.T) {
	s := newStack(t, map[string]string{"DISPATCHER_MAX_EVENT_BYTES": "2048"})
	a := s.dispatcher()
	ep := newEndpoint(t, receiver.Faults{})
	id := s.configure(a, ep)
	valid := `{"event":"file_scan.submitted","integration_id":"` + id + `","occurred_at":"2026-03-09T12:34:56.000Z","data":{"id":"019583d8-b2e4-7b8d-9d1f-6f4cb3d0b6f1","external_reference_id":null,"status":"processing","execution_mode":"async","file_name":"a.pdf","file_size":1,"submitted_at":"2026-03-09T12:34:56.000Z"}}`
	subject := natsinfra.EventSubject(id, schemas.EventSubmitted)
	cases := []struct{ name, subject, body, reason string }{
		{"malformed JSON", subject, `{"event":`, "malformed JSON"},
		{"schema invalid", subject, `{"event":"file_scan.submitted"}`, "integration_id"},
		{"subject mismatch", natsinfra.EventSubject(id, schemas.EventFailed), valid, "subject says"},
		{"oversized", subject, valid[:len(valid)-2] + `,"pad":"` + strings.Repeat("0", 3000) + `"}}`, "limit is 2048"},
		{"unknown event type", natsinfra.EventSubject(id, "file_scan.deleted"), valid, "unknown event type"},
	}
	ctx := context.Background()
	for i, tc := range cases {
		msg := &nats.Msg{Subject: tc.subject, Data: []byte(tc.body), Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("0195a0c1-0000-7000-8000-%012d", i+1))
		if _, err := s.js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	var page struct{ Deliveries []deliveryJSON }
	testinfra.WaitFor(t, 10*time.Second, "every invalid event recorded as rejected", func() bool {
		a.api(t, "GET", "/v1/integrations/"+id+"/deliveries?state=rejected", nil, &page)
		return len(page.Deliveries) == len(cases)
	})
	for _, tc := range cases {
		found := false
		for _, d := range page.Deliveries {
			found = found || (d.LastError != nil && containsText(*d.LastError, tc.reason))
		}
		if !found {
			t.Errorf("%s: no rejected delivery mentions %q", tc.name, tc.reason)
		}
	}
	if n := len(ep.Deliveries()); n != 0 {
		t.Fatalf("invalid events reached the endpoint %d times", n)
	}
	stream, _ := s.js.Stream(ctx, natsinfra.EventsStream)
	info, _ := stream.Info(ctx)
	if info.State.Msgs != uint64(len(cases)) {
		t.Fatalf("stream keeps %d messages, want all %d rejected events kept", info.State.Msgs, len(cases))
	}
	cons, _ := s.js.Consumer(ctx, natsinfra.EventsStream, natsinfra.EventsConsumer)
	ci, _ := cons.Info(ctx)
	if ci.NumAckPending != 0 || ci.NumRedelivered != 0 {
		t.Fatalf("rejected events are pending (%d) or were redelivered (%d)", ci.NumAckPending, ci.NumRedelivered)
	}
}

func TestPrivateTargetRefusedAtConnectTime(t *testing.T) {
	// The API refuses such URLs at save time; this models a name that
	// resolved publicly when saved and privately now (DNS rebinding) by
	// writing the config to the store directly, past the API's check.
	s := newStack(t, map[string]string{"DISPATCHER_ALLOW_PRIVATE_TARGETS": "false", "DISPATCHER_RETRY_SCHEDULE": "1s"})
	a := s.dispatcher()
	ep := newEndpoint(t, receiver.Faults{})
	id := "0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c09"
	if _, _, err := a.store.Put(context.Background(), id, webhookSettings(ep.URL)); err != nil {
		t.Fatal(err)
	}
	eventID := s.publish(id, schemas.EventSubmitted)
	d := s.delivery(a, id, eventID, 10*time.Second, deliverylog.StateDead)
	for _, at := range d.Attempts {
		if at.Error == nil || !containsText(*at.Error, "ssrf_refused") {
			t.Fatalf("attempt not refused at connect time: %+v", at)
		}
	}
	if n := len(ep.Deliveries()); n != 0 {
		t.Fatalf("the private endpoint received %d requests", n)
	}
}

func TestTwoDispatchersShareTheWorkWithoutLoss(t *testing.T) {
	s := newStack(t, nil)
	a, b := s.dispatcher(), s.dispatcher()
	const integrations, perIntegration = 5, 40
	eps := make([]*endpoint, integrations)
	ids := make([]string, integrations)
	for i := range eps {
		eps[i] = newEndpoint(t, receiver.Faults{})
		ids[i] = s.configure(a, eps[i])
	}
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perIntegration {
				s.publish(ids[i], schemas.EventCompleted)
			}
		}()
	}
	wg.Wait()
	testinfra.WaitFor(t, 30*time.Second, "every event delivered", func() bool {
		for _, ep := range eps {
			if ep.Stats().Accepted < perIntegration {
				return false
			}
		}
		return true
	})
	duplicates := 0
	for _, ep := range eps {
		duplicates += int(ep.Stats().Duplicates)
	}
	t.Logf("duplicates: %d of %d", duplicates, integrations*perIntegration)
	// Both processes attempted deliveries: each logs with its instance number.
	for _, instance := range []string{"instance=0", "instance=1"} {
		if !s.logs.Contains("msg=delivery.attempted " + instance) {
			t.Errorf("dispatcher %s made no attempt", instance)
		}
	}
	_, _ = a, b
}

func webhookSettings(url string) webhooks.Settings {
	return webhooks.Settings{Enabled: true, URL: url, Events: schemas.EventNames}
}

func containsText(s, sub string) bool { return strings.Contains(s, sub) }
