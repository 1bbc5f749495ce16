package harness_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/blazelock/webhooks/internal/harness"
)

// TestProcessTerminate: Terminate reports the exit code a child chooses on
// SIGTERM; a child that ignores SIGTERM is killed after the timeout, and
// that is an error. Every signal is marked in the log.
func TestProcessTerminate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		script   string
		wantCode int
		wantErr  bool
	}{
		{"exits on SIGTERM", `trap 'exit 3' TERM; echo up; while :; do sleep 0.05; done`, 3, false},
		{"ignores SIGTERM", `trap '' TERM; echo up; while :; do sleep 0.05; done`, -1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			log := &harness.LogBuffer{}
			cmd := exec.Command("sh", "-c", tc.script)
			cmd.Stdout = log
			p, err := harness.StartProcess("child", cmd, log)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.Kill)
			// The trap must be set before the signal: wait for the echo.
			if err := harness.Poll(context.Background(), 10*time.Second, 10*time.Millisecond, "the child up", func() (bool, error) {
				return log.Contains("up\n"), nil
			}); err != nil {
				t.Fatal(err)
			}
			code, took, err := p.Terminate(300 * time.Millisecond)
			if code != tc.wantCode || (err != nil) != tc.wantErr {
				t.Fatalf("Terminate: code %d, err %v; want code %d, an error: %v", code, err, tc.wantCode, tc.wantErr)
			}
			if p.Running() {
				t.Fatal("the child still runs after Terminate")
			}
			if tc.wantErr && took < 300*time.Millisecond {
				t.Errorf("gave up after %s, before the timeout", took)
			}
			if !log.Contains("--- test: starting child at ") || !log.Contains("--- test: terminated to child at ") {
				t.Errorf("markers missing:\n%s", log)
			}
		})
	}
}

// TestEmbeddedNATSRestart: a server started on a random port comes back
// on the same port with the same store: a client reconnects on its own
// and the stream still holds what it held.
func TestEmbeddedNATSRestart(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := harness.StartEmbeddedNATS(ctx, harness.JetStreamOptions("test", t.TempDir(), server.RANDOM_PORT))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Shutdown)
	url := n.URL()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "t", []byte("kept")); err != nil {
		t.Fatal(err)
	}

	n.Shutdown()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if n.URL() != url {
		t.Fatalf("restarted at %s, want %s", n.URL(), url)
	}
	var msgs uint64
	if err := harness.Poll(ctx, 30*time.Second, 50*time.Millisecond, "the stream back after the restart", func() (bool, error) {
		s, err := js.Stream(ctx, "T")
		if err != nil {
			return false, nil
		}
		msgs = s.CachedInfo().State.Msgs
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	if msgs != 1 {
		t.Fatalf("the stream holds %d messages after the restart, want 1", msgs)
	}
}

// TestRedisRestart: a persistent server killed with SIGKILL comes back on
// the same address with every acknowledged write; a cache comes back
// empty.
func TestRedisRestart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		persistent bool
		want       string
	}{
		{"persistent", true, "kept"},
		{"cache", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := harness.NewRedis(harness.RedisOptions{Name: tc.name, Dir: t.TempDir(), Persistent: tc.persistent})
			if errors.Is(err, harness.ErrNoRedisServer) {
				if os.Getenv("CI") == "true" {
					t.Fatal(err)
				}
				t.Skip("SKIPPED LOUDLY: " + err.Error())
			}
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			t.Cleanup(r.Kill)
			if err := r.Start(ctx); err != nil {
				t.Fatal(err)
			}
			opts, err := redis.ParseURL(r.URL())
			if err != nil {
				t.Fatal(err)
			}
			c := redis.NewClient(opts)
			t.Cleanup(func() { _ = c.Close() })
			if err := c.Set(ctx, "k", "kept", 0).Err(); err != nil {
				t.Fatal(err)
			}
			r.Kill()
			if err := harness.PingRedis(ctx, r.URL()); err == nil {
				t.Fatal("a killed server answers PING")
			}
			if err := r.Start(ctx); err != nil {
				t.Fatal(err)
			}
			got, err := c.Get(ctx, "k").Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("after the restart k is %q, want %q", got, tc.want)
			}
		})
	}
}

// TestDispatcherStartFailsFast: a child that exits during start-up is
// reported with how it ended, well before the readiness timeout.
func TestDispatcherStartFailsFast(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("false")
	if err != nil {
		t.Fatalf("no false(1) on PATH: %v", err)
	}
	start := time.Now()
	_, err = harness.StartDispatcher(context.Background(), harness.DispatcherOptions{Name: "broken", Bin: bin})
	if err == nil || !strings.Contains(err.Error(), "exited during start-up: exit status 1") {
		t.Fatalf("err %v, want an exit during start-up", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s to notice", d)
	}
}
