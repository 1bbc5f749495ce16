package reliability

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/blazelock/webhooks/internal/harness"
	"github.com/blazelock/webhooks/internal/natsinfra"
	"github.com/blazelock/webhooks/internal/testinfra"
	"github.com/blazelock/webhooks/subscriber/receiver"
)

// TestRedisClusterFailover: TestRedisSentinelFailover's scenario on a
// Redis Cluster of three primaries with a replica each (six redis-server
// processes; REDIS_URL in go-redis's cluster form). Two dispatchers
// deliver a steady load over integrations spread across the shards. X and
// Y are chosen so that their cache entries live on the shard that will
// fail, the one holding a steady integration's entry too. Then, in the
// worst order for the cache:
//
//  1. that shard's replica stops applying its primary's writes
//     (StallReplication),
//  2. X's URL is changed and Y's secret rotated through the API: the
//     primary caches the new settings, the replica the old ones, under
//     the same generation's keys (checked, and the generation did not
//     move),
//  3. the primary is killed (SIGKILL) while events keep flowing, and the
//     cluster promotes the replica.
//
// Deliveries must continue throughout (from KV while the shard has no
// primary), and no attempt may use the old settings afterwards: the
// promoted replica never had the scripts, so its NOSCRIPT makes the
// dispatchers move the generation before they use it (the generation
// must end up recording the promoted node, not the dead one). They must
// then read the cache through the promoted node again (an integration
// chosen to live there under the new generation). X's old endpoint must
// receive nothing after the change, and every event must be delivered
// once, verified with the secret its endpoint knows. No NATS fault, so no
// duplicate (bound 0: the cache is never on the acknowledgement path).
//
// Timeouts: the cluster fails over 3-5 s after the kill (node timeout
// 2 s, then an election); 30 s leaves a loaded 2-core machine six times
// that. The generation must move within 30 s of the promotion too: the
// dispatchers reload the slot map after a Redis error and retry Redis
// every second, so it takes seconds, and go-redis's own periodic reload
// (a minute) cannot make the test pass. Deliveries get 60 s, as in the
// Sentinel test.
func TestRedisClusterFailover(t *testing.T) {
	t.Parallel()
	rc := testinfra.StartRedisCluster(t, testinfra.RedisClusterOptions{Replicas: true})
	c := newCluster(t, map[string]string{"REDIS_URL": rc.URL})
	a := c.startDispatcher("a", nil)
	b := c.startDispatcher("b", nil)

	steadyEp := newEndpoint(t, receiver.Faults{})
	steady := make([]string, 6)
	for i := range steady {
		steady[i] = c.configure([]*dispatcher{a, b}[i%2], steadyEp)
	}
	// The load runs until the test halts it after the failover, and at
	// least this many events.
	minSteady := scaled(400, 1500)
	load := c.startLoad(steady, 100_000, 50*time.Millisecond)
	testinfra.WaitFor(t, 60*time.Second, "40 steady events delivered", func() bool { return steadyEp.Stats().Accepted >= 40 })

	// The shard to fail: the one holding steady[0]'s entry.
	gen := cacheGeneration(t, c)
	primary := rc.NodeForKey(gen.keyPrefix() + steady[0])
	replica := rc.ReplicaOf(primary)
	primaryClient, replicaClient := rc.ShardClient(primary), rc.ReplicaClient(replica)
	// entry is what a node holds under an integration's key in the
	// generation of the change (the URL is stored as plain bytes).
	entry := func(node *redis.Client, id string) string {
		v, err := node.Get(context.Background(), gen.keyPrefix()+id).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatalf("GET %s: %v", gen.keyPrefix()+id, err)
		}
		return v
	}
	if v := entry(primaryClient, steady[0]); !strings.Contains(v, steadyEp.base()) {
		t.Fatalf("%s does not cache steady[0] (%q): the dispatchers do not use the cluster as the test assumes", primary.Name, v)
	}

	xOld, xNew := newEndpoint(t, receiver.Faults{}), newEndpoint(t, receiver.Faults{})
	x := c.configureID(a, xOld, idOnShard(t, rc, gen.keyPrefix(), primary))
	yEp := newEndpoint(t, receiver.Faults{})
	y := c.configureID(b, yEp, idOnShard(t, rc, gen.keyPrefix(), primary))

	cc := newConfigChange(t, c, x, xOld, xNew, y, yEp)

	// Warm X's and Y's entries on the primary, and let the replica copy
	// them.
	cc.burstBoth(5)
	cc.settle("the warm-up bursts delivered")
	var oldX, oldY string
	testinfra.WaitFor(t, 30*time.Second, "the replica to hold X's and Y's entries", func() bool {
		oldX, oldY = entry(primaryClient, x), entry(primaryClient, y)
		return strings.Contains(oldX, xOld.base()) && oldY != "" && entry(replicaClient, x) == oldX && entry(replicaClient, y) == oldY
	})

	// 1 and 2: the replica misses the changes.
	rc.StallReplication(replica)
	cc.change(a, b)
	if g := cacheGeneration(t, c); g.Token != gen.Token {
		t.Fatalf("the change moved the cache generation (%s): the test needs it written into the entries the replica misses", g.Reason)
	}
	if stale, current := entry(replicaClient, x), entry(primaryClient, x); stale != oldX || !strings.Contains(current, xNew.base()) {
		t.Fatalf("the replica should cache X's old URL and the primary the new one; replica %q, primary %q: the test would prove nothing", stale, current)
	}
	if stale, current := entry(replicaClient, y), entry(primaryClient, y); stale != oldY || current == oldY {
		t.Fatalf("the replica should cache Y's entry from before the rotation and the primary a newer one: the test would prove nothing")
	}
	cc.burstBoth(3)
	cc.settle("the bursts after the change delivered")

	// 3: the primary dies under load; the cluster promotes the replica.
	killedAt := time.Now()
	atKill := load.count()
	rc.KillPrimary(primary)
	rc.ResumeReplication(replica) // it has discarded what it held back
	cc.burstBoth(3)
	rc.WaitPromoted(replica)
	promoted := time.Since(killedAt)
	// Read once the cluster is ok again: a node that counts a shard as
	// failed refuses reads (CLUSTERDOWN).
	if v := entry(replicaClient, x); v != oldX {
		t.Fatalf("the promoted replica does not hold X's old entry (%q): the test would prove nothing", v)
	}
	duringFailover := deliveredBefore(load, atKill, steadyEp, killedAt.Add(promoted))
	if duringFailover == 0 {
		t.Errorf("no steady event published after the kill was delivered before the cluster promoted the replica: deliveries stopped with the primary")
	}
	cc.settle("the bursts published while the shard had no primary delivered")

	// The dispatchers notice the new process and move the generation
	// before they use the promoted node.
	var moved cacheGen
	testinfra.WaitFor(t, 30*time.Second, "the dispatchers to move the cache generation to the promoted primary", func() bool {
		moved = cacheGeneration(t, c)
		return moved.Token != gen.Token && strings.Contains(moved.RedisRunID, replica.Addr+"=")
	})
	genMoved := time.Since(killedAt)
	if strings.Contains(moved.RedisRunID, primary.Addr+"=") {
		t.Fatalf("the new generation records the dead primary %s: %q", primary.Addr, moved.RedisRunID)
	}
	// They read the cache through the promoted node again: Z's entry
	// lives there in the current generation. A dispatcher whose last
	// Redis call failed (its slot map still named the dead primary) moves
	// the generation when Z is configured, for a second after the error:
	// it cannot confirm the write. Z's entry may then live elsewhere, so
	// another Z is chosen, until a change is confirmed in the cache
	// without moving the generation.
	zEp := newEndpoint(t, receiver.Faults{})
	var z string
	var lastTry time.Time
	testinfra.WaitFor(t, 30*time.Second, "a change after the failover confirmed in the cache without moving the generation", func() bool {
		if time.Since(lastTry) < 500*time.Millisecond {
			return false
		}
		lastTry = time.Now()
		g := cacheGeneration(t, c)
		z = c.configureID(a, zEp, idOnShard(t, rc, g.keyPrefix(), replica))
		return cacheGeneration(t, c).Token == g.Token
	})
	changesConfirmed := time.Since(killedAt)
	var toZ []sentEvent
	calls := evalshaCalls(t, replicaClient)
	last := time.Time{}
	testinfra.WaitFor(t, 60*time.Second, "the dispatchers to read the cache on the promoted replica", func() bool {
		if time.Since(last) >= 200*time.Millisecond {
			toZ = append(toZ, cc.burst(z, 1)...)
			last = time.Now()
		}
		return strings.Contains(cachedURL(t, replicaClient, z), zEp.base()) && evalshaCalls(t, replicaClient) >= calls+20
	})
	cacheBack := time.Since(killedAt)
	if v := entry(replicaClient, x); v != oldX {
		t.Fatalf("X's stale entry is gone from the promoted node (%q): the test would prove nothing", v)
	}
	cc.burstBoth(5)
	cc.settle("the bursts after the failover delivered")

	testinfra.WaitFor(t, 5*time.Minute, "the steady load to reach its count", func() bool { return load.count() >= minSteady })
	load.halt()
	sent := load.wait(t)
	dups := cc.finish(a, steadyEp, sent, map[*endpoint][]sentEvent{zEp: toZ})
	t.Logf("the cluster promoted %s %s after the kill of %s; %d steady events published after the kill were delivered before that (from KV); the generation moved %s, a change was confirmed in the cache without moving it %s and reads hit the promoted node %s after the kill; longest pause in the steady deliveries from the kill on %s (deliveries per second from the kill: %s); %d steady events (%d before the kill) and %d in bursts; %d duplicates (bound 0)",
		replica.Name, promoted.Round(time.Millisecond), primary.Name, duringFailover, genMoved.Round(time.Millisecond), changesConfirmed.Round(time.Millisecond), cacheBack.Round(time.Millisecond),
		longestPause(killedAt, killedAt.Add(time.Minute), steadyEp).Round(time.Millisecond), timeline(killedAt, 0, 8, steadyEp), len(sent), atKill, len(cc.want)-len(sent), dups)
	if dups != 0 {
		t.Errorf("%d duplicates, want none: a Redis Cluster failover must not make JetStream redeliver", dups)
	}
}

