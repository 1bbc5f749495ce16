// Package testinfra gives tests real NATS JetStream and Redis servers.
//
// Resolution order, for each dependency:
//  1. NATS_URL / REDIS_URL when set (CI or docker-compose users bring their own);
//  2. an embedded nats-server v2.15 (in-process) / a redis-server binary started
//     on a free loopback port in a temporary directory;
//  3. Redis only: a testcontainers Redis (the compose file's image) when a
//     Docker engine answers;
//  4. otherwise the test fails with an actionable message under CI=true, and is
//     skipped with a loud message locally. There are no silent skips.
//
// Fault tests that stop, kill and restart their servers get servers of
// their own whatever the environment says (StartEmbeddedNATS,
// StartRedisServer, StartNATSCluster, StartRedisSentinel), and dispatcher
// child processes (StartDispatcher).
//
// The helpers here are thin testing.TB wrappers around package
// internal/harness, which the benchmark uses too: they fail the test on
// an error, and release every server, process and client with t.Cleanup.
package testinfra

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/blazelock/webhooks/internal/harness"
	"github.com/blazelock/webhooks/internal/natsinfra"
)

// NATS is a JetStream server for one test.
type NATS struct {
	URL string
	// StoreDir is an embedded server's JetStream store ("" for NATS_URL).
	StoreDir string
	t        testing.TB
	embedded *harness.EmbeddedNATS // nil for NATS_URL
}

// StartNATS returns a JetStream server for the test. With NATS_URL set the
// external server is used (it must be dedicated to tests: run `go test -p 1`);
// otherwise a fresh embedded server (see StartEmbeddedNATS).
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	if url := os.Getenv("NATS_URL"); url != "" {
		return &NATS{URL: url, t: t}
	}
	return StartEmbeddedNATS(t)
}

// StartEmbeddedNATS starts a nats-server in the test process, with
// JetStream storing in t.TempDir(), on a free loopback port, whatever
// NATS_URL says: Stop and Start take it down and bring it back on the
// same port and store. It is shut down at cleanup.
func StartEmbeddedNATS(t testing.TB) *NATS {
	t.Helper()
	dir := t.TempDir()
	e, err := harness.StartEmbeddedNATS(context.Background(), harness.JetStreamOptions("test", dir, server.RANDOM_PORT))
	if err != nil {
		t.Fatalf("testinfra: embedded nats-server: %v", err)
	}
	t.Cleanup(e.Shutdown)
	return &NATS{URL: e.URL(), StoreDir: dir, t: t, embedded: e}
}

// Stop shuts the embedded server down: cleanly, as an operator stopping
// it would, not a crash.
func (n *NATS) Stop() {
	n.t.Helper()
	n.own().Shutdown()
}

// Start starts the embedded server again on the same port and store.
func (n *NATS) Start() {
	n.t.Helper()
	if err := n.own().Start(context.Background()); err != nil {
		n.t.Fatalf("testinfra: restart nats-server: %v", err)
	}
}

func (n *NATS) own() *harness.EmbeddedNATS {
	n.t.Helper()
	if n.embedded == nil {
		n.t.Fatal("testinfra: the server at NATS_URL is not the test's to stop or start")
	}
	return n.embedded
}

