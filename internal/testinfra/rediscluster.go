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

// RedisCluster is a Redis Cluster of three primaries, each a redis-server
// child process on loopback owning a third of the 16,384 hash slots: the
// smallest cluster that spreads keys over shards. With
// RedisClusterOptions.Replicas each primary also has one replica, so a
// primary can fail over.
type RedisCluster struct {
	t testing.TB
	// URL is the REDIS_URL a dispatcher gets: go-redis's cluster form, the
	// first node's address with the others as addr= parameters.
	URL string
	// Shards are the primaries the cluster started with, Replicas (with
	// the option) their replicas, Replicas[i] replicating Shards[i]. Roles
	// change with failovers: ask IsPrimary and NodeForKey.
	Shards   []*harness.Redis
	Replicas []*harness.Redis
}

// RedisClusterOptions configure StartRedisCluster.
type RedisClusterOptions struct {
	// Replicas gives each primary one replica (six processes).
	Replicas bool
}

// nodeTimeout is the cluster-node-timeout: a primary that does not answer
// for this long is failed over, a few seconds after it died.
const nodeTimeout = 2 * time.Second

// StartRedisCluster starts the processes, assigns the slots, joins the
// nodes, attaches the replicas and waits until every node reports
// cluster_state:ok and every replica is in sync. Without a redis-server
// binary the test fails under CI=true and is skipped loudly elsewhere.
// Restarting a node (Kill, then Restart) keeps its node id and slots
// (nodes.conf lives in its directory) but, with nothing persisted, none
// of its keys, scripts or its run_id: what a crashed cache shard looks
// like. A killed primary with a replica is failed over; restarted, it
// comes back as a replica of the node that replaced it.
func StartRedisCluster(t testing.TB, opts ...RedisClusterOptions) *RedisCluster {
	t.Helper()
	var o RedisClusterOptions
	for _, opt := range opts {
		o = opt
	}
	dir := t.TempDir()
	c := &RedisCluster{t: t}
	const shards = 3
	var firstBusPort int
	start := func(name string) *harness.Redis {
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
		if firstBusPort == 0 {
			firstBusPort = busPort
		}
		p.Args = append(p.Args, "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(p.Dir, "nodes.conf"),
			"--cluster-port", strconv.Itoa(busPort), "--cluster-node-timeout", strconv.Itoa(int(nodeTimeout.Milliseconds())),
			// A replica joining gets its full sync at once, not 5 s later.
			"--repl-diskless-sync-delay", "0")
		t.Cleanup(p.Kill)
		if err := p.Start(context.Background()); err != nil {
			t.Fatalf("testinfra: %v", err)
		}
		return p
	}
	for i := range shards {
		c.Shards = append(c.Shards, start(fmt.Sprintf("shard-%d", i+1)))
	}
	if o.Replicas {
		for i := range shards {
			c.Replicas = append(c.Replicas, start(fmt.Sprintf("shard-%d-replica", i+1)))
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range c.nodes() {
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
		_ = node.Close()
	}
	for _, p := range c.nodes()[1:] {
		// MEET names the bus port: it is not the default port + 10,000.
		node := c.client(p)
		host, port, _ := strings.Cut(c.Shards[0].Addr, ":")
		if err := node.Do(ctx, "cluster", "meet", host, port, firstBusPort).Err(); err != nil {
			t.Fatalf("testinfra: %s: CLUSTER MEET: %v", p.Name, err)
		}
		_ = node.Close()
	}
	for i, p := range c.Replicas {
		primaryID, err := c.ShardClient(c.Shards[i]).ClusterMyID(ctx).Result()
		if err != nil {
			t.Fatalf("testinfra: %s: CLUSTER MYID: %v", c.Shards[i].Name, err)
		}
		// REPLICATE fails until gossip has told the replica about its
		// primary: retry until it knows.
		replica := c.ShardClient(p)
		WaitFor(t, 30*time.Second, p.Name+" to replicate "+c.Shards[i].Name, func() bool {
			return replica.ClusterReplicate(ctx, primaryID).Err() == nil
		})
	}
	c.WaitHealthy()

	c.URL = "redis://" + c.Shards[0].Addr
	for i, p := range c.nodes()[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		c.URL += sep + "addr=" + p.Addr
	}
	return c
}

// nodes returns every node, primaries first.
func (c *RedisCluster) nodes() []*harness.Redis {
	return append(append([]*harness.Redis(nil), c.Shards...), c.Replicas...)
}

// running reports whether p's process is up (it may have been killed).
func running(p *harness.Redis) bool {
	proc := p.Process()
	return proc != nil && proc.Running()
}

// client returns a plain client of one node; the caller closes it.
func (c *RedisCluster) client(p *harness.Redis) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: p.Addr, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
}

// do runs f against a plain client of p for at most a second.
func (c *RedisCluster) do(p *harness.Redis, f func(context.Context, *redis.Client)) {
	node := c.client(p)
	defer node.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	f(ctx, node)
}

// info returns one INFO section of p ("" if it does not answer).
func (c *RedisCluster) info(p *harness.Redis, section string) (s string) {
	c.do(p, func(ctx context.Context, node *redis.Client) { s, _ = node.Info(ctx, section).Result() })
	return s
}

// WaitHealthy waits until every node answers and reports the cluster
// whole: all slots served, every node known to every other and none
// flagged as failing, three primaries, and every replica's link to its
// primary up (a replica that just joined has finished its full sync).
func (c *RedisCluster) WaitHealthy() {
	c.t.Helper()
	all := c.nodes()
	WaitFor(c.t, 30*time.Second, fmt.Sprintf("every Redis Cluster node to report cluster_state:ok with %d known nodes, %d primaries and replicas in sync", len(all), len(c.Shards)), func() bool {
		primaries := 0
		for _, p := range all {
			var info, nodes string
			c.do(p, func(ctx context.Context, node *redis.Client) {
				info, _ = node.ClusterInfo(ctx).Result()
				nodes, _ = node.ClusterNodes(ctx).Result()
			})
			if !strings.Contains(info, "cluster_state:ok") || strings.Contains(nodes, "fail") ||
				!strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d", len(all))) {
				return false
			}
			repl := c.info(p, "replication")
			switch {
			case strings.Contains(repl, "role:master"):
				primaries++
			case !strings.Contains(repl, "master_link_status:up"):
				return false
			}
		}
		return primaries == len(c.Shards)
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

// ShardClient returns a plain client of one node, closed at cleanup.
func (c *RedisCluster) ShardClient(p *harness.Redis) *redis.Client {
	node := c.client(p)
	c.t.Cleanup(func() { _ = node.Close() })
	return node
}

// ReplicaClient returns a plain client of one node that sends READONLY on
// every connection, so that a replica answers reads of its primary's
// slots instead of redirecting them; closed at cleanup.
func (c *RedisCluster) ReplicaClient(p *harness.Redis) *redis.Client {
	node := redis.NewClient(&redis.Options{
		Addr: p.Addr, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1,
		OnConnect: func(ctx context.Context, cn *redis.Conn) error { return cn.ReadOnly(ctx).Err() },
	})
	c.t.Cleanup(func() { _ = node.Close() })
	return node
}

// Restart starts a killed node again on its port and waits until the
// cluster is whole again.
func (c *RedisCluster) Restart(p *harness.Redis) {
	c.t.Helper()
	if err := p.Start(context.Background()); err != nil {
		c.t.Fatalf("testinfra: %v", err)
	}
	c.WaitHealthy()
}

// IsPrimary reports whether p answers and is a primary now.
func (c *RedisCluster) IsPrimary(p *harness.Redis) bool {
	return strings.Contains(c.info(p, "replication"), "role:master")
}

// NodeForKey returns the node that serves key's slot, as a running node's
// CLUSTER SHARDS reports it.
func (c *RedisCluster) NodeForKey(key string) *harness.Redis {
	c.t.Helper()
	for _, p := range c.nodes() {
		if !running(p) {
			continue
		}
		var (
			slot   int64
			slots  []redis.ClusterSlot
			err    error
			served *harness.Redis
		)
		c.do(p, func(ctx context.Context, node *redis.Client) {
			if slot, err = node.ClusterKeySlot(ctx, key).Result(); err == nil {
				slots, err = node.ClusterSlots(ctx).Result()
			}
		})
		if err != nil {
			continue
		}
		for _, s := range slots {
			if int64(s.Start) <= slot && slot <= int64(s.End) && len(s.Nodes) > 0 {
				served = c.byAddr(s.Nodes[0].Addr) // the first is the primary
			}
		}
		if served != nil {
			return served
		}
	}
	c.t.Fatalf("testinfra: no running node knows which node serves %q", key)
	return nil
}

// ReplicaOf returns the node replicating primary.
func (c *RedisCluster) ReplicaOf(primary *harness.Redis) *harness.Redis {
	c.t.Helper()
	_, port, _ := strings.Cut(primary.Addr, ":")
	for _, p := range c.nodes() {
		if running(p) && strings.Contains(c.info(p, "replication"), "master_port:"+port+"\r\n") {
			return p
		}
	}
	c.t.Fatalf("testinfra: no node replicates %s", primary.Name)
	return nil
}

func (c *RedisCluster) byAddr(addr string) *harness.Redis {
	for _, p := range c.nodes() {
		if p.Addr == addr {
			return p
		}
	}
	return nil
}

// StallReplication makes replica miss its primary's writes from now on,
// the case an asynchronous replica meets when its primary dies: CLIENT
// PAUSE WRITE on the replica holds back the write commands its primary
// streams to it too (received, not applied). Kill the primary next
// (KillPrimary): the replica discards what it held back when the link
// breaks. ResumeReplication ends the pause.
func (c *RedisCluster) StallReplication(replica *harness.Redis) {
	c.t.Helper()
	var err error
	c.do(replica, func(ctx context.Context, node *redis.Client) {
		err = node.Do(ctx, "client", "pause", 60_000, "write").Err()
	})
	if err != nil {
		c.t.Fatalf("testinfra: %s: CLIENT PAUSE: %v", replica.Name, err)
	}
}

// ResumeReplication ends StallReplication's pause.
func (c *RedisCluster) ResumeReplication(replica *harness.Redis) {
	c.t.Helper()
	var err error
	c.do(replica, func(ctx context.Context, node *redis.Client) { err = node.Do(ctx, "client", "unpause").Err() })
	if err != nil {
		c.t.Fatalf("testinfra: %s: CLIENT UNPAUSE: %v", replica.Name, err)
	}
}

// KillPrimary SIGKILLs a primary and waits until its replica has seen the
// link break (so a stalled replica has discarded what it held back). The
// cluster then fails over to the replica: WaitPromoted waits for that.
func (c *RedisCluster) KillPrimary(primary *harness.Redis) {
	c.t.Helper()
	replica := c.ReplicaOf(primary)
	primary.Kill()
	WaitFor(c.t, 10*time.Second, replica.Name+" to see its primary's link down", func() bool {
		return strings.Contains(c.info(replica, "replication"), "master_link_status:down")
	})
}

// WaitPromoted waits until replica is a primary and every running node
// reports cluster_state:ok again (the failover has completed).
func (c *RedisCluster) WaitPromoted(replica *harness.Redis) {
	c.t.Helper()
	WaitFor(c.t, 30*time.Second, replica.Name+" to be promoted and the cluster ok again", func() bool {
		if !c.IsPrimary(replica) {
			return false
		}
		for _, p := range c.nodes() {
			if !running(p) {
				continue
			}
			var info string
			c.do(p, func(ctx context.Context, node *redis.Client) { info, _ = node.ClusterInfo(ctx).Result() })
			if !strings.Contains(info, "cluster_state:ok") {
				return false
			}
		}
		return true
	})
}