// cacheGen is the webhook cache's generation record in JetStream KV
// (dispatcher/webhooks: generationKey, genRecord).
type cacheGen struct {
	Token      string `json:"token"`
	RedisRunID string `json:"redis_run_id"`
	Reason     string `json:"reason"`
}

// keyPrefix is what the cache puts before an integration id in Redis in
// this generation (the default DISPATCHER_REDIS_PREFIX).
func (g cacheGen) keyPrefix() string { return "blazelock:webhooks:" + g.Token + ":" }

// cacheGeneration reads the cache generation the dispatchers use.
func cacheGeneration(t *testing.T, c *cluster) cacheGen {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := c.js.KeyValue(ctx, natsinfra.WebhooksBucket)
	if err != nil {
		t.Fatalf("open %s: %v", natsinfra.WebhooksBucket, err)
	}
	e, err := kv.Get(ctx, "_cache.generation")
	if err != nil {
		t.Fatalf("read the cache generation: %v", err)
	}
	var g cacheGen
	if err := json.Unmarshal(e.Value(), &g); err != nil || g.Token == "" {
		t.Fatalf("the cache generation %q: %v", e.Value(), err)
	}
	return g
}

// idOnShard returns a new integration id whose cache entry, under
// keyPrefix, lives on node (a third of the ids do).
func idOnShard(t *testing.T, rc *testinfra.RedisCluster, keyPrefix string, node *harness.Redis) string {
	t.Helper()
	for range 200 {
		id := uuid.Must(uuid.NewV7()).String()
		if rc.NodeForKey(keyPrefix+id) == node {
			return id
		}
	}
	t.Fatalf("no id of 200 has its cache entry on %s", node.Name)
	return ""
}