// Connect opens a client connection to the server and closes it at cleanup.
func (n *NATS) Connect(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(n.URL, nats.Name(t.Name()))
	if err != nil {
		t.Fatalf("testinfra: connect to NATS at %s: %v", n.URL, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Redis is a running Redis server for one test.
type Redis struct {
	URL string
	// Dir is a private redis-server's directory ("" otherwise).
	Dir string
	// Stop and Start kill (SIGKILL) and restart a redis-server this
	// package started, on the same port (for outage tests). They are nil
	// for an external REDIS_URL and for a container: outage tests need a
	// redis-server binary.
	Stop  func()
	Start func()

	t      testing.TB
	server *harness.Redis // nil for REDIS_URL and a container
}

// StartRedis returns a Redis for the test: REDIS_URL when set (tests then
// share it and must use their own key prefix, see KeyPrefix), else a private
// redis-server on a free port. Without either it fails under CI=true and
// skips, loudly, elsewhere.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	if url := os.Getenv("REDIS_URL"); url != "" {
		return &Redis{URL: url, t: t}
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		r, dockerErr := startRedisContainer(t)
		if dockerErr != nil {
			unavailable(t, "no REDIS_URL, no redis-server binary on PATH, and no Docker for testcontainers ("+dockerErr.Error()+
				"): install redis-server (apt-get install -y redis-server) or set REDIS_URL=redis://host:port")
		}
		return r
	}
	return StartRedisServer(t, false)
}

// StartRedisServer starts a private redis-server for the test, whatever
// REDIS_URL says, on a free loopback port in t.TempDir(), and kills it at
// cleanup. With persistent, an append-only file is fsynced on every
// write, so a killed and restarted server comes back with exactly what it
// held; otherwise it is a pure cache. Without a redis-server binary the
// test fails under CI=true and is skipped, loudly, elsewhere.
func StartRedisServer(t testing.TB, persistent bool) *Redis {
	t.Helper()
	s, err := harness.NewRedis(harness.RedisOptions{Name: "test", Dir: t.TempDir(), Persistent: persistent})
	if errors.Is(err, harness.ErrNoRedisServer) {
		unavailable(t, err.Error())
	}
	if err != nil {
		t.Fatalf("testinfra: %v", err)
	}
	r := &Redis{URL: s.URL(), Dir: s.Dir, t: t, server: s, Stop: s.Kill}
	r.Start = func() {
		t.Helper()
		if err := s.Start(context.Background()); err != nil {
			t.Fatalf("testinfra: %v", err)
		}
	}
	r.Start()
	t.Cleanup(s.Kill)
	return r
}

// Signal sends sig to a redis-server this package started (SIGSTOP hangs
// it, SIGCONT resumes it).
func (r *Redis) Signal(sig os.Signal) {
	r.t.Helper()
	if r.server == nil {
		r.t.Fatal("testinfra: only a redis-server of the test's own can be signalled")
	}
	if err := r.server.Signal(sig); err != nil {
		r.t.Fatalf("testinfra: %v", err)
	}
}

// Client returns a go-redis client for the server, closed at cleanup.
func (r *Redis) Client(t testing.TB) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(r.URL)
	if err != nil {
		t.Fatalf("testinfra: parse redis URL %q: %v", r.URL, err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// KeyPrefix returns a Redis key prefix unique to the test, so tests sharing
// one external Redis never see each other's keys.
func KeyPrefix(t testing.TB) string {
	return fmt.Sprintf("test:%d:%s:", time.Now().UnixNano(), t.Name())
}

// PingRedis dials the URL and sends one PING.
func PingRedis(url string) error { return harness.PingRedis(context.Background(), url) }

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := harness.FreePort()
	if err != nil {
		t.Fatalf("testinfra: %v", err)
	}
	return port
}

// WaitFor polls cond every 10ms until it holds or the timeout passes, then
// fails the test naming what it waited for. Use it instead of sleeps.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := harness.Poll(context.Background(), timeout, 10*time.Millisecond, what, func() (bool, error) { return cond(), nil }); err != nil {
		t.Fatal(err)
	}
}

func unavailable(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("testinfra: %s", msg)
	}
	t.Skipf("SKIPPED LOUDLY: testinfra: %s", msg)
}

// ProvisionedJetStream starts NATS for the test (see StartNATS) and returns
// a JetStream handle on it with every stream, consumer and bucket
// provisioned with the default options.
func ProvisionedJetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(StartNATS(t).Connect(t))
	if err != nil {
		t.Fatalf("testinfra: open JetStream: %v", err)
	}
	if err := natsinfra.Provision(context.Background(), js, natsinfra.DefaultOptions()); err != nil {
		t.Fatalf("testinfra: provision: %v", err)
	}
	return js
}
