package deliverylog_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/blazelock/webhooks/dispatcher/deliverylog"
	"github.com/blazelock/webhooks/internal/natsinfra"
	"github.com/blazelock/webhooks/internal/testinfra"
)

func TestDeliveryIDIsDeterministicTimeOrderedUUIDv7(t *testing.T) {
	at := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	a := deliverylog.DeliveryID("S", 1, at)
	if a != deliverylog.DeliveryID("S", 1, at) {
		t.Fatal("same message, different ids")
	}
	if a == deliverylog.DeliveryID("S", 2, at) || a == deliverylog.DeliveryID("T", 1, at) {
		t.Fatal("different messages, same id")
	}
	u := uuid.MustParse(a)
	if u.Version() != 7 || u.Variant() != uuid.RFC4122 {
		t.Fatalf("%s is not a UUIDv7", a)
	}
	sec, nsec := u.Time().UnixTime()
	if got := time.Unix(sec, nsec).UTC(); !got.Equal(at) {
		t.Fatalf("id time %s, want %s", got, at)
	}
	if later := deliverylog.DeliveryID("S", 0, at.Add(time.Millisecond)); later <= a {
		t.Fatal("ids do not sort by time")
	}
}

func TestListNewestFirstWithStateFilterAndCursor(t *testing.T) {
	ctx := context.Background()
	js := testinfra.ProvisionedJetStream(t)
	kv, _ := js.KeyValue(ctx, natsinfra.DeliveriesBucket)
	log := deliverylog.New(kv)
	integration, other := uuid.NewString(), uuid.NewString()
	base := time.Now().UTC()
	var ids []string
	for i := range 7 {
		state := deliverylog.StateSucceeded
		if i%2 == 1 {
			state = deliverylog.StateDead
		}
		d := &deliverylog.Delivery{ID: deliverylog.DeliveryID("S", uint64(i), base.Add(time.Duration(i)*time.Second)),
			IntegrationID: integration, State: state, CreatedAt: base}
		if err := log.Save(ctx, d); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, d.ID)
	}
	if err := log.Save(ctx, &deliverylog.Delivery{ID: deliverylog.DeliveryID("S", 99, base), IntegrationID: other, State: deliverylog.StateDead}); err != nil {
		t.Fatal(err)
	}

	page, cursor, err := log.List(ctx, integration, deliverylog.ListOptions{Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got := idsOf(page); fmt.Sprint(got) != fmt.Sprint([]string{ids[6], ids[5], ids[4]}) || cursor != ids[4] {
		t.Fatalf("first page %v cursor %s", got, cursor)
	}
	page, cursor, _ = log.List(ctx, integration, deliverylog.ListOptions{Limit: 3, Cursor: cursor})
	if got := idsOf(page); fmt.Sprint(got) != fmt.Sprint([]string{ids[3], ids[2], ids[1]}) || cursor != ids[1] {
		t.Fatalf("second page %v cursor %s", got, cursor)
	}
	page, cursor, _ = log.List(ctx, integration, deliverylog.ListOptions{Limit: 3, Cursor: cursor})
	if got := idsOf(page); fmt.Sprint(got) != fmt.Sprint([]string{ids[0]}) || cursor != "" {
		t.Fatalf("last page %v cursor %q", got, cursor)
	}
	dead, _, _ := log.List(ctx, integration, deliverylog.ListOptions{Limit: 10, State: deliverylog.StateDead})
	if got := idsOf(dead); fmt.Sprint(got) != fmt.Sprint([]string{ids[5], ids[3], ids[1]}) {
		t.Fatalf("dead filter %v", got)
	}

	got, err := log.Get(ctx, ids[2])
	if err != nil || got.IntegrationID != integration {
		t.Fatalf("get by id: %v %+v", err, got)
	}
	if _, err := log.Get(ctx, uuid.NewString()); err != deliverylog.ErrNotFound {
		t.Fatalf("unknown id: %v", err)
	}
	if _, err := log.Get(ctx, "not-a-uuid.>"); err != deliverylog.ErrNotFound {
		t.Fatalf("malformed id: %v", err)
	}
}

func idsOf(ds []*deliverylog.Delivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}
