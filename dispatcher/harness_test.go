package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/blazelock/webhooks/config"
	"github.com/blazelock/webhooks/dispatcher/deliverylog"
	"github.com/blazelock/webhooks/internal/harness"
	"github.com/blazelock/webhooks/internal/testinfra"
	"github.com/blazelock/webhooks/publisher"
	"github.com/blazelock/webhooks/schemas"
	"github.com/blazelock/webhooks/subscriber/receiver"
)

const (
	testAdminToken = "test-admin-token-0123456789abcdef0123456789"
	testSecretKey  = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
)

// stack is one test's shared infrastructure: a JetStream server, a Redis,
// and a publisher, with any number of dispatchers started on them.
type stack struct {
	t       *testing.T
	nats    *testinfra.NATS
	redis   *testinfra.Redis
	prefix  string
	js      jetstream.JetStream
	pub     *publisher.Publisher
	env     map[string]string
	logs    *testinfra.LogBuffer
	mu      sync.Mutex
	started []*app
}

func newStack(t *testing.T, env map[string]string) *stack {
	t.Helper()
	n := testinfra.StartNATS(t)
	r := testinfra.StartRedis(t)
	js, err := jetstream.New(n.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, nats: n, redis: r, prefix: testinfra.KeyPrefix(t), js: js, pub: publisher.New(js), logs: &testinfra.LogBuffer{}}
	s.env = map[string]string{
		"NATS_URL":                         n.URL,
		"REDIS_URL":                        r.URL,
		"DISPATCHER_REDIS_PREFIX":          s.prefix,
		"DISPATCHER_HTTP_ADDR":             "127.0.0.1:0",
		"DISPATCHER_ADMIN_TOKEN":           testAdminToken,
		"DISPATCHER_SECRET_KEY":            testSecretKey,
		"DISPATCHER_ALLOW_PRIVATE_TARGETS": "true",
		"DISPATCHER_RETRY_SCHEDULE":        "1s,1s,1s",
		"DISPATCHER_ATTEMPT_TIMEOUT":       "2s",
		"DISPATCHER_SHUTDOWN_TIMEOUT":      "5s",
		"DISPATCHER_LOG_LEVEL":             "debug",
	}
	for k, v := range env {
		s.env[k] = v
	}
	t.Cleanup(func() {
		if t.Failed() {
			logs := s.logs.String()
			if path := os.Getenv("DISPATCHER_TEST_LOG"); path != "" {
				_ = os.WriteFile(path, []byte(logs), 0o644)
			}
			if len(logs) > 20000 {
				logs = "…" + logs[len(logs)-20000:]
			}
			t.Logf("dispatcher logs:\n%s", logs)
		}
	})
	return s
}

// dispatcher starts one more dispatcher on the stack, stopped at cleanup.
func (s *stack) dispatcher() *app {
	s.t.Helper()
	return s.dispatcherEnv(nil)
}

// dispatcherWith starts a dispatcher whose spans also go to the processors.
func (s *stack) dispatcherWith(spanProcessors ...sdktrace.SpanProcessor) *app {
	s.t.Helper()
	return s.dispatcherEnv(nil, spanProcessors...)
}

// dispatcherEnv starts a dispatcher with env overriding the stack's
// variables for this process only.
func (s *stack) dispatcherEnv(env map[string]string, spanProcessors ...sdktrace.SpanProcessor) *app {
	s.t.Helper()
	cfg := config.Load(func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		return s.env[k]
	})
	if err := cfg.Validate(); err != nil {
		s.t.Fatal(err)
	}
	s.mu.Lock()
	instance := len(s.started)
	s.mu.Unlock()
	logger := slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("instance", instance)
	a, err := start(context.Background(), cfg, logger, spanProcessors...)
	if err != nil {
		s.t.Fatalf("start dispatcher: %v", err)
	}
	s.t.Cleanup(func() { a.close(context.Background()) })
	s.mu.Lock()
	s.started = append(s.started, a)
	s.mu.Unlock()
	return a
}

// api calls the management API of a and decodes the JSON answer into out.
func (a *app) api(t *testing.T, method, path string, body any, out any) int {
	t.Helper()
	code, err := harness.NewAPI(a.httpAddr, testAdminToken).Call(context.Background(), method, path, body, out)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// endpoint is a reference receiver behind an httptest server.
type endpoint struct {
	*receiver.Receiver
	URL string
}

func newEndpoint(t *testing.T, faults receiver.Faults) *endpoint {
	t.Helper()
	rc, err := receiver.New(receiver.Config{Faults: faults, MaxHang: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rc)
	t.Cleanup(func() { rc.Close(); srv.Close() })
	return &endpoint{Receiver: rc, URL: srv.URL + "/webhooks/" + uuid.NewString()[:8]}
}

// configure puts a webhook for a new integration pointing at ep, teaches ep
// the secret, and returns the integration id.
func (s *stack) configure(a *app, ep *endpoint, events ...string) string {
	s.t.Helper()
	id := uuid.Must(uuid.NewV7()).String()
	if len(events) == 0 {
		events = schemas.EventNames
	}
	s.setWebhook(a, id, map[string]any{"enabled": true, "url": ep.URL, "events": events})
	ep.SetSecret(id, s.secret(a, id))
	return id
}

func (s *stack) setWebhook(a *app, id string, body map[string]any) {
	s.t.Helper()
	var resp map[string]any
	if code := a.api(s.t, "PUT", "/v1/integrations/"+id+"/webhook", body, &resp); code != 200 && code != 201 {
		s.t.Fatalf("PUT webhook: %d %v", code, resp)
	}
}

func (s *stack) secret(a *app, id string) string {
	s.t.Helper()
	secret, err := harness.NewAPI(a.httpAddr, testAdminToken).Secret(context.Background(), id)
	if err != nil {
		s.t.Fatal(err)
	}
	return secret
}

// publish publishes a sample event for the integration and returns its id.
func (s *stack) publish(integrationID, event string) string {
	s.t.Helper()
	at := schemas.At(time.Now())
	res, err := s.pub.Publish(context.Background(), publisher.Event{
		Name: event, IntegrationID: integrationID, OccurredAt: at, Data: publisher.SampleScan(event, at),
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return res.EventID
}

// delivery waits until the integration has a delivery for the event in one
// of the given states and returns it (with attempts).
func (s *stack) delivery(a *app, integrationID, eventID string, timeout time.Duration, states ...string) deliveryJSON {
	s.t.Helper()
	var found deliveryJSON
	testinfra.WaitFor(s.t, timeout, fmt.Sprintf("delivery of event %s in state %v", eventID, states), func() bool {
		var page struct{ Deliveries []deliveryJSON }
		a.api(s.t, "GET", "/v1/integrations/"+integrationID+"/deliveries?limit=100", nil, &page)
		for _, d := range page.Deliveries {
			if d.EventID != nil && *d.EventID == eventID && contains(states, d.State) {
				a.api(s.t, "GET", "/v1/deliveries/"+d.ID, nil, &found)
				return contains(states, found.State)
			}
		}
		return false
	})
	return found
}

type deliveryJSON struct {
	deliverylog.Delivery
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func itoa(n int) string { return fmt.Sprint(n) }
