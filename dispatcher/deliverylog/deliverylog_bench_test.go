package deliverylog_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/blazelock/webhooks/dispatcher/deliverylog"
	"github.com/blazelock/webhooks/internal/natsinfra"
	"github.com/blazelock/webhooks/internal/testinfra"
)

// BenchmarkSave is the delivery-log write of every attempt: JSON encoding
// and a KV Put (a JetStream publish and its acknowledgement) on an embedded
// nats-server with file storage, as the dispatcher runs by default.
// "serial" is one round trip at a time (the latency an attempt waits for);
// "parallel" runs 32 writers per CPU, as the dispatcher's workers do.
func BenchmarkSave(b *testing.B) {
	ctx := context.Background()
	js := testinfra.ProvisionedJetStream(b)
	kv, err := js.KeyValue(ctx, natsinfra.DeliveriesBucket)
	if err != nil {
		b.Fatal(err)
	}
	log := deliverylog.New(kv)
	integration := uuid.NewString()
	var seq atomic.Uint64
	record := func() *deliverylog.Delivery {
		now := time.Now().UTC()
		id, ev, status := deliverylog.DeliveryID("BLAZELOCK_EVENTS", seq.Add(1), now), uuid.NewString(), 200
		name, excerpt := "file_scan.completed", `{"status":"accepted"}`
		return &deliverylog.Delivery{ID: id, EventID: &ev, Event: &name, IntegrationID: integration,
			State: deliverylog.StateSucceeded, AttemptCount: 1, LastStatusCode: &status, CreatedAt: now, UpdatedAt: now,
			Attempts:      []deliverylog.Attempt{{Number: 1, StartedAt: now, DurationMillis: 1, StatusCode: &status, ResponseExcerpt: &excerpt}},
			EventSequence: seq.Load(), Series: 1, SeriesAttempts: 1}
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := log.Save(ctx, record()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := log.Save(ctx, record()); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	// The last record must read back as written.
	d := record()
	if err := log.Save(ctx, d); err != nil {
		b.Fatal(err)
	}
	got, err := log.Load(ctx, integration, d.ID)
	if err != nil || got.State != deliverylog.StateSucceeded || !strings.Contains(*got.Attempts[0].ResponseExcerpt, "accepted") {
		b.Fatalf("read back %+v, %v", got, err)
	}
}
