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
// Every server and client is released with t.Cleanup.
package testinfra

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/blazelock/webhooks/internal/natsinfra"
)

// NATS is a running JetStream-enabled server for one test.
type NATS struct {
	URL    string
	Server *server.Server // nil when NATS_URL points at an external server
}

// StartNATS returns a JetStream server for the test. With NATS_URL set the
// external server is used (it must be dedicated to tests: run `go test -p 1`);
// otherwise a fresh embedded server with its store in t.TempDir().
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	if url := os.Getenv("NATS_URL"); url != "" {
		return &NATS{URL: url}
	}
	s := RunEmbeddedNATS(t, t.TempDir())
	return &NATS{URL: s.ClientURL(), Server: s}
}

// RunEmbeddedNATS starts an embedded nats-server with JetStream storing in
// storeDir, listening on a random loopback port, and shuts it down at cleanup.
func RunEmbeddedNATS(t testing.TB, storeDir string) *server.Server {
	t.Helper()
	opts := &server.Options{
		ServerName: "test",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   storeDir,
		NoLog:      true,
		NoSigs:     true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("testinfra: create embedded nats-server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatalf("testinfra: embedded nats-server not ready within 10s")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
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
	// Stop and Start kill and restart a redis-server this package started, on
	// the same port (for outage tests). They are nil for an external REDIS_URL
	// and for a container: outage tests need a redis-server binary.
	Stop  func()
	Start func()
}

// StartRedis returns a Redis for the test: REDIS_URL when set (tests then
// share it and must use their own key prefix, see KeyPrefix), else a private
// redis-server on a free port. Without either it fails under CI=true and
// skips, loudly, elsewhere.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	if url := os.Getenv("REDIS_URL"); url != "" {
		return &Redis{URL: url}
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		r, dockerErr := startRedisContainer(t)
		if dockerErr != nil {
			unavailable(t, "no REDIS_URL, no redis-server binary on PATH, and no Docker for testcontainers ("+dockerErr.Error()+
				"): install redis-server (apt-get install -y redis-server) or set REDIS_URL=redis://host:port")
		}
		return r
	}
	port := FreePort(t)
	dir := t.TempDir()
	r := &Redis{URL: fmt.Sprintf("redis://127.0.0.1:%d/0", port)}
	var cmd *exec.Cmd
	r.Start = func() {
		t.Helper()
		cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
		if err := cmd.Start(); err != nil {
			t.Fatalf("testinfra: start redis-server: %v", err)
		}
		WaitFor(t, 10*time.Second, "redis-server to answer PING", func() bool {
			return PingRedis(r.URL) == nil
		})
	}
	r.Stop = func() {
		if cmd == nil || cmd.Process == nil {
			return
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		cmd = nil
	}
	r.Start()
	t.Cleanup(r.Stop)
	return r
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
func PingRedis(url string) error {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return err
	}
	opts.DialTimeout = time.Second
	c := redis.NewClient(opts)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testinfra: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitFor polls cond every 10ms until it holds or the timeout passes, then
// fails the test naming what it waited for. Use it instead of sleeps.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
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
