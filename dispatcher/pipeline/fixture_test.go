package pipeline_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/blazelock/webhooks/dispatcher/deliver"
	"github.com/blazelock/webhooks/dispatcher/deliverylog"
	"github.com/blazelock/webhooks/dispatcher/flow"
	"github.com/blazelock/webhooks/dispatcher/pipeline"
	"github.com/blazelock/webhooks/dispatcher/retrylane"
	"github.com/blazelock/webhooks/dispatcher/schedule"
	"github.com/blazelock/webhooks/dispatcher/target"
	"github.com/blazelock/webhooks/dispatcher/webhooks"
	"github.com/blazelock/webhooks/internal/natsinfra"
	"github.com/blazelock/webhooks/internal/telemetry"
	"github.com/blazelock/webhooks/internal/testinfra"
	"github.com/blazelock/webhooks/schemas"
	"github.com/blazelock/webhooks/subscriber/receiver"
)

type fixture struct {
	js          jetstream.JetStream
	consumer    jetstream.Consumer
	pipe        *pipeline.Pipeline
	receiver    *receiver.Receiver
	integration string
	body        []byte
}

// newFixture wires a Pipeline as run.go does, over an embedded nats-server,
// redis-server and the reference receiver on an httptest server. adjust, if
// given, changes the dependencies before the Pipeline is built.
func newFixture(b testing.TB, adjust ...func(*pipeline.Deps)) *fixture {
	b.Helper()
	ctx := context.Background()
	js := testinfra.ProvisionedJetStream(b)
	webhooksKV, _ := js.KeyValue(ctx, natsinfra.WebhooksBucket)
	deliveriesKV, _ := js.KeyValue(ctx, natsinfra.DeliveriesBucket)
	opts, err := redis.ParseURL(testinfra.StartRedis(b).URL)
	if err != nil {
		b.Fatal(err)
	}
	opts.ContextTimeoutEnabled = true
	rdb := redis.NewClient(opts)
	b.Cleanup(func() { _ = rdb.Close() })
	logger := slog.New(slog.DiscardHandler)
	store, err := webhooks.New(webhooksKV, rdb, webhooks.Options{
		SecretKey: []byte(strings.Repeat("k", webhooks.SecretKeyLen)), RedisKeyPrefix: testinfra.KeyPrefix(b), Logger: logger,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(store.Close)

	rc, err := receiver.New(receiver.Config{DiscardArrivals: true})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(rc)
	b.Cleanup(func() { rc.Close(); srv.Close() })
	id := uuid.Must(uuid.NewV7()).String()
	cfg, _, err := store.Put(ctx, id, webhooks.Settings{Enabled: true, URL: srv.URL + "/webhooks/" + id, Events: schemas.EventNames})
	if err != nil {
		b.Fatal(err)
	}
	rc.SetSecret(id, cfg.Secret)
	// Wait until the store reads through Redis, as it does in steady state.
	testinfra.WaitFor(b, 10*time.Second, "config readable", func() bool {
		_, err := store.Get(ctx, id)
		return err == nil && store.Stats().CacheHits > 0
	})

	tel, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	metrics, err := pipeline.NewMetrics(tel.MeterProvider.Meter("bench"))
	if err != nil {
		b.Fatal(err)
	}
	deps := pipeline.Deps{
		Webhooks: store,
		Sender: deliver.New(deliver.Options{
			DialContext:     target.NewDialer(target.Policy{AllowPrivate: true}, 5*time.Second).DialContext,
			IsRefusedTarget: func(err error) bool { return errors.Is(err, target.ErrRefused) },
			AttemptTimeout:  15 * time.Second,
			UserAgent:       "Blazelock-Webhooks/bench",
			TracerProvider:  tel.TracerProvider,
		}),
		DeliveryLog:   deliverylog.New(deliveriesKV),
		RetryLane:     retrylane.New(js),
		RetryPolicy:   schedule.Default(),
		Metrics:       metrics,
		Logger:        logger,
		Tracer:        tel.TracerProvider.Tracer("bench"),
		Extractor:     tel.Propagator,
		MaxEventBytes: 256 << 10,
	}
	for _, f := range adjust {
		f(&deps)
	}
	pipe := pipeline.New(deps)
	cons, err := js.Consumer(ctx, natsinfra.EventsStream, natsinfra.EventsConsumer)
	if err != nil {
		b.Fatal(err)
	}
	return &fixture{js: js, consumer: cons, pipe: pipe, receiver: rc, integration: id, body: benchBody(b, id)}
}

// noSlot stands in for the flow scheduler's slot where no scheduler runs.
type noSlot struct{}

func (noSlot) Sending()            {}
func (noSlot) Done(flow.Outcome)   {}
func (noSlot) Held() time.Duration { return 0 }

// publish stores n events (outside the timer) with async publishes.
func (f *fixture) publish(b testing.TB, n int) {
	b.Helper()
	subject := natsinfra.EventSubject(f.integration, schemas.EventCompleted)
	for i := range n {
		msg := &nats.Msg{Subject: subject, Data: f.body, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, uuid.Must(uuid.NewV7()).String())
		if _, err := f.js.PublishMsgAsync(msg); err != nil {
			b.Fatalf("publish %d: %v", i, err)
		}
	}
	select {
	case <-f.js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publishes not acknowledged within a minute")
	}
}

// benchBody is a schema-valid file_scan.completed envelope of exactly 1 KiB.
func benchBody(tb testing.TB, integrationID string) []byte {
	tb.Helper()
	build := func(pad int) []byte {
		return []byte(`{"event":"file_scan.completed","integration_id":"` + integrationID + `","occurred_at":"2026-03-09T12:34:56.000Z",` +
			`"data":{"id":"019583d8-b2e4-7b8d-9d1f-6f4cb3d0b6f1","external_reference_id":"invoice-4711","status":"completed",` +
			`"execution_mode":"async","file_name":"` + strings.Repeat("x", pad) + `invoice.pdf","file_size":245761,` +
			`"submitted_at":"2026-03-09T12:34:56.000Z","file_type":"application/pdf","file_hash":{"md5":"d41d8cd98f00b204e9800998ecf8427e",` +
			`"sha1":"da39a3ee5e6b4b0d3255bfef95601890afd80709","sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},` +
			`"result":{"safe":true,"detailed":"clean","findings":[]},"completed_at":"2026-03-09T12:34:58.000Z","scan_duration":1840}}`)
	}
	body := build(0)
	body = build(1024 - len(body))
	if len(body) != 1024 {
		tb.Fatalf("body is %d bytes", len(body))
	}
	if err := schemas.Validate(body); err != nil {
		tb.Fatal(err)
	}
	return body
}
