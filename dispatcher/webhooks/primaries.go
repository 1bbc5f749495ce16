package webhooks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// The cache talks to one Redis, to the primary Redis Sentinel names, or to
// a Redis Cluster. Every cache entry lives on one primary, and a primary
// that restarts or is replaced loses or may lack writes (the package
// comment, case 3), so the two calls that detect that act on every
// primary: the run_id that tags the scripts is that of every primary, and
// the scripts are loaded on every primary, never on a replica. A cluster
// whose any shard restarts, fails over or gains a new primary then
// answers NOSCRIPT on that shard, and the cache moves its generation
// before loading scripts under the new set of run_ids.

// primariesRunID returns the run_id of the Redis process, or, for a
// cluster, the sorted "address=run_id" list of its primaries.
func primariesRunID(ctx context.Context, c redis.UniversalClient) (string, error) {
	cluster, ok := c.(*redis.ClusterClient)
	if !ok {
		return runID(ctx, c)
	}
	var (
		mu  sync.Mutex
		ids []string
	)
	err := cluster.ForEachMaster(ctx, func(ctx context.Context, primary *redis.Client) error {
		id, err := runID(ctx, primary)
		if err != nil {
			return err
		}
		mu.Lock()
		ids = append(ids, primary.Options().Addr+"="+id)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return "", err
	}
	slices.Sort(ids)
	return strings.Join(ids, ","), nil
}

func runID(ctx context.Context, c redis.Cmdable) (string, error) {
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return "", fmt.Errorf("read redis run_id: %w", err)
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(line, "run_id:"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", errors.New("read redis run_id: INFO server has no run_id")
}

// loadScriptOnPrimaries loads src on the Redis process or on every primary
// of a cluster (go-redis's own cluster ScriptLoad also loads it on
// replicas, which must never have it) and checks the sha Redis computed.
func loadScriptOnPrimaries(ctx context.Context, c redis.UniversalClient, sc script) error {
	load := func(ctx context.Context, node redis.Cmdable) error {
		sha, err := node.ScriptLoad(ctx, sc.src).Result()
		if err != nil {
			return fmt.Errorf("load redis script: %w", err)
		}
		if sha != sc.sha {
			return fmt.Errorf("load redis script: server computed sha %s, expected %s", sha, sc.sha)
		}
		return nil
	}
	if cluster, ok := c.(*redis.ClusterClient); ok {
		return cluster.ForEachMaster(ctx, func(ctx context.Context, primary *redis.Client) error {
			return load(ctx, primary)
		})
	}
	return load(ctx, c)
}
