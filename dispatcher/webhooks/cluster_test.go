package webhooks

import (
	"context"
	"fmt"
	"strings"
	"testing"

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
