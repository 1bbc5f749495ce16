package webhooks

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/blazelock/webhooks/internal/harness"
	"github.com/blazelock/webhooks/internal/testinfra"
)

// TestRedisClusterCache runs the cache against a three-shard Redis
// Cluster: entries land on every shard and are read back as hits, a change
// is seen at once by another store, and a shard restored from an old
// snapshot (a new process holding an entry older than the last change,
// the cluster form of case 3 in the package comment) never serves it: its
// new run_id moves the generation.
func TestRedisClusterCache(t *testing.T) {
	env := newTestEnv(t)
	rc := testinfra.StartRedisCluster(t)
	prefix := testinfra.KeyPrefix(t)
	writer := env.newStore(t, rc.Client(), prefix)
	reader := env.newStore(t, rc.Client(), prefix)
	ctx := context.Background()

	if ids := strings.Count(writer.cache.gen.Load().rec.RedisRunID, "="); ids != len(rc.Shards) {
		t.Fatalf("the generation records %d primaries' run_ids (%q), want %d", ids, writer.cache.gen.Load().rec.RedisRunID, len(rc.Shards))
	}

	ids := make([]string, 60)
	for i := range ids {
		ids[i] = newID()
		mustPut(t, writer, ids[i], settings(fmt.Sprintf("https://hook-%d.example/in", i)))
	}
	for _, id := range ids {
		mustGet(t, reader, id)
	}
	hits := reader.Stats().CacheHits
	for i, id := range ids {
		if got := mustGet(t, reader, id); got.URL != fmt.Sprintf("https://hook-%d.example/in", i) {
			t.Fatalf("read %s, want hook-%d", got.URL, i)
		}
	}
	if got := reader.Stats().CacheHits - hits; got != uint64(len(ids)) {
		t.Fatalf("%d of %d reads were cache hits", got, len(ids))
	}
	for _, p := range rc.Shards {
		if n := rc.ShardClient(p).DBSize(ctx).Val(); n == 0 {
			t.Fatalf("%s holds no entry: the keys did not spread over the shards", p.Name)
		}
	}

	// A change answered by one store is read by the other at once.
	changed := mustPut(t, writer, ids[0], settings("https://changed.example/in"))
	if got := mustGet(t, reader, ids[0]); got.URL != changed.URL {
		t.Fatalf("the other store read %s after the change, want %s", got.URL, changed.URL)
	}

	// Snapshot the shard holding ids[1], change it, and restart the shard
	// from the snapshot.
	id := ids[1]
	key := reader.cache.gen.Load().keyPrefix + id
	primary, err := rc.Client().MasterForKey(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	var shard *harness.Redis
	for _, p := range rc.Shards {
		if p.Addr == primary.Options().Addr {
			shard = p
		}
	}
	shardClient := rc.ShardClient(shard)
	oldValue := shardClient.Get(ctx, key).Val()
	if err := shardClient.Save(ctx).Err(); err != nil {
		t.Fatalf("SAVE: %v", err)
	}
	updated := mustPut(t, writer, id, settings("https://new.example/in"))
	if got := mustGet(t, reader, id); got.URL != updated.URL {
		t.Fatal(got.URL)
	}
	bumps := writer.Stats().GenerationChanges + reader.Stats().GenerationChanges

	shard.Kill()
	rc.Restart(shard)
	if v := shardClient.Get(ctx, key).Val(); v != oldValue || v == "" {
		t.Fatalf("the restarted shard does not hold the old entry (%q): the test would prove nothing", v)
	}
	for range 20 {
		if got := mustGet(t, reader, id); got.URL != updated.URL {
			t.Fatalf("served %s from the restored shard, want %s", got.URL, updated.URL)
		}
	}
	if got := writer.Stats().GenerationChanges + reader.Stats().GenerationChanges; got != bumps+1 {
		t.Fatalf("the stores moved the generation %d times after the restart, want once", got-bumps)
	}
	// Reads hit the cache again in the new generation.
	mustGet(t, reader, id)
	hits = reader.Stats().CacheHits
	if got := mustGet(t, reader, id); got.URL != updated.URL || reader.Stats().CacheHits != hits+1 {
		t.Fatalf("after the restart: read %s, hits %d → %d", got.URL, hits, reader.Stats().CacheHits)
	}
}

// TestRedisClusterFailover runs the cache against a Redis Cluster whose
// primaries have replicas, and fails over the shard holding an entry in
// the worst order for the cache:
//
//  1. the shard's replica stops applying its primary's writes
//     (StallReplication: CLIENT PAUSE WRITE on the replica, which also
//     holds back what the primary streams to it),
//  2. the entry's settings change: the primary holds the new value, the
//     replica the old one, under the same generation's key,
//  3. the primary is SIGKILLed (the replica discards what it held back)
//     and the cluster promotes the replica.
//
// Reads keep working throughout, and none returns the old settings: the
// promoted replica never had our scripts (they are loaded on primaries
// only), so its first answer to each store is NOSCRIPT, and the store
// moves the generation (its primaries' run_ids changed) before using it.
// The test checks that this is what happened, not luck: the replica holds
// the stale entry and not the scripts before the failover, each store's
// first answer from it is NOSCRIPT, the generation moves once, and the
// stale entry is still on the new primary, unreachable, at the end.
func TestRedisClusterFailover(t *testing.T) {
	env := newTestEnv(t)
	rc := testinfra.StartRedisCluster(t, testinfra.RedisClusterOptions{Replicas: true})
	prefix := testinfra.KeyPrefix(t)
	writerLog, readerLog := &evalShaLog{}, &evalShaLog{}
	writer := env.newStore(t, writerLog.instrument(rc.Client()), prefix)
	reader := env.newStore(t, readerLog.instrument(rc.Client()), prefix)
	ctx := context.Background()

	want := map[string]string{}
	ids := make([]string, 30)
	for i := range ids {
		ids[i] = newID()
		want[ids[i]] = mustPut(t, writer, ids[i], settings(fmt.Sprintf("https://hook-%d.example/in", i))).URL
	}
	readAll := func(s *Store, when string) {
		t.Helper()
		for _, id := range ids {
			if got := mustGet(t, s, id); got.URL != want[id] {
				t.Fatalf("%s: read %s for %s, want %s", when, got.URL, id, want[id])
			}
		}
	}
	readAll(reader, "before the failover")

	id := ids[0]
	oldKey := reader.cache.gen.Load().keyPrefix + id
	primary := rc.NodeForKey(oldKey)
	replica := rc.ReplicaOf(primary)
	replicaClient := rc.ReplicaClient(replica) // READONLY on each of its connections
	oldValue := rc.ShardClient(primary).Get(ctx, oldKey).Val()
	testinfra.WaitFor(t, 10*time.Second, "the replica to hold the entry", func() bool {
		return oldValue != "" && replicaClient.Get(ctx, oldKey).Val() == oldValue
	})

	rc.StallReplication(replica)
	bumps := writer.Stats().GenerationChanges + reader.Stats().GenerationChanges
	want[id] = mustPut(t, writer, id, settings("https://new.example/in")).URL
	readAll(reader, "after the change")
	if got := writer.Stats().GenerationChanges + reader.Stats().GenerationChanges; got != bumps {
		t.Fatalf("the change moved the generation: the test needs it written into the cache")
	}
	if v := rc.ShardClient(primary).Get(ctx, oldKey).Val(); v == oldValue {
		t.Fatal("the primary still holds the old entry after the change")
	}
	sc := reader.cache.node.scripts.Load()
	if exists, err := replicaClient.ScriptExists(ctx, sc.read.sha, sc.cas.sha).Result(); err != nil || exists[0] || exists[1] {
		t.Fatalf("the replica has the scripts (%v, %v): NOSCRIPT could not reveal its promotion", exists, err)
	}

	rc.KillPrimary(primary)
	rc.ResumeReplication(replica)
	if v := replicaClient.Get(ctx, oldKey).Val(); v != oldValue {
		t.Fatalf("the replica does not hold the old entry (%q): the test would prove nothing", v)
	}
	// Reads go on while the cluster fails over and must never see the old
	// settings, then hit the cache again through the new primary.
	killed := time.Now()
	testinfra.WaitFor(t, 30*time.Second, "the replica to be promoted", func() bool {
		readAll(reader, "during the failover")
		readAll(writer, "during the failover")
		return rc.IsPrimary(replica)
	})
	rc.WaitPromoted(replica)
	t.Logf("replica promoted %v after the kill", time.Since(killed).Round(time.Millisecond))
	for _, s := range []*Store{reader, writer} {
		// Well under go-redis's own reload of the slot map (a minute).
		testinfra.WaitFor(t, 30*time.Second, "reads to hit the cache again after the failover", func() bool {
			hits := s.Stats().CacheHits
			readAll(s, "after the failover")
			return s.Stats().CacheHits-hits == uint64(len(ids))
		})
	}
	t.Logf("every read hits the cache again %v after the kill", time.Since(killed).Round(time.Millisecond))

	if got := writer.Stats().GenerationChanges + reader.Stats().GenerationChanges; got != bumps+1 {
		t.Fatalf("the stores moved the generation %d times over the failover, want once", got-bumps)
	}
	rec := reader.cache.gen.Load().rec
	if !strings.Contains(rec.RedisRunID, replica.Addr+"=") || strings.Contains(rec.RedisRunID, primary.Addr+"=") {
		t.Fatalf("the generation records the primaries %q: want %s in and %s out", rec.RedisRunID, replica.Addr, primary.Addr)
	}
	for name, l := range map[string]*evalShaLog{"writer": writerLog, "reader": readerLog} {
		if first := l.first(replica.Addr); first != "NOSCRIPT" {
			t.Fatalf("the %s's first EVALSHA answered by the promoted replica: %q, want NOSCRIPT", name, first)
		}
	}
	if v := replicaClient.Get(ctx, oldKey).Val(); v != oldValue {
		t.Fatalf("the stale entry is gone from the new primary (%q): the test would prove nothing", v)
	}
	bumps++

	// A store created after the failover reads through the cache at once
	// without moving the generation: the primaries' run_ids it sees are
	// those recorded.
	late := env.newStore(t, rc.Client(), prefix)
	readAll(late, "a store created after the failover")
	hits := late.Stats().CacheHits
	readAll(late, "a store created after the failover")
	if late.Stats().CacheHits-hits != uint64(len(ids)) {
		t.Fatalf("a store created after the failover: %d of %d reads hit the cache", late.Stats().CacheHits-hits, len(ids))
	}
	// A change after the failover reaches every store.
	want[id] = mustPut(t, writer, id, settings("https://newer.example/in")).URL
	readAll(reader, "after a change on the promoted shard")
	readAll(late, "after a change on the promoted shard")

	// The old primary comes back as a replica of the node that replaced
	// it: the primaries and their run_ids are the same, so nothing moves
	// and reads go on hitting the cache.
	rc.Restart(primary)
	if rc.IsPrimary(primary) || !rc.IsPrimary(replica) {
		t.Fatalf("after its restart, %s is a primary: it should have come back as a replica", primary.Name)
	}
	for _, s := range []*Store{reader, writer, late} {
		hits := s.Stats().CacheHits
		readAll(s, "after the old primary came back")
		if s.Stats().CacheHits-hits != uint64(len(ids)) {
			t.Fatalf("after the old primary came back: %d of %d reads hit the cache", s.Stats().CacheHits-hits, len(ids))
		}
	}
	if got := writer.Stats().GenerationChanges + reader.Stats().GenerationChanges + late.Stats().GenerationChanges; got != bumps {
		t.Fatalf("the old primary's return moved the generation %d times, want 0", got-bumps)
	}
}

// evalShaLog records, per node address, the answers to EVALSHA that came
// from a Redis process: "ok" or "NOSCRIPT" (not MOVED, not a connection
// error, which no process answered).
type evalShaLog struct {
	mu      sync.Mutex
	answers map[string][]string
}

// instrument records the answers of every node of cc, and returns cc.
func (l *evalShaLog) instrument(cc *redis.ClusterClient) *redis.ClusterClient {
	cc.OnNewNode(func(node *redis.Client) { node.AddHook(evalShaHook{l, node.Options().Addr}) })
	return cc
}

func (l *evalShaLog) record(addr string, cmd redis.Cmder) {
	if cmd.Name() != "evalsha" {
		return
	}
	var answer string
	switch err := cmd.Err(); {
	case err == nil, errors.Is(err, redis.Nil):
		answer = "ok"
	case isNoScript(err):
		answer = "NOSCRIPT"
	default:
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.answers == nil {
		l.answers = map[string][]string{}
	}
	l.answers[addr] = append(l.answers[addr], answer)
}

// first is the first answer recorded from addr ("" if none).
func (l *evalShaLog) first(addr string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.answers[addr]) == 0 {
		return ""
	}
	return l.answers[addr][0]
}

type evalShaHook struct {
	log  *evalShaLog
	addr string
}

func (h evalShaHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h evalShaHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.log.record(h.addr, cmd)
		return err
	}
}

func (h evalShaHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			h.log.record(h.addr, cmd)
		}
		return err
	}
}
