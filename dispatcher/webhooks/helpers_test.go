package webhooks

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/blazelock/webhooks/internal/natsinfra"
	"github.com/blazelock/webhooks/internal/testinfra"
)

// testEnv is one JetStream (with the provisioned buckets) per test.
type testEnv struct {
	js  jetstream.JetStream
	kv  jetstream.KeyValue
	key []byte
}

func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	js := testinfra.ProvisionedJetStream(t)
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, natsinfra.WebhooksBucket)
	if err != nil {
		t.Fatalf("open bucket: %v", err)
	}
	return &testEnv{js: js, kv: kv, key: randomKey(t)}
}

func randomKey(t testing.TB) []byte {
	k := make([]byte, SecretKeyLen)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// redisClient returns a client with the short timeouts a dispatcher should
// use, closed at cleanup.
func redisClient(t testing.TB, url string) *redis.Client {
	t.Helper()
	o, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("parse redis url: %v", err)
	}
	o.DialTimeout = 300 * time.Millisecond
	o.ReadTimeout = 300 * time.Millisecond
	o.WriteTimeout = 300 * time.Millisecond
	o.MaxRetries = 1
	o.ContextTimeoutEnabled = true
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

type storeOpt func(*Options)

// newStore builds a Store, closed at cleanup, and, with a reachable Redis,
// waits until it reads through the cache.
func (e *testEnv) newStore(t testing.TB, rdb redis.UniversalClient, prefix string, opts ...storeOpt) *Store {
	t.Helper()
	o := Options{SecretKey: e.key, RedisKeyPrefix: prefix, Logger: testLogger(t)}
	for _, f := range opts {
		f(&o)
	}
	s, err := New(e.kv, rdb, o)
	if err != nil {
		t.Fatalf("new store: %v", err)
	}
	t.Cleanup(s.Close)
	if s.cache.node != nil && rdb.Ping(context.Background()).Err() == nil {
		testinfra.WaitFor(t, 10*time.Second, "the store to confirm the cache generation", func() bool {
			return s.cache.usableGeneration() != nil
		})
	}
	return s
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newID() string { return uuid.NewString() }

func settings(url string, events ...string) Settings {
	if len(events) == 0 {
		events = []string{"file_scan.completed"}
	}
	return Settings{Enabled: true, URL: url, Events: events}
}

func mustPut(t testing.TB, s *Store, id string, set Settings) Webhook {
	t.Helper()
	cfg, _, err := s.Put(context.Background(), id, set)
	if err != nil {
		t.Fatalf("put %s: %v", id, err)
	}
	return cfg
}

func mustGet(t testing.TB, s *Store, id string) Webhook {
	t.Helper()
	cfg, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return cfg
}

// sameConfig compares every field a reader uses.
func sameConfig(t testing.TB, what string, got, want Webhook) {
	t.Helper()
	g, w := fmt.Sprintf("%+v", got), fmt.Sprintf("%+v", want)
	if g != w || !got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Fatalf("%s:\n got  %s\n want %s", what, g, w)
	}
}

// rawCacheValue returns the Redis value of id in the store's current
// generation ("" when absent).
func rawCacheValue(t testing.TB, s *Store, rdb *redis.Client, id string) string {
	t.Helper()
	g := s.cache.gen.Load()
	if g == nil {
		t.Fatal("store knows no generation")
	}
	v, err := rdb.Get(context.Background(), g.keyPrefix+id).Result()
	if errors.Is(err, redis.Nil) {
		return ""
	}
	if err != nil {
		t.Fatalf("redis get: %v", err)
	}
	return v
}

// allRedisValues returns every key and value under prefix.
func allRedisValues(t testing.TB, rdb *redis.Client, prefix string) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	iter := rdb.Scan(ctx, 0, prefix+"*", 100).Iterator()
	for iter.Next(ctx) {
		v, err := rdb.Get(ctx, iter.Val()).Result()
		if err != nil {
			t.Fatalf("redis get %s: %v", iter.Val(), err)
		}
		out[iter.Val()] = v
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("redis scan: %v", err)
	}
	return out
}

// proxy is a TCP forwarder to Redis that the test can cut, to simulate a
// partition between one dispatcher and a Redis that keeps its data.
type proxy struct {
	addr   string
	target string
	ln     net.Listener
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
}

func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: ln.Addr().String(), target: target, ln: ln}
	go p.serve()
	t.Cleanup(func() { _ = ln.Close(); p.setCut(true) })
	return p
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
		go func() { _, _ = io.Copy(c, up); _ = c.Close() }()
	}
}

// setCut closes every forwarded connection and refuses new ones (true), or
// accepts connections again (false).
func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.conns = nil
	}
}

// retarget sends new connections to target and closes the forwarded
// ones, as a failover moves the clients to another Redis.
func (p *proxy) retarget(target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = target
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

func redisAddr(t testing.TB, url string) string {
	o, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	return o.Addr
}

// captureHandler counts log records, for the log-throttling test.
type captureHandler struct {
	mu      sync.Mutex
	records []string
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	var b bytes.Buffer
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.Key + "=" + a.Value.String())
		return true
	})
	h.mu.Lock()
	h.records = append(h.records, b.String())
	h.mu.Unlock()
	return nil
}
func (h *captureHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *captureHandler) WithGroup(string) slog.Handler      { return h }

func (h *captureHandler) count(substr string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.records {
		if strings.Contains(r, substr) {
			n++
		}
	}
	return n
}

func (h *captureHandler) all() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.records, "\n")
}
