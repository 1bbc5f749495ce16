package retrylane_test

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/blazelock/webhooks/dispatcher/delivery"
	"github.com/blazelock/webhooks/dispatcher/retrylane"
	"github.com/blazelock/webhooks/internal/natsinfra"
	"github.com/blazelock/webhooks/internal/testinfra"
)

func setup(t *testing.T) (jetstream.JetStream, jetstream.Consumer) {
	t.Helper()
	ctx := context.Background()
	js := testinfra.ProvisionedJetStream(t)
	cons, err := js.Consumer(ctx, natsinfra.RetriesStream, natsinfra.RetriesConsumer)
	if err != nil {
		t.Fatal(err)
	}
	return js, cons
}

func job() delivery.Job {
	return delivery.Job{
		DeliveryID: "0195a0c1-0000-7000-8000-0000000000aa", EventID: "0195a0c1-0000-7000-8000-0000000000bb",
		IntegrationID: "0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01", Event: "file_scan.completed",
		Attempt: 2, Series: 1, EventSequence: 42, CreatedAt: time.Date(2026, 3, 9, 12, 0, 0, 123456789, time.UTC),
		Body:  []byte(`{"event":"file_scan.completed"}`),
		Trace: nats.Header{"traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}},
	}
}

func TestScheduledJobIsDueNoEarlierThanAskedAndDecodes(t *testing.T) {
	js, cons := setup(t)
	lane := retrylane.New(js)
	want := job()
	at := time.Now().Add(1500 * time.Millisecond)
	if err := lane.Schedule(context.Background(), want, at); err != nil {
		t.Fatal(err)
	}
	// A repeat of the same job (a crash between scheduling and acking) is dropped.
	if err := lane.Schedule(context.Background(), want, at); err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if arrived := time.Now(); arrived.Before(at) {
		t.Fatalf("due %s before its time %s", arrived.Format(time.StampMilli), at.Format(time.StampMilli))
	}
	got, err := retrylane.Decode(msg)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded job differs:\n got %+v\nwant %+v", got, want)
	}
	_ = msg.Ack()
	if _, err := cons.Next(jetstream.FetchMaxWait(2500 * time.Millisecond)); err == nil {
		t.Fatal("the duplicate schedule fired too")
	}
}

func TestEnqueueIsDueAtOnce(t *testing.T) {
	js, cons := setup(t)
	j := job()
	j.Series, j.Attempt = 2, 1
	if err := retrylane.New(js).Enqueue(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := retrylane.Decode(msg); err != nil || got.Series != 2 || got.Attempt != 1 {
		t.Fatalf("decoded %+v, %v", got, err)
	}
}

func TestDecodeRefusesBadHeaders(t *testing.T) {
	js, cons := setup(t)
	msg := &nats.Msg{Subject: natsinfra.RetriesDuePrefix + "x", Header: nats.Header{"Blazelock-Attempt": {"zero"}}}
	if _, err := js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	_, err = retrylane.Decode(m)
	if err == nil {
		t.Fatal("bad headers accepted")
	}
	for _, want := range []string{"Blazelock-Attempt", "Blazelock-Series", "missing delivery"} {
		if !contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
