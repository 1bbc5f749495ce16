package testinfra

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/blazelock/webhooks/internal/harness"
)

// RedisSentinel is a primary, a replica and one Sentinel, each a
// redis-server child process on loopback: the smallest deployment whose
// primary can fail over. The replica replicates through a Proxy, so a
// test can make it miss writes (CutReplication) before killing the
// primary, the case an asynchronous replica meets when its primary dies.
type RedisSentinel struct {
	t          testing.TB
	MasterName string
	// URL is the REDIS_URL a dispatcher gets: go-redis's failover form.
	URL              string
	Primary, Replica *harness.Redis
	Sentinel         *harness.Redis
	link             *Proxy
}

// StartRedisSentinel starts the three processes and waits until the
// Sentinel monitors the primary and knows the replica. Without a
// redis-server binary the test fails under CI=true and is skipped loudly
// elsewhere. Sentinel reacts fast: the primary counts as down after 1 s
// without an answer, and one Sentinel is a quorum.
func StartRedisSentinel(t testing.TB) *RedisSentinel {
	t.Helper()
	dir := t.TempDir()
	s := &RedisSentinel{t: t, MasterName: "blazelock"}
	// Each is a pure cache, as the README recommends: nothing persisted.
	newServer := func(name string) *harness.Redis {
		r, err := harness.NewRedis(harness.RedisOptions{Name: name, Dir: filepath.Join(dir, name)})
		if errors.Is(err, harness.ErrNoRedisServer) {
			unavailable(t, "the Sentinel test: "+err.Error())
		}
		if err != nil {
			t.Fatalf("testinfra: %v", err)
		}
		return r
	}
	s.Primary = newServer("primary")
	s.link = StartProxy(t, s.Primary.Addr)
	host, port, _ := net.SplitHostPort(s.link.Addr())
	s.Replica = newServer("replica")
	s.Replica.Args = append(s.Replica.Args, "--replicaof", host, port)
	s.Sentinel = newServer("sentinel")
	ph, pp, _ := net.SplitHostPort(s.Primary.Addr)
	_, sp, _ := net.SplitHostPort(s.Sentinel.Addr)
	conf := filepath.Join(s.Sentinel.Dir, "sentinel.conf")
	// Sentinel rewrites its file as it learns, so it lives in its own dir.
	// failover-timeout stays long: Sentinel would otherwise "fix" the
	// replica's link through the proxy after it (+fix-slave-config).
	err := os.WriteFile(conf, fmt.Appendf(nil, `port %s
bind 127.0.0.1
dir %q
logfile %q
sentinel monitor %s %s %s 1
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 180000
sentinel parallel-syncs %s 1
`, sp, s.Sentinel.Dir, filepath.Join(s.Sentinel.Dir, "sentinel.log"), s.MasterName, ph, pp, s.MasterName, s.MasterName, s.MasterName), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	s.Sentinel.Args = []string{conf, "--sentinel"}
	s.URL = fmt.Sprintf("redis://%s/0?master_name=%s", s.Sentinel.Addr, s.MasterName)

	for _, p := range []*harness.Redis{s.Primary, s.Replica, s.Sentinel} {
		t.Cleanup(p.Kill)
		if err := p.Start(context.Background()); err != nil {
			t.Fatalf("testinfra: %v", err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range []*harness.Redis{s.Primary, s.Replica, s.Sentinel} {
				b, _ := os.ReadFile(filepath.Join(p.Dir, map[bool]string{true: "sentinel.log", false: "redis.log"}[p == s.Sentinel]))
				if len(b) > 6000 {
					b = b[len(b)-6000:]
				}
				t.Logf("%s log (tail):\n%s", p.Name, b)
			}
		}
	})
	WaitFor(t, 30*time.Second, "the replica in sync with the primary", func() bool {
		return strings.Contains(s.info(s.Replica, "replication"), "master_link_status:up")
	})
	WaitFor(t, 30*time.Second, "Sentinel to know the replica", func() bool {
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinel.Addr, DialTimeout: time.Second, ReadTimeout: time.Second})
		defer sc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		reps, err := sc.Replicas(ctx, s.MasterName).Result()
		if err != nil {
			return false
		}
		for _, r := range reps {
			if r["port"] == strings.Split(s.Replica.Addr, ":")[1] && !strings.Contains(r["flags"], "disconnected") {
				return true
			}
		}
		return false
	})
	return s
}

// Client returns a plain client of one process, closed at cleanup.
func (s *RedisSentinel) Client(p *harness.Redis) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: p.Addr, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

func (s *RedisSentinel) info(p *harness.Redis, section string) string {
	c := redis.NewClient(&redis.Options{Addr: p.Addr, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	v, _ := c.Info(ctx, section).Result()
	return v
}

// Master returns the address Sentinel gives for the primary now.
func (s *RedisSentinel) Master() string {
	c := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinel.Addr, DialTimeout: time.Second, ReadTimeout: time.Second})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	addr, err := c.GetMasterAddrByName(ctx, s.MasterName).Result()
	if err != nil || len(addr) != 2 {
		return ""
	}
	return net.JoinHostPort(addr[0], addr[1])
}

// CutReplication stalls the replica's link to the primary: from now on
// the replica misses every write (see Proxy). The replica still counts
// as connected for a while, so Sentinel will promote it.
func (s *RedisSentinel) CutReplication() { s.link.Cut() }
