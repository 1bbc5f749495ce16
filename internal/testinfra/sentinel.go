package testinfra

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
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
	Primary, Replica *RedisProcess
	Sentinel         *RedisProcess
	link             *Proxy
}

// RedisProcess is one redis-server child process.
type RedisProcess struct {
	Name string
	Addr string // host:port
	dir  string
	bin  string
	args []string
	mu   sync.Mutex
	cmd  *exec.Cmd
}

// StartRedisSentinel starts the three processes and waits until the
// Sentinel monitors the primary and knows the replica. Without a
// redis-server binary the test fails under CI=true and is skipped loudly
// elsewhere. Sentinel reacts fast: the primary counts as down after 1 s
// without an answer, and one Sentinel is a quorum.
func StartRedisSentinel(t testing.TB) *RedisSentinel {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		unavailable(t, "no redis-server binary on PATH for the Sentinel test: install it (apt-get install -y redis-server)")
	}
	dir := t.TempDir()
	s := &RedisSentinel{t: t, MasterName: "blazelock"}
	newProc := func(name string, extra ...string) *RedisProcess {
		port := FreePort(t)
		p := &RedisProcess{Name: name, Addr: fmt.Sprintf("127.0.0.1:%d", port), dir: filepath.Join(dir, name), bin: bin}
		if err := os.MkdirAll(p.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		// A pure cache, as the README recommends: nothing persisted.
		p.args = append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", p.dir, "--logfile", filepath.Join(p.dir, "redis.log")}, extra...)
		return p
	}
	s.Primary = newProc("primary")
	s.link = StartProxy(t, s.Primary.Addr)
	host, port, _ := net.SplitHostPort(s.link.Addr())
	s.Replica = newProc("replica", "--replicaof", host, port)
	s.Sentinel = newProc("sentinel")
	ph, pp, _ := net.SplitHostPort(s.Primary.Addr)
	_, sp, _ := net.SplitHostPort(s.Sentinel.Addr)
	conf := filepath.Join(s.Sentinel.dir, "sentinel.conf")
	// Sentinel rewrites its file as it learns, so it lives in its own dir.
	// failover-timeout stays long: Sentinel would otherwise "fix" the
	// replica's link through the proxy after it (+fix-slave-config).
	err = os.WriteFile(conf, fmt.Appendf(nil, `port %s
bind 127.0.0.1
dir %q
logfile %q
sentinel monitor %s %s %s 1
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 180000
sentinel parallel-syncs %s 1
`, sp, s.Sentinel.dir, filepath.Join(s.Sentinel.dir, "sentinel.log"), s.MasterName, ph, pp, s.MasterName, s.MasterName, s.MasterName), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	s.Sentinel.args = []string{conf, "--sentinel"}
	s.URL = fmt.Sprintf("redis://%s/0?master_name=%s", s.Sentinel.Addr, s.MasterName)

	for _, p := range []*RedisProcess{s.Primary, s.Replica, s.Sentinel} {
		p.start(t)
		t.Cleanup(p.Kill)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range []*RedisProcess{s.Primary, s.Replica, s.Sentinel} {
				b, _ := os.ReadFile(filepath.Join(p.dir, map[bool]string{true: "sentinel.log", false: "redis.log"}[p == s.Sentinel]))
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

func (p *RedisProcess) start(t testing.TB) {
	t.Helper()
	cmd := exec.Command(p.bin, p.args...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("testinfra: start redis-server %s: %v", p.Name, err)
	}
	p.mu.Lock()
	p.cmd = cmd
	p.mu.Unlock()
	WaitFor(t, 15*time.Second, "redis-server "+p.Name+" to answer PING", func() bool {
		return PingRedis("redis://"+p.Addr) == nil
	})
}

// Kill sends SIGKILL and waits for the process to end.
func (p *RedisProcess) Kill() {
	p.mu.Lock()
	cmd := p.cmd
	p.cmd = nil
	p.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
}

// Client returns a plain client of one process, closed at cleanup.
func (s *RedisSentinel) Client(p *RedisProcess) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: p.Addr, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

func (s *RedisSentinel) info(p *RedisProcess, section string) string {
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
