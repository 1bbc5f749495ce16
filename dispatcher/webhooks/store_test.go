package webhooks

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/blazelock/webhooks/dispatcher/sign"
	"github.com/blazelock/webhooks/internal/natsinfra"
	"github.com/blazelock/webhooks/internal/testinfra"
)

func TestLifecycle(t *testing.T) {
	for _, withRedis := range []bool{true, false} {
		t.Run(fmt.Sprintf("redis=%v", withRedis), func(t *testing.T) {
			env := newTestEnv(t)
			var rdb *redis.Client
			if withRedis {
				rdb = redisClient(t, testinfra.StartRedis(t).URL)
			}
			s := env.newStore(t, rdb, testinfra.KeyPrefix(t))
			ctx := context.Background()
			id := newID()

			if _, err := s.Get(ctx, id); !errors.Is(err, ErrNotFound) {
				t.Fatalf("get before create: %v, want ErrNotFound", err)
			}
			created, isNew, err := s.Put(ctx, id, settings("https://a.example/hook", "file_scan.failed", "file_scan.submitted"))
			if err != nil || !isNew {
				t.Fatalf("create: created=%v err=%v", isNew, err)
			}
			if !sign.ValidSecret(created.Secret) || created.Revision == 0 || created.IntegrationID != id {
				t.Fatalf("create returned %+v", created)
			}
			if got := strings.Join(created.Events, ","); got != "file_scan.submitted,file_scan.failed" {
				t.Fatalf("events not in canonical order: %s", got)
			}
			// Twice: the first read may populate, the second is a hit.
			sameConfig(t, "get after create", mustGet(t, s, id), created)
			sameConfig(t, "get after create (cached)", mustGet(t, s, id), created)

			replaced, isNew, err := s.Put(ctx, id, Settings{Enabled: false, URL: "https://b.example/hook"})
			if err != nil || isNew {
				t.Fatalf("replace: created=%v err=%v", isNew, err)
			}
			if replaced.Secret != created.Secret || !replaced.CreatedAt.Equal(created.CreatedAt) ||
				replaced.Revision <= created.Revision || replaced.URL != "https://b.example/hook" || len(replaced.Events) != 0 {
				t.Fatalf("replace returned %+v (created %+v)", replaced, created)
			}
			sameConfig(t, "get after replace", mustGet(t, s, id), replaced)

			if err := s.Delete(ctx, id); err != nil {
				t.Fatalf("delete: %v", err)
			}
			for range 2 {
				if _, err := s.Get(ctx, id); !errors.Is(err, ErrNotFound) {
					t.Fatalf("get after delete: %v", err)
				}
			}
			if err := s.Delete(ctx, id); !errors.Is(err, ErrNotFound) {
				t.Fatalf("second delete: %v", err)
			}
			again, isNew, err := s.Put(ctx, id, settings("https://c.example/hook"))
			if err != nil || !isNew || again.Secret == created.Secret {
				t.Fatalf("re-create: created=%v err=%v, same secret=%v", isNew, err, again.Secret == created.Secret)
			}
			sameConfig(t, "get after re-create", mustGet(t, s, id), again)
			if withRedis {
				st := s.Stats()
				if st.CacheHits == 0 || st.RedisErrors != 0 {
					t.Fatalf("stats %+v: expected cache hits and no Redis errors", st)
				}
			}
		})
	}
}

func TestValidation(t *testing.T) {
	env := newTestEnv(t)
	s := env.newStore(t, nil, "")
	ctx := context.Background()
	for _, id := range []string{"", "a.b", "_cache.generation", "x y", strings.Repeat("a", 129), "a*"} {
		if _, err := s.Get(ctx, id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("get %q: %v, want ErrInvalidID", id, err)
		}
		if _, _, err := s.Put(ctx, id, settings("https://a.example")); !errors.Is(err, ErrInvalidID) {
			t.Errorf("put %q: %v, want ErrInvalidID", id, err)
		}
	}
	for name, set := range map[string]Settings{
		"unknown event":        {Enabled: true, URL: "https://a.example", Events: []string{"file_scan.deleted"}},
		"enabled, no events":   {Enabled: true, URL: "https://a.example"},
		"no url":               {Enabled: false},
		"unknown, while off":   {Enabled: false, URL: "https://a.example", Events: []string{"x"}},
		"enabled, empty slice": {Enabled: true, URL: "https://a.example", Events: []string{}},
	} {
		if _, _, err := s.Put(ctx, newID(), set); !errors.Is(err, ErrInvalidSettings) {
			t.Errorf("%s: %v, want ErrInvalidSettings", name, err)
		}
	}
	if _, err := New(env.kv, nil, Options{SecretKey: make([]byte, 16)}); err == nil {
		t.Error("a 16-byte key was accepted")
	}
	if _, err := New(env.kv, nil, Options{SecretKey: env.key, CacheTTL: time.Second}); err == nil {
		t.Error("a TTL shorter than the write window was accepted")
	}
}

