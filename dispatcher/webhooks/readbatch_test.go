package webhooks

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/blazelock/webhooks/internal/testinfra"
)

// TestReadBatcher: concurrent reads, batched, each get their own key's
// answer and their own error; cancelled reads return at once; reads after
// close go directly to Redis.
func TestReadBatcher(t *testing.T) {
	rdb := redisClient(t, testinfra.StartRedis(t).URL)
	ctx := context.Background()
	prefix := testinfra.KeyPrefix(t)
	sc := newScript(readScriptSrc, prefix, "test-run-id")
	if err := rdb.ScriptLoad(ctx, sc.src).Err(); err != nil {
		t.Fatal(err)
	}
	const keys = 300
	for i := range keys {
		if i%3 != 0 { // every third key is missing: redis.Nil
			rdb.Set(ctx, fmt.Sprintf("%sk%d", prefix, i), fmt.Sprintf("v%d", i), time.Minute)
		}
	}
	b := newReadBatcher(rdb)

	var wg sync.WaitGroup
	errs := make(chan error, keys)
	for i := range keys {
		wg.Go(func() {
			v, err := b.read(ctx, sc.sha, fmt.Sprintf("%sk%d", prefix, i))
			switch {
			case i%3 == 0 && !errors.Is(err, redis.Nil):
				errs <- fmt.Errorf("k%d: want redis.Nil, got %q %v", i, v, err)
			case i%3 != 0 && (err != nil || v != fmt.Sprintf("v%d", i)):
				errs <- fmt.Errorf("k%d: got %q %v", i, v, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := b.read(cancelled, sc.sha, prefix+"k1"); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled read answered %v", err)
	}

	// A script Redis does not know fails that read with NOSCRIPT, which Get
	// turns into a Redis verification.
	if _, err := b.read(ctx, "0000000000000000000000000000000000000000", prefix+"k1"); !isNoScript(err) {
		t.Errorf("unknown script: %v, want NOSCRIPT", err)
	}

	b.close()
	if v, err := b.read(ctx, sc.sha, prefix+"k1"); err != nil || v != "v1" {
		t.Errorf("after close: %q %v", v, err)
	}
}
