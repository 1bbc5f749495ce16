package reliability

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/blazelock/webhooks/dispatcher/deliverylog"
	"github.com/blazelock/webhooks/internal/natsinfra"
	"github.com/blazelock/webhooks/internal/testinfra"
	"github.com/blazelock/webhooks/schemas"
	"github.com/blazelock/webhooks/subscriber/receiver"
)

// TestDeliveryLogRefusesWrites: the delivery log's storage refuses writes
// for a few seconds (its KV stream is full: a storage quota, a full disk
// or a lost stream leader look the same to the dispatcher) while first
// attempts succeed and fail. The outcome of each attempt is retried into
// the log until it takes writes again (within the dispatcher's store
// retry budget, 30 s), so once it does, every delivered event is listed
// as succeeded and every dead one as dead (DESIGN: dead deliveries are
// kept until replayed). Nothing is sent twice: delivered events arrive
// once, and the failing endpoint sees exactly its 2 attempts per event
// (the second is scheduled only once the first is recorded).
func TestDeliveryLogRefusesWrites(t *testing.T) {
	t.Parallel()
	c := newCluster(t, map[string]string{"DISPATCHER_RETRY_SCHEDULE": "1s"})
	a := c.startDispatcher("a", nil)
	okEp := newEndpoint(t, receiver.Faults{})
	deadEp := newEndpoint(t, receiver.Faults{Status: 500})
	ok, dead := c.configure(a, okEp), c.configure(a, deadEp)

	// Fill the log's stream to its (new) limit: with DiscardNew, every
	// further write is refused.
	ctx := context.Background()
	stream, err := c.js.Stream(ctx, "KV_"+natsinfra.DeliveriesBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.js.Publish(ctx, "$KV."+natsinfra.DeliveriesBucket+".filler.x", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := info.Config
	if cfg.Discard != jetstream.DiscardNew {
		t.Fatalf("the delivery log's stream discards %v, the test needs DiscardNew", cfg.Discard)
	}
	limit := func(maxMsgs int64) {
		t.Helper()
		cfg.MaxMsgs = maxMsgs
		if _, err := c.js.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	limit(int64(info.State.Msgs))
	const refusal = 3 * time.Second
	full := time.Now()
	var sent []sentEvent
	for range 3 {
		sent = append(sent, c.publish(ok, schemas.EventCompleted), c.publish(dead, schemas.EventFailed))
	}
	testinfra.WaitFor(t, 20*time.Second, "first attempts while the log refuses writes", func() bool {
		return okEp.Stats().Accepted == 3 && len(deadEp.Deliveries()) == 3
	})
	time.Sleep(time.Until(full.Add(refusal)))
	if n := len(deadEp.Deliveries()); n != 3 {
		t.Errorf("the failing endpoint saw %d requests while the log refused writes, want 3 (second attempts wait for the first to be recorded)", n)
	}
	limit(-1)

	want, by := expectAll(ofIntegration(sent, ok), succeeded)
	for _, ev := range ofIntegration(sent, dead) {
		want[ev.ID] = outcome{State: deliverylog.StateDead, Reason: "http_5xx"}
		by[dead] = append(by[dead], ev.ID)
	}
	c.awaitOutcomes(a, want, by, time.Minute)
	if dups := checkArrivals(t, okEp, ofIntegration(sent, ok)); dups != 0 {
		t.Errorf("%d duplicates of delivered events, want none", dups)
	}
	if n := len(deadEp.Deliveries()); n != 6 {
		t.Errorf("the failing endpoint saw %d requests, want 6 (2 attempts for each of 3 events, none repeated)", n)
	}
	t.Logf("the log refused writes for %s: 3 delivered events listed as succeeded, 3 dead ones as dead, no attempt repeated", refusal)
}