func TestRotateSecret(t *testing.T) {
	env := newTestEnv(t)
	r := testinfra.StartRedis(t)
	prefix := testinfra.KeyPrefix(t)
	s := env.newStore(t, redisClient(t, r.URL), prefix)
	other := env.newStore(t, redisClient(t, r.URL), prefix)
	ctx := context.Background()
	id := newID()
	first := mustPut(t, s, id, settings("https://a.example/hook"))
	mustGet(t, other, id) // cached with the first secret

	rotated, err := s.RotateSecret(ctx, id)
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if rotated.Secret == first.Secret || !sign.ValidSecret(rotated.Secret) || rotated.URL != first.URL || rotated.Revision <= first.Revision {
		t.Fatalf("rotate returned %+v", rotated)
	}
	// At once, on this store and on another one reading the same cache.
	for _, st := range []*Store{s, other} {
		if got := mustGet(t, st, id); got.Secret != rotated.Secret {
			t.Fatal("a read right after the rotation returned the old secret")
		}
	}
	if _, err := s.RotateSecret(ctx, newID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rotate unknown: %v", err)
	}
}

// TestNoPlaintextAtRest reads every message ever stored in the bucket's
// stream and every Redis value, and looks for each secret in the encodings
// a careless implementation would use.
func TestNoPlaintextAtRest(t *testing.T) {
	env := newTestEnv(t)
	r := testinfra.StartRedis(t)
	prefix := testinfra.KeyPrefix(t)
	rdb := redisClient(t, r.URL)
	s := env.newStore(t, rdb, prefix)
	ctx := context.Background()
	var secrets []string
	for i := range 4 {
		id := newID()
		cfg := mustPut(t, s, id, settings(fmt.Sprintf("https://%d.example/hook", i)))
		mustGet(t, s, id)
		secrets = append(secrets, cfg.Secret)
		if i%2 == 0 {
			rot, err := s.RotateSecret(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			mustGet(t, s, id)
			secrets = append(secrets, rot.Secret)
		}
		if i == 3 {
			if err := s.Delete(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
	}

	var dump []byte
	stream, err := env.js.Stream(ctx, "KV_"+natsinfra.WebhooksBucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			continue // replaced (history 1)
		}
		dump = append(dump, m.Data...)
		for k, v := range m.Header {
			dump = append(dump, (k + strings.Join(v, ""))...)
		}
	}
	redisValues := allRedisValues(t, rdb, prefix)
	if len(redisValues) == 0 || len(dump) == 0 {
		t.Fatalf("nothing to search: %d KV bytes, %d Redis values", len(dump), len(redisValues))
	}
	for _, v := range redisValues {
		dump = append(dump, v...)
	}
	for _, secret := range secrets {
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(secret, sign.SecretPrefix))
		if err != nil {
			t.Fatal(err)
		}
		for _, form := range []string{
			secret,
			strings.TrimPrefix(secret, sign.SecretPrefix),
			base64.StdEncoding.EncodeToString(raw),
			base64.RawStdEncoding.EncodeToString(raw),
			base64.StdEncoding.EncodeToString([]byte(secret)),
			base64.RawURLEncoding.EncodeToString([]byte(secret)),
			hex.EncodeToString(raw),
			strings.ToUpper(hex.EncodeToString(raw)),
			hex.EncodeToString([]byte(secret)),
			string(raw),
		} {
			if strings.Contains(string(dump), form) {
				t.Fatalf("a secret is stored in a readable form (%q)", form)
			}
		}
	}
}

func TestWrongKey(t *testing.T) {
	env := newTestEnv(t)
	r := testinfra.StartRedis(t)
	prefix := testinfra.KeyPrefix(t)
	s := env.newStore(t, redisClient(t, r.URL), prefix)
	ctx := context.Background()
	id := newID()
	mustPut(t, s, id, settings("https://a.example/hook"))
	mustGet(t, s, id) // cached, so the Redis path is tried too

	wrongKey := randomKey(t)
	for _, withRedis := range []bool{true, false} {
		var rdb *redis.Client
		if withRedis {
			rdb = redisClient(t, r.URL)
		}
		envWrong := *env
		envWrong.key = wrongKey
		w := envWrong.newStore(t, rdb, prefix)
		_, err := w.Get(ctx, id)
		if !errors.Is(err, ErrSecretKey) || !strings.Contains(err.Error(), s.records.box.KeyID()) || !strings.Contains(err.Error(), w.records.box.KeyID()) {
			t.Fatalf("redis=%v: get with the wrong key: %v; want ErrSecretKey naming both key ids", withRedis, err)
		}
		if _, _, err := w.Put(ctx, id, settings("https://evil.example")); !errors.Is(err, ErrSecretKey) {
			t.Fatalf("put with the wrong key: %v", err)
		}
		if _, err := w.RotateSecret(ctx, id); !errors.Is(err, ErrSecretKey) {
			t.Fatalf("rotate with the wrong key: %v", err)
		}
	}
	if got := mustGet(t, s, id); got.URL != "https://a.example/hook" {
		t.Fatalf("a refused write changed the config: %+v", got)
	}

	// A sealed secret copied to another integration does not decrypt.
	e, err := env.kv.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	victim := newID()
	if _, err := env.kv.Put(ctx, victim, e.Value()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, victim); !errors.Is(err, ErrSecretKey) || !strings.Contains(err.Error(), "does not authenticate") {
		t.Fatalf("moved ciphertext: %v", err)
	}
}

// TestRedisStopped: with Redis down, writes succeed and reads come from KV;
// after Redis is back (empty), reads rebuild it.
func TestRedisStopped(t *testing.T) {
	env := newTestEnv(t)
	r := testinfra.StartRedis(t)
	if r.Stop == nil {
		t.Skip("SKIPPED LOUDLY: REDIS_URL is external; this test stops and starts its own redis-server")
	}
	logs := &captureHandler{}
	s := env.newStore(t, redisClient(t, r.URL), testinfra.KeyPrefix(t), func(o *Options) {
		o.Logger = slog.New(logs)
		o.RedisErrorLogInterval = time.Hour
	})
	id := newID()
	mustPut(t, s, id, settings("https://old.example/hook"))
	mustGet(t, s, id)
	changes := s.Stats().GenerationChanges

	r.Stop()
	updated := mustPut(t, s, id, settings("https://new.example/hook"))
	for range 50 {
		if got := mustGet(t, s, id); got.URL != updated.URL {
			t.Fatalf("read %s while Redis was down, want %s", got.URL, updated.URL)
		}
	}
	if n := logs.count("redis unavailable"); n != 1 {
		t.Fatalf("Redis outage logged %d times in 50 reads and a write, want once:\n%s", n, logs.all())
	}
	if s.Stats().GenerationChanges != changes+1 {
		t.Fatal("the write during the outage did not move the generation")
	}

	r.Start()
	testinfra.WaitFor(t, 10*time.Second, "reads to use Redis again", func() bool {
		before := s.Stats().CacheHits
		if got := mustGet(t, s, id); got.URL != updated.URL {
			t.Fatalf("read %s after Redis came back, want %s", got.URL, updated.URL)
		}
		return s.Stats().CacheHits > before
	})
}

// TestPartitionOldEntryNeverServed: the writer loses Redis while Redis keeps
// the old entry; once Redis is reachable again the old entry is still there
// but never served.
func TestPartitionOldEntryNeverServed(t *testing.T) {
	env := newTestEnv(t)
	r := testinfra.StartRedis(t)
	direct := redisClient(t, r.URL)
	p := startProxy(t, redisAddr(t, r.URL))
	s := env.newStore(t, redisClient(t, "redis://"+p.addr), testinfra.KeyPrefix(t))
	ctx := context.Background()
	id := newID()
	mustPut(t, s, id, settings("https://old.example/hook"))
	mustGet(t, s, id)
	oldGen := s.cache.gen.Load()
	oldValue, err := direct.Get(ctx, oldGen.keyPrefix+id).Result()
	if err != nil || !strings.Contains(oldValue, "https://old.example/hook") {
		t.Fatalf("old entry not cached: %q %v", oldValue, err)
	}

	p.setCut(true)
	updated := mustPut(t, s, id, settings("https://new.example/hook"))
	p.setCut(false)

	if v, _ := direct.Get(ctx, oldGen.keyPrefix+id).Result(); v != oldValue {
		t.Fatal("the old entry is gone: the test would prove nothing")
	}
	testinfra.WaitFor(t, 10*time.Second, "reads to use Redis again", func() bool {
		before := s.Stats().CacheHits
		if got := mustGet(t, s, id); got.URL != updated.URL {
			t.Fatalf("served %s after the partition healed, want %s", got.URL, updated.URL)
		}
		return s.Stats().CacheHits > before
	})
}

// TestTwoStoresPartition: the writer's Redis is unreachable, the reader's
// Redis holds the old entry. The reader switches generation through its
// watcher and then never serves the old entry.
func TestTwoStoresPartition(t *testing.T) {
	env := newTestEnv(t)
	r := testinfra.StartRedis(t)
	prefix := testinfra.KeyPrefix(t)
	reader := env.newStore(t, redisClient(t, r.URL), prefix)
	dead := fmt.Sprintf("redis://127.0.0.1:%d", testinfra.FreePort(t))
	writer := env.newStore(t, redisClient(t, dead), prefix)
	id := newID()
	mustPut(t, reader, id, settings("https://old.example/hook"))
	if got := mustGet(t, reader, id); got.URL != "https://old.example/hook" {
		t.Fatal(got.URL)
	}

	updated := mustPut(t, writer, id, settings("https://new.example/hook"))
	bumped := writer.cache.gen.Load().rev
	start := time.Now()
	testinfra.WaitFor(t, 5*time.Second, "the reader to learn the new generation", func() bool {
		return reader.cache.gen.Load().rev >= bumped
	})
	t.Logf("reader learned the new generation %s after the writer answered", time.Since(start))
	for range 20 {
		if got := mustGet(t, reader, id); got.URL != updated.URL {
			t.Fatalf("reader served %s, want %s", got.URL, updated.URL)
		}
	}
	if reader.Stats().CacheHits == 0 {
		t.Fatal("the reader never used Redis")
	}
}

// TestRedisRestoredFromOldSnapshot: Redis restarts from a snapshot older
// than the last change (its cache write was acknowledged, then lost). The
// restored entry must not be served.
func TestRedisRestoredFromOldSnapshot(t *testing.T) {
	env := newTestEnv(t)
	// A pure cache server, whose explicit SAVE below is what a restart
	// restores: the way a Redis restored from an older snapshot comes back.
	pr := testinfra.StartRedisServer(t, false)
	rdb := redisClient(t, pr.URL)
	s := env.newStore(t, rdb, testinfra.KeyPrefix(t))
	ctx := context.Background()
	id := newID()
	mustPut(t, s, id, settings("https://old.example/hook"))
	mustGet(t, s, id)
	oldValue := rawCacheValue(t, s, rdb, id)
	if err := rdb.Save(ctx).Err(); err != nil {
		t.Fatalf("SAVE: %v", err)
	}
	updated := mustPut(t, s, id, settings("https://new.example/hook"))
	if got := mustGet(t, s, id); got.URL != updated.URL {
		t.Fatal(got.URL)
	}
	if s.Stats().GenerationChanges != 1 { // the first one verified this Redis at start
		t.Fatalf("generation changed %d times before the restart, want 1 (first sight of this Redis)", s.Stats().GenerationChanges)
	}

	pr.Stop()
	pr.Start()
	if v := rawCacheValue(t, s, rdb, id); v != oldValue {
		t.Fatalf("the restarted Redis does not hold the old entry (%q): the test would prove nothing", v)
	}
	for range 20 {
		if got := mustGet(t, s, id); got.URL != updated.URL {
			t.Fatalf("served %s from the restored snapshot, want %s", got.URL, updated.URL)
		}
	}
	if s.Stats().GenerationChanges != 2 {
		t.Fatalf("generation changed %d times, want 2 (the restart must move it)", s.Stats().GenerationChanges)
	}
}

func TestFlushAllRebuilds(t *testing.T) {
	env := newTestEnv(t)
	r := testinfra.StartRedis(t)
	if r.Stop == nil {
		t.Skip("SKIPPED LOUDLY: REDIS_URL is external; FLUSHALL would wipe a shared server")
	}
	rdb := redisClient(t, r.URL)
	s := env.newStore(t, rdb, testinfra.KeyPrefix(t))
	ctx := context.Background()
	id := newID()
	cfg := mustPut(t, s, id, settings("https://a.example/hook"))
	mustGet(t, s, id)
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	misses := s.Stats().CacheMisses
	sameConfig(t, "after FLUSHALL", mustGet(t, s, id), cfg)
	if s.Stats().CacheMisses != misses+1 {
		t.Fatal("the read after FLUSHALL was not a miss")
	}
	if rawCacheValue(t, s, rdb, id) == "" {
		t.Fatal("the miss did not rebuild the entry")
	}
	hits := s.Stats().CacheHits
	sameConfig(t, "rebuilt", mustGet(t, s, id), cfg)
	if s.Stats().CacheHits != hits+1 {
		t.Fatal("the read after the rebuild was not a hit")
	}
}

// TestRacingPopulate plays the late reader: it read an old revision (or
// nothing) from KV, and its populate reaches Redis after newer writes.
func TestRacingPopulate(t *testing.T) {
	env := newTestEnv(t)
	r := testinfra.StartRedis(t)
	rdb := redisClient(t, r.URL)
	s := env.newStore(t, rdb, testinfra.KeyPrefix(t))
	ctx := context.Background()

	t.Run("old value after an update", func(t *testing.T) {
		id := newID()
		old := mustPut(t, s, id, settings("https://old.example/hook"))
		oldPayload := encodePayload(old, s.records.box.seal(id, old.Secret))
		g := s.cache.gen.Load()
		readStart := time.Now()
		updated := mustPut(t, s, id, settings("https://new.example/hook"))
		s.cache.populate(ctx, g, id, old.Revision, oldPayload, readStart)
		sameConfig(t, "after the late populate", mustGet(t, s, id), updated)
	})
	t.Run("old value after a delete", func(t *testing.T) {
		id := newID()
		old := mustPut(t, s, id, settings("https://old.example/hook"))
		oldPayload := encodePayload(old, s.records.box.seal(id, old.Secret))
		g := s.cache.gen.Load()
		if err := s.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
		s.cache.populate(ctx, g, id, old.Revision, oldPayload, time.Now())
		if _, err := s.Get(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("get after the late populate: %v", err)
		}
	})
	t.Run("absent after a create", func(t *testing.T) {
		id := newID()
		g := s.cache.gen.Load()
		created := mustPut(t, s, id, settings("https://a.example/hook"))
		s.cache.populate(ctx, g, id, 0, tombstonePayload, time.Now())
		sameConfig(t, "after the late negative populate", mustGet(t, s, id), created)
	})
	t.Run("too late, after the entry expired", func(t *testing.T) {
		id := newID()
		old := mustPut(t, s, id, settings("https://old.example/hook"))
		oldPayload := encodePayload(old, s.records.box.seal(id, old.Secret))
		g := s.cache.gen.Load()
		readStart := time.Now().Add(-s.cache.opts.CacheWriteWindow - time.Second)
		updated := mustPut(t, s, id, settings("https://new.example/hook"))
		if err := rdb.Del(ctx, g.keyPrefix+id).Err(); err != nil { // as if it expired
			t.Fatal(err)
		}
		late := s.Stats().LateWritesRefused
		s.cache.populate(ctx, g, id, old.Revision, oldPayload, readStart)
		if s.Stats().LateWritesRefused != late+1 {
			t.Fatal("the late populate was not refused by its deadline")
		}
		sameConfig(t, "after the refused populate", mustGet(t, s, id), updated)
	})
	t.Run("concurrent readers and writers", func(t *testing.T) {
		id := newID()
		mustPut(t, s, id, settings("https://0.example/hook"))
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := s.Get(ctx, id); err != nil {
						t.Error(err)
						return
					}
					// Drop the entry now and then so reads populate.
					_ = rdb.Del(ctx, s.cache.gen.Load().keyPrefix+id).Err()
				}
			})
		}
		var last Webhook
		for i := 1; i <= 30; i++ {
			last = mustPut(t, s, id, settings(fmt.Sprintf("https://%d.example/hook", i)))
		}
		close(stop)
		wg.Wait()
		for range 5 {
			sameConfig(t, "after the race", mustGet(t, s, id), last)
		}
	})
}

