package reliability

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/blazelock/webhooks/internal/testinfra"
	"github.com/blazelock/webhooks/subscriber/receiver"
)

// TestRedisSentinelFailover: the cache behind Redis Sentinel (a primary,
// a replica and one Sentinel, each a redis-server process; REDIS_URL in
// its Sentinel form). Two dispatchers deliver a steady load. Then, in the
// worst order for the cache:
//
//  1. the replica stops receiving the primary's writes (its link stalls),
//  2. X's URL is changed and Y's secret rotated through the API: the
//     primary's cache holds the new settings, the replica the old ones,
//     in the same cache generation,
//  3. the primary is killed (SIGKILL) and Sentinel promotes the replica.
//
// Deliveries must continue throughout (from KV while no primary answers),
// and no attempt may use the old settings afterwards: the promoted
// replica's entries are never served (it is another Redis process, so the
// dispatchers move the cache generation before using it; see
// dispatcher/webhooks). X's old endpoint must receive nothing after the
// change, and every event must be delivered once, verified with the
// secret its endpoint knows. No NATS fault, so no duplicate (bound 0).
func TestRedisSentinelFailover(t *testing.T) {
	t.Parallel()
	rs := testinfra.StartRedisSentinel(t)
	c := newCluster(t, map[string]string{"REDIS_URL": rs.URL})
	a := c.startDispatcher("a", nil)
	b := c.startDispatcher("b", nil)
	ctx := context.Background()
	primary, replica := rs.Client(rs.Primary), rs.Client(rs.Replica)

	steadyEp := newEndpoint(t, receiver.Faults{})
	steady := []string{c.configure(a, steadyEp), c.configure(b, steadyEp)}
	xOld, xNew := newEndpoint(t, receiver.Faults{}), newEndpoint(t, receiver.Faults{})
	x := c.configure(a, xOld)
	yEp := newEndpoint(t, receiver.Faults{})
	y := c.configure(b, yEp)

	cc := newConfigChange(t, c, x, xOld, xNew, y, yEp)
	load := c.startLoad(steady, scaled(400, 1500), 50*time.Millisecond)
	testinfra.WaitFor(t, 60*time.Second, "40 steady events delivered", func() bool { return steadyEp.Stats().Accepted >= 40 })

	// Warm the cache through the primary, and let the replica copy it.
	cc.burstBoth(5)
	cc.settle("the warm-up bursts delivered")
	if n, err := primary.DBSize(ctx).Result(); err != nil || n == 0 {
		t.Fatalf("the primary holds %d keys (%v): the dispatchers do not use the cache through Sentinel", n, err)
	}
	if err := primary.Wait(ctx, 1, 5*time.Second).Err(); err != nil {
		t.Fatal(err)
	}

	// 1 and 2: the replica misses the changes.
	rs.CutReplication()
	cc.change(a, b)
	if old, current := cachedURL(t, replica, x), cachedURL(t, primary, x); !strings.Contains(old, xOld.base()) || strings.Contains(old, xNew.base()) || !strings.Contains(current, xNew.base()) {
		t.Fatalf("the replica should cache X's old URL and the primary the new one; replica %q, primary %q: the test would prove nothing", old, current)
	}
	cc.burstBoth(3)
	cc.settle("the bursts after the change delivered")

	// 3: the primary dies; Sentinel promotes the replica.
	killedAt := time.Now()
	rs.Primary.Kill()
	atKill := load.count()
	cc.burstBoth(3)
	testinfra.WaitFor(t, 60*time.Second, "Sentinel to promote the replica", func() bool { return rs.Master() == rs.Replica.Addr })
	switched := time.Since(killedAt)
	duringFailover := deliveredBefore(load, atKill, steadyEp, killedAt.Add(switched))
	if duringFailover == 0 {
		t.Errorf("no steady event published after the kill was delivered before Sentinel promoted the replica: deliveries stopped with the primary")
	}
	cc.settle("the bursts published while the primary was down delivered")
	// The dispatchers read through the promoted replica again (only they
	// call EVALSHA).
	callsAtSwitch := evalshaCalls(t, replica)
	testinfra.WaitFor(t, 60*time.Second, "the dispatchers to read the cache on the promoted replica", func() bool {
		cc.burstBoth(1)
		time.Sleep(200 * time.Millisecond)
		return evalshaCalls(t, replica) >= callsAtSwitch+20
	})
	cc.burstBoth(5)
	cc.settle("the bursts after the failover delivered")

	sent := load.wait(t)
	dups := cc.finish(a, steadyEp, sent, nil)
	t.Logf("Sentinel promoted the replica %s after the kill; %d steady events published after the kill were delivered before that (from KV); longest pause in the steady deliveries from the kill on %s; %d steady events (%d before the kill) and %d in bursts; %d duplicates (bound 0)",
		switched.Round(time.Millisecond), duringFailover, longestPause(killedAt, killedAt.Add(time.Minute), steadyEp).Round(time.Millisecond),
		len(sent), atKill, len(cc.want)-len(sent), dups)
	if dups != 0 {
		t.Errorf("%d duplicates, want none: a Redis failover must not make JetStream redeliver", dups)
	}
}

// evalshaCalls is how many EVALSHA calls a Redis has run.
func evalshaCalls(t *testing.T, r *redis.Client) int {
	t.Helper()
	info, err := r.Info(context.Background(), "commandstats").Result()
	if err != nil {
		return 0
	}
	_, rest, ok := strings.Cut(info, "cmdstat_evalsha:calls=")
	if !ok {
		return 0
	}
	n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
	return n
}

// cachedURL returns every value one Redis caches for integration id, in
// any generation ("" when none): the URL is stored as plain bytes.
func cachedURL(t *testing.T, r *redis.Client, id string) string {
	t.Helper()
	ctx := context.Background()
	keys, err := r.Keys(ctx, "*:"+id).Result()
	if err != nil {
		t.Fatalf("redis keys: %v", err)
	}
	var values []string
	for _, k := range keys {
		if v, err := r.Get(ctx, k).Result(); err == nil {
			values = append(values, v)
		}
	}
	return strings.Join(values, "\n")
}
