package reliability

import (
	"context"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/blazelock/webhooks/dispatcher/deliverylog"
	"github.com/blazelock/webhooks/internal/testinfra"
	"github.com/blazelock/webhooks/schemas"
	"github.com/blazelock/webhooks/subscriber/receiver"
)

// TestRedisOutageRestartAndFlush: Redis, the config cache every attempt
// reads, goes through every kind of trouble while two dispatchers deliver
// a steady load:
//
//  1. hung (SIGSTOP) for a few seconds: calls time out;
//  2. killed and kept down for a minute: deliveries must continue from
//     JetStream KV meanwhile, and three config changes made through the
//     API during the outage (URL change, secret rotation, disable) must
//     apply at once, on both dispatchers;
//  3. restarted from its append-only file, so the entries it held before
//     the outage (the old URL, the old secret, enabled) come back: they
//     must never be used;
//  4. flushed.
//
// Every event must end as its integration's configuration said when it
// was published: delivered to the right URL, signed with the current
// secret, or skipped because the webhook was disabled. No duplicates: no
// process dies and no acknowledgement is lost, so nothing is redelivered
// (bound 0).
func TestRedisOutageRestartAndFlush(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil)
	a := c.startDispatcher("a", nil)
	b := c.startDispatcher("b", nil)
	rdb := c.redis.Client(t)
	ctx := context.Background()

	steadyEp := newEndpoint(t, receiver.Faults{})
	steady := []string{c.configure(a, steadyEp), c.configure(b, steadyEp)}
	xOld, xNew := newEndpoint(t, receiver.Faults{}), newEndpoint(t, receiver.Faults{})
	x := c.configure(a, xOld) // its URL changes during the outage
	yEp := newEndpoint(t, receiver.Faults{})
	y := c.configure(a, yEp) // its secret is rotated during the outage
	zEp := newEndpoint(t, receiver.Faults{})
	z := c.configure(a, zEp) // it is disabled during the outage

	want := map[string]outcome{}
	by := map[string][]string{}
	expect := func(evs []sentEvent, o outcome) []sentEvent {
		for _, ev := range evs {
			want[ev.ID] = o
			by[ev.Integration] = append(by[ev.Integration], ev.ID)
		}
		return evs
	}
	burst := func(id string, n int) []sentEvent {
		var out []sentEvent
		for i := range n {
			out = append(out, c.publish(id, schemas.EventNames[i%3]))
		}
		return out
	}
	var toXOld, toXNew, toY, toZ []sentEvent
	// settle waits until the bursts so far have ended, so that a config
	// change never races an attempt of an earlier burst.
	settle := func(what string) {
		t.Helper()
		testinfra.WaitFor(t, 60*time.Second, what, func() bool {
			return xOld.Stats().Accepted == int64(len(toXOld)) && xNew.Stats().Accepted == int64(len(toXNew)) &&
				yEp.Stats().Accepted == int64(len(toY)) && zEp.Stats().Accepted == int64(len(toZ))
		})
	}

	load := c.startLoad(steady, scaled(700, 2000), scaled(100*time.Millisecond, 50*time.Millisecond))

	// Warm the cache: every integration is read through Redis at least once.
	toXOld = expect(burst(x, 5), succeeded)
	toY = expect(burst(y, 5), succeeded)
	toZ = expect(burst(z, 5), succeeded)
	settle("the warm-up bursts delivered")
	if n, err := rdb.DBSize(ctx).Result(); err != nil || n == 0 {
		t.Fatalf("Redis holds %d keys (%v) after the warm-up: the dispatchers do not use the cache, the test would prove nothing", n, err)
	}

	// 1. Hung.
	c.redis.Signal(syscall.SIGSTOP)
	hungAt := load.count()
	time.Sleep(scaled(5*time.Second, 20*time.Second))
	testinfra.WaitFor(t, 30*time.Second, "events published while Redis hung delivered while it still hangs", func() bool {
		return steadyEp.Stats().Accepted >= int64(load.count()-5) && load.count() > hungAt
	})
	c.redis.Signal(syscall.SIGCONT)

	// 2. Down for a minute, with config changes.
	c.redis.Stop()
	outage := time.Now()
	downAt := load.count()
	xNew.SetSecret(x, c.secret(b, x)) // a URL change keeps the secret
	c.putWebhook(a, x, true, xNew.base()+"/webhooks/"+x, schemas.EventNames)
	var rotated struct{ Secret string }
	if code := b.api("POST", "/v1/integrations/"+y+"/webhook/secret/rotate", nil, &rotated); code != http.StatusOK {
		t.Fatalf("rotate during the Redis outage: %d", code)
	}
	yEp.SetSecret(y, rotated.Secret)
	c.putWebhook(b, z, false, zEp.base()+"/webhooks/"+z, schemas.EventNames)
	toXNew = append(toXNew, expect(burst(x, 5), succeeded)...)
	toY = append(toY, expect(burst(y, 5), succeeded)...)
	expect(burst(z, 5), outcome{State: deliverylog.StateSkipped, Reason: "disabled"})
	settle("the bursts published during the outage delivered")
	time.Sleep(time.Until(outage.Add(scaled(50*time.Second, 5*time.Minute))))
	duringOutage := load.count()
	testinfra.WaitFor(t, 10*time.Second, "steady events published during the outage delivered before Redis is back", func() bool {
		return steadyEp.Stats().Accepted >= int64(duringOutage-5)
	})
	time.Sleep(time.Until(outage.Add(scaled(60*time.Second, 5*time.Minute+10*time.Second))))

	// 3. Back, with what it held before the outage.
	c.redis.Start()
	if n, err := rdb.DBSize(ctx).Result(); err != nil || n == 0 {
		t.Fatalf("Redis restarted with %d keys (%v): the entries from before the outage did not come back, the test would prove less", n, err)
	}
	t.Logf("Redis was down for %s; %d steady events were published meanwhile", time.Since(outage).Round(time.Second), load.count()-downAt)
	toXNew = append(toXNew, expect(burst(x, 5), succeeded)...)
	toY = append(toY, expect(burst(y, 5), succeeded)...)
	expect(burst(z, 5), outcome{State: deliverylog.StateSkipped, Reason: "disabled"})
	settle("the bursts published after the restart delivered")

	// 4. Flushed.
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	toXNew = append(toXNew, expect(burst(x, 5), succeeded)...)
	toY = append(toY, expect(burst(y, 5), succeeded)...)
	expect(burst(z, 5), outcome{State: deliverylog.StateSkipped, Reason: "disabled"})
	settle("the bursts published after the flush delivered")
	// The cache is filled again by lookups: keep events coming (the steady
	// load may be over) until Redis holds entries.
	var refill []sentEvent
	testinfra.WaitFor(t, 30*time.Second, "the cache to be used again after the flush", func() bool {
		refill = append(refill, c.publish(steady[0], schemas.EventCompleted))
		time.Sleep(200 * time.Millisecond)
		n, err := rdb.DBSize(ctx).Result()
		return err == nil && n > 0
	})

	sent := expect(append(load.wait(t), refill...), succeeded)
	c.awaitOutcomes(a, want, by, 2*time.Minute)
	dups := checkArrivals(t, steadyEp, sent) + checkArrivals(t, xOld, toXOld) + checkArrivals(t, xNew, toXNew) +
		checkArrivals(t, yEp, toY) + checkArrivals(t, zEp, toZ)
	t.Logf("%d steady events and %d bursts delivered or skipped; %d duplicates (bound 0)", len(sent), len(want)-len(sent), dups)
	if dups != 0 {
		t.Errorf("%d duplicates, want none: nothing in a Redis outage should make JetStream redeliver", dups)
	}
	if n := len(zEp.Deliveries()); n != 5 {
		t.Errorf("the disabled webhook received %d requests, want only the 5 from before it was disabled", n)
	}
}