func TestNegativeCaching(t *testing.T) {
	env := newTestEnv(t)
	r := testinfra.StartRedis(t)
	s := env.newStore(t, redisClient(t, r.URL), testinfra.KeyPrefix(t))
	ctx := context.Background()
	id := newID()
	for range 2 {
		if _, err := s.Get(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
	}
	if st := s.Stats(); st.CacheMisses != 1 || st.CacheHits != 1 {
		t.Fatalf("stats %+v: want one miss then one hit on the tombstone", st)
	}
	cfg := mustPut(t, s, id, settings("https://a.example/hook"))
	sameConfig(t, "after create over a cached absence", mustGet(t, s, id), cfg)
}

// TestConcurrentWritesLoseNothing races replaces and rotations on one
// integration and checks that, in revision order, every result follows
// from the previous one: no write was applied to a state it did not see.
func TestConcurrentWritesLoseNothing(t *testing.T) {
	env := newTestEnv(t)
	r := testinfra.StartRedis(t)
	prefix := testinfra.KeyPrefix(t)
	stores := []*Store{env.newStore(t, redisClient(t, r.URL), prefix), env.newStore(t, redisClient(t, r.URL), prefix)}
	ctx := context.Background()
	id := newID()
	first := mustPut(t, stores[0], id, settings("https://start.example/hook"))

	type result struct {
		rotate bool
		cfg    Webhook
	}
	var mu sync.Mutex
	results := []result{{cfg: first}}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			s := stores[w%2]
			for i := range 10 {
				var res result
				var err error
				if (w+i)%2 == 0 {
					res.rotate = true
					res.cfg, err = s.RotateSecret(ctx, id)
				} else {
					res.cfg, _, err = s.Put(ctx, id, settings(fmt.Sprintf("https://w%d-%d.example/hook", w, i)))
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				results = append(results, res)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	sort.Slice(results, func(i, j int) bool { return results[i].cfg.Revision < results[j].cfg.Revision })
	for i := 1; i < len(results); i++ {
		prev, cur := results[i-1].cfg, results[i].cfg
		if cur.Revision == prev.Revision {
			t.Fatalf("two writes answered the same revision %d", cur.Revision)
		}
		if results[i].rotate {
			if cur.URL != prev.URL || cur.Secret == prev.Secret {
				t.Fatalf("rotation at revision %d lost the URL or kept the secret", cur.Revision)
			}
		} else if cur.Secret != prev.Secret {
			t.Fatalf("replace at revision %d undid the rotation before it", cur.Revision)
		}
	}
	last := results[len(results)-1].cfg
	for _, s := range stores {
		sameConfig(t, "final state", mustGet(t, s, id), last)
	}
}

// TestLeaseLapses: once the generation stops being confirmed, reads stop
// using Redis (they cannot know whether it moved).
func TestLeaseLapses(t *testing.T) {
	env := newTestEnv(t)
	r := testinfra.StartRedis(t)
	s := env.newStore(t, redisClient(t, r.URL), testinfra.KeyPrefix(t), func(o *Options) {
		o.GenerationRefresh, o.GenerationLease = 50*time.Millisecond, 200*time.Millisecond
	})
	id := newID()
	cfg := mustPut(t, s, id, settings("https://a.example/hook"))
	mustGet(t, s, id)
	s.Close()
	testinfra.WaitFor(t, 5*time.Second, "the lease to lapse", func() bool { return s.cache.usableGeneration() == nil })
	before := s.Stats()
	sameConfig(t, "get", mustGet(t, s, id), cfg)
	if after := s.Stats(); after.KVDirect != before.KVDirect+1 || after.CacheHits != before.CacheHits {
		t.Fatalf("stats %+v → %+v: want one direct KV read", before, after)
	}
}

// TestGenerationRecordDeleted: an operator deleting the reserved key gets a
// fresh generation, never an old one back.
func TestGenerationRecordDeleted(t *testing.T) {
	env := newTestEnv(t)
	r := testinfra.StartRedis(t)
	s := env.newStore(t, redisClient(t, r.URL), testinfra.KeyPrefix(t))
	ctx := context.Background()
	id := newID()
	cfg := mustPut(t, s, id, settings("https://a.example/hook"))
	mustGet(t, s, id)
	before := s.cache.gen.Load()
	if err := env.kv.Delete(ctx, generationKey); err != nil {
		t.Fatal(err)
	}
	testinfra.WaitFor(t, 5*time.Second, "a new generation", func() bool {
		g := s.cache.gen.Load()
		return g.rev > before.rev && g.rec.Token != before.rec.Token
	})
	sameConfig(t, "after the generation was recreated", mustGet(t, s, id), cfg)
	e, err := env.kv.Get(ctx, generationKey)
	if err != nil || e.Operation() != jetstream.KeyValuePut {
		t.Fatalf("generation key not recreated: %v", err)
	}
}

func TestDecodeCachedRejectsDamage(t *testing.T) {
	env := newTestEnv(t)
	s, err := New(env.kv, nil, Options{SecretKey: env.key, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	id := newID()
	now := time.Now().UTC().Truncate(time.Millisecond)
	cfg := Webhook{IntegrationID: id, Settings: Settings{Enabled: true, URL: "https://a.example/h", Events: []string{"file_scan.completed"}},
		Secret: "whsec_x", Revision: 42, CreatedAt: now, UpdatedAt: now}
	good := "42:" + string(encodePayload(cfg, s.records.box.seal(id, cfg.Secret)))
	got, found, err := s.cache.decodeCached(id, good)
	if err != nil || !found {
		t.Fatalf("decode: %v", err)
	}
	sameConfig(t, "round trip", got, cfg)
	for name, v := range map[string]string{
		"empty":           "",
		"no revision":     ":T",
		"no payload":      "42:",
		"bad revision":    "4x:T",
		"unknown kind":    "42:Z",
		"short header":    "42:C\x01",
		"url too long":    good[:3+configHeaderLen] + "\x7f",
		"truncated":       good[:len(good)-3],
		"other id's seal": "42:" + string(encodePayload(cfg, s.records.box.seal(newID(), cfg.Secret))),
	} {
		if _, _, err := s.cache.decodeCached(id, v); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func BenchmarkGet(b *testing.B) {
	env := newTestEnv(b)
	r := testinfra.StartRedis(b)
	s := env.newStore(b, redisClient(b, r.URL), testinfra.KeyPrefix(b), func(o *Options) {
		o.GenerationLease = time.Hour // the lease must not lapse while the benchmark runs
		o.GenerationRefresh = time.Second
	})
	ctx := context.Background()
	id := newID()
	mustPut(b, s, id, settings("https://bench.example/hook", "file_scan.completed", "file_scan.failed"))
	mustGet(b, s, id)
	hits := s.Stats().CacheHits
	b.ReportAllocs()
	// Deliveries run many workers; 32 per CPU in flight measures the
	// throughput of the cache path rather than one round trip's latency.
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Get(ctx, id); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	if got := s.Stats().CacheHits - hits; got != uint64(b.N) {
		b.Fatalf("%d of %d reads were cache hits", got, b.N)
	}
}

// BenchmarkDecodeCached is the store's own CPU cost of a cache hit: parsing
// the entry and decrypting the secret (the rest of Get is the Redis call).
func BenchmarkDecodeCached(b *testing.B) {
	env := newTestEnv(b)
	s, err := New(env.kv, nil, Options{SecretKey: env.key, Logger: testLogger(b)})
	if err != nil {
		b.Fatal(err)
	}
	id := newID()
	secret, _ := sign.NewSecret()
	now := time.Now()
	cfg := Webhook{IntegrationID: id, Settings: settings("https://bench.example/hook", "file_scan.completed", "file_scan.failed"),
		Secret: secret, Revision: 7, CreatedAt: now, UpdatedAt: now}
	v := "7:" + string(encodePayload(cfg, s.records.box.seal(id, secret)))
	b.ReportAllocs()
	for b.Loop() {
		if _, found, err := s.cache.decodeCached(id, v); err != nil || !found {
			b.Fatal(err)
		}
	}
}

// TestDemotedPrimaryPromotedAgain: the failover case a run_id check alone
// misses. Redis A is the primary; it fails over to its replica B, and A
// is demoted to a replica of B without restarting (as Sentinel does with
// a primary that comes back), which keeps A's script cache. A copies B's
// entries, then stops replicating just before a change is written to B,
// and is promoted again: it holds the previous entry in the current
// generation, and the scripts the store first loaded into it. The store
// must notice the other process and serve the change, never A's entry.
func TestDemotedPrimaryPromotedAgain(t *testing.T) {
	env := newTestEnv(t)
	a, b := testinfra.StartRedis(t), testinfra.StartRedis(t)
	if a.Stop == nil || a.URL == b.URL {
		t.Skip("needs two redis-server processes of this test (REDIS_URL is set)")
	}
	ctx := context.Background()
	ra, rb := redisClient(t, a.URL), redisClient(t, b.URL)
	addrA, addrB := redisAddr(t, a.URL), redisAddr(t, b.URL)
	replicaOf := func(r *redis.Client, addr string) {
		t.Helper()
		host, port := "no", "one"
		if addr != "" {
			var err error
			if host, port, err = net.SplitHostPort(addr); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.SlaveOf(ctx, host, port).Err(); err != nil {
			t.Fatalf("REPLICAOF %s %s: %v", host, port, err)
		}
	}
	synced := func(r *redis.Client) func() bool {
		return func() bool {
			info, err := r.Info(ctx, "replication").Result()
			return err == nil && strings.Contains(info, "master_link_status:up")
		}
	}
	px := startProxy(t, addrA)
	s := env.newStore(t, redisClient(t, "redis://"+px.addr+"/0"), testinfra.KeyPrefix(t))
	id := newID()
	mustPut(t, s, id, settings("https://one.example/hook"))

	// Fail over to B; A becomes B's replica without restarting.
	replicaOf(rb, addrA)
	testinfra.WaitFor(t, 10*time.Second, "B to replicate A", synced(rb))
	replicaOf(rb, "")
	replicaOf(ra, addrB)
	px.retarget(addrB)
	testinfra.WaitFor(t, 10*time.Second, "A to replicate B", synced(ra))
	two := mustPut(t, s, id, settings("https://two.example/hook"))
	if got := mustGet(t, s, id); got.URL != two.URL {
		t.Fatalf("after the first failover: %s, want %s", got.URL, two.URL)
	}
	key := s.cache.gen.Load().keyPrefix + id
	testinfra.WaitFor(t, 10*time.Second, "A to hold the second URL's entry", func() bool {
		v, err := ra.Get(ctx, key).Result()
		return err == nil && strings.Contains(v, "two.example")
	})

	// A stops replicating, B takes a change, and A is promoted again.
	replicaOf(ra, "")
	three := mustPut(t, s, id, settings("https://three.example/hook"))
	px.retarget(addrA)
	if v, _ := ra.Get(ctx, key).Result(); !strings.Contains(v, "two.example") {
		t.Fatalf("A does not hold the previous entry in the current generation (%q): the test would prove nothing", v)
	}
	for range 20 {
		got, err := s.Get(ctx, id)
		if err != nil {
			continue // the first calls after the failover may find Redis busy being verified
		}
		if got.URL != three.URL {
			t.Fatalf("served %s after A was promoted again, want %s", got.URL, three.URL)
		}
	}
	if got := mustGet(t, s, id); got.URL != three.URL {
		t.Fatalf("served %s, want %s", got.URL, three.URL)
	}
}
