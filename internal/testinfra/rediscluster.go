package testinfra

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/blazelock/webhooks/internal/harness"
)

// RedisCluster is a Redis Cluster of three primaries without replicas,
// each a redis-server child process on loopback owning a third of the
// 16,384 hash slots: the smallest cluster that spreads keys over shards.
type RedisCluster struct {
	t testing.TB
	// URL is the REDIS_URL a dispatcher gets: go-redis's cluster form, the
	// first node's address with the others as addr= parameters.
	URL    string
	Shards []*harness.Redis
}

// StartRedisCluster starts the three processes, assigns the slots, joins
// the nodes and waits until every node reports cluster_state:ok. Without a
// redis-server binary the test fails under CI=true and is skipped loudly
// elsewhere. Restarting a shard (Kill, then Restart) keeps its node id
// and slots (nodes.conf lives in its directory) but, with nothing
// persisted, none of its keys, scripts or its run_id: what a crashed
// cache shard looks like.
func StartRedisCluster(t testing.TB) *RedisCluster {
	t.Helper()
	dir := t.TempDir()
	c := &RedisCluster{t: t}
	const shards = 3
	var firstBusPort int
	for i := range shards {
		name := fmt.Sprintf("shard-%d", i+1)
		p, err := harness.NewRedis(harness.RedisOptions{Name: name, Dir: filepath.Join(dir, name)})
		if errors.Is(err, harness.ErrNoRedisServer) {
			unavailable(t, "the Redis Cluster test: "+err.Error())
		}
		if err != nil {
			t.Fatalf("testinfra: %v", err)
		}
		// The cluster bus port is set explicitly: the default (port +
		// 10,000) may be taken or above 65,535 for an ephemeral port.
		busPort := FreePort(t)
		if i == 0 {
			firstBusPort = busPort
		}
		p.Args = append(p.Args, "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(p.Dir, "nodes.conf"),
			"--cluster-port", strconv.Itoa(busPort), "--cluster-node-timeout", "2000")
		t.Cleanup(p.Kill)
		if err := p.Start(context.Background()); err != nil {
			t.Fatalf("testinfra: %v", err)
		}
		c.Shards = append(c.Shards, p)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range c.Shards {
				b, _ := os.ReadFile(filepath.Join(p.Dir, "redis.log"))
				if len(b) > 4000 {
					b = b[len(b)-4000:]
				}
				t.Logf("%s log (tail):\n%s", p.Name, b)
			}
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const slots = 16384
	for i, p := range c.Shards {
		node := c.client(p)
		first, last := i*slots/shards, (i+1)*slots/shards-1
		if err := node.ClusterAddSlotsRange(ctx, first, last).Err(); err != nil {
			t.Fatalf("testinfra: %s: CLUSTER ADDSLOTSRANGE %d %d: %v", p.Name, first, last, err)
		}
		if i > 0 {
			// MEET names the bus port: it is not the default port + 10,000.
			host, port, _ := strings.Cut(c.Shards[0].Addr, ":")
			if err := node.Do(ctx, "cluster", "meet", host, port, firstBusPort).Err(); err != nil {
				t.Fatalf("testinfra: %s: CLUSTER MEET: %v", p.Name, err)
			}
		}
		_ = node.Close()
	}
	c.WaitHealthy()

	c.URL = "redis://" + c.Shards[0].Addr
	for i, p := range c.Shards[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		c.URL += sep + "addr=" + p.Addr
	}
	return c
}

// client returns a plain client of one shard; the caller closes it.
func (c *RedisCluster) client(p *harness.Redis) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: p.Addr, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
}

// WaitHealthy waits until every shard answers and reports the cluster
// whole: all slots served and every node known to every other.
func (c *RedisCluster) WaitHealthy() {
	c.t.Helper()
	WaitFor(c.t, 30*time.Second, "every Redis Cluster node to report cluster_state:ok with 3 known nodes", func() bool {
		for _, p := range c.Shards {
			node := c.client(p)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			info, err := node.ClusterInfo(ctx).Result()
			cancel()
			_ = node.Close()
			if err != nil || !strings.Contains(info, "cluster_state:ok") ||
				!strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d", len(c.Shards))) {
				return false
			}
		}
		return true
	})
}

// Client returns a cluster client, closed at cleanup.
func (c *RedisCluster) Client() *redis.ClusterClient {
	opts, err := redis.ParseClusterURL(c.URL)
	if err != nil {
		c.t.Fatalf("testinfra: parse cluster URL: %v", err)
	}
	cc := redis.NewClusterClient(opts)
	c.t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// ShardClient returns a plain client of one shard, closed at cleanup.
func (c *RedisCluster) ShardClient(p *harness.Redis) *redis.Client {
	node := c.client(p)
	c.t.Cleanup(func() { _ = node.Close() })
	return node
}

// Restart starts a killed shard again on its port and waits until the
// cluster is whole again.
func (c *RedisCluster) Restart(p *harness.Redis) {
	c.t.Helper()
	if err := p.Start(context.Background()); err != nil {
		c.t.Fatalf("testinfra: %v", err)
	}
	c.WaitHealthy()
}
