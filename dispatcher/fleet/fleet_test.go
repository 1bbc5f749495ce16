package fleet

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/blazelock/webhooks/internal/natsinfra"
	"github.com/blazelock/webhooks/internal/testinfra"
)

// connect opens a JetStream handle of its own on url, as each dispatcher
// process has, and provisions the buckets. The fleet bucket is emptied
// first so an external NATS_URL server starts the test clean.
func connect(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.Name(t.Name()), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func freshBucket(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx := context.Background()
	if err := js.DeleteKeyValue(ctx, natsinfra.FleetBucket); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Fatal(err)
	}
	if err := natsinfra.Provision(ctx, js, natsinfra.DefaultOptions()); err != nil {
		t.Fatal(err)
	}
}

func join(t *testing.T, js jetstream.JetStream, o Options) *Fleet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, err := Join(ctx, js, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close(context.Background()) })
	return f
}

func waitSize(t *testing.T, f *Fleet, want int, within time.Duration) {
	t.Helper()
	testinfra.WaitFor(t, within, f.ID()+" to count "+strconv.Itoa(want), func() bool { return f.Size() == want })
}

// sizes records OnChange calls.
type sizes struct {
	mu  sync.Mutex
	got []int
}

func (s *sizes) add(n int) { s.mu.Lock(); s.got = append(s.got, n); s.mu.Unlock() }
func (s *sizes) list() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

func TestMembersCountEachOtherAndCloseIsSeenAtOnce(t *testing.T) {
	url := testinfra.StartNATS(t).URL
	freshBucket(t, connect(t, url))
	// StaleAfter is far above the waits below: what they see is the watch,
	// not staleness.
	o := Options{Heartbeat: time.Second, StaleAfter: 20 * time.Second}
	var changes sizes
	oa := o
	oa.ID, oa.OnChange = "a", changes.add
	a := join(t, connect(t, url), oa)
	if a.Size() != 1 {
		t.Fatalf("alone: size %d", a.Size())
	}
	b := join(t, connect(t, url), Options{ID: "b", Heartbeat: o.Heartbeat, StaleAfter: o.StaleAfter})
	if b.Size() != 2 {
		t.Fatalf("b counts %d right after joining, want 2", b.Size())
	}
	waitSize(t, a, 2, time.Second)
	c := join(t, connect(t, url), Options{ID: "c", Heartbeat: o.Heartbeat, StaleAfter: o.StaleAfter})
	if c.Size() != 3 {
		t.Fatalf("c counts %d right after joining, want 3", c.Size())
	}
	waitSize(t, a, 3, time.Second)
	waitSize(t, b, 3, time.Second)

	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitSize(t, a, 2, time.Second)
	waitSize(t, b, 2, time.Second)
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitSize(t, a, 1, time.Second)
	if got := changes.list(); !slices.Equal(got, []int{2, 3, 2, 1}) {
		t.Fatalf("OnChange got %v, want [2 3 2 1]", got)
	}
}

// A process that dies without Close leaves its key behind; the others stop
// counting it StaleAfter after its last heartbeat, and a process joining
// later never counts it.
func TestSilentMemberIsCountedOutAfterStaleAfter(t *testing.T) {
	url := testinfra.StartNATS(t).URL
	js := connect(t, url)
	freshBucket(t, js)
	o := Options{Heartbeat: 50 * time.Millisecond, StaleAfter: 400 * time.Millisecond}
	oa := o
	oa.ID = "a"
	a := join(t, connect(t, url), oa)
	ob := o
	ob.ID = "b"
	b := join(t, connect(t, url), ob)
	waitSize(t, a, 2, time.Second)

	crashed := time.Now()
	b.stop() // as a crash: no more heartbeats, the key stays
	waitSize(t, a, 1, 5*time.Second)
	if since := time.Since(crashed); since < o.StaleAfter-o.Heartbeat {
		t.Fatalf("b counted out %s after its last heartbeat, before StaleAfter %s", since, o.StaleAfter)
	}
	kv, _ := js.KeyValue(context.Background(), natsinfra.FleetBucket)
	if _, err := kv.Get(context.Background(), "b"); err != nil {
		t.Fatalf("the crashed member's key should still be in the bucket: %v", err)
	}
	oc := o
	oc.ID = "c"
	c := join(t, connect(t, url), oc)
	if c.Size() != 2 {
		t.Fatalf("a late joiner counts %d, want 2 (a and itself, not the stale b)", c.Size())
	}
}

func TestJoinRejectsStaleAfterOutsideHeartbeatAndTTL(t *testing.T) {
	js := connect(t, testinfra.StartNATS(t).URL)
	for _, o := range []Options{
		{Heartbeat: time.Second, StaleAfter: time.Second},
		{Heartbeat: time.Second, StaleAfter: natsinfra.FleetTTL},
		{Heartbeat: 20 * time.Second}, // default StaleAfter 60s
	} {
		if _, err := Join(context.Background(), js, o); err == nil || !strings.Contains(err.Error(), "stale-after") {
			t.Errorf("Join(%+v) = %v, want a stale-after error", o, err)
		}
	}
	// An unprovisioned server: the error says so.
	if _, err := Join(context.Background(), js, Options{}); err == nil || !strings.Contains(err.Error(), "provisioned") {
		t.Errorf("Join on an unprovisioned server = %v", err)
	}
}

func TestGeneratedIDIsAValidKey(t *testing.T) {
	js := connect(t, testinfra.StartNATS(t).URL)
	freshBucket(t, js)
	f := join(t, js, Options{})
	if f.ID() == "" || !strings.Contains(f.ID(), "-") {
		t.Fatalf("generated id %q", f.ID())
	}
	kv, _ := js.KeyValue(context.Background(), natsinfra.FleetBucket)
	e, err := kv.Get(context.Background(), f.ID())
	if err != nil || !strings.Contains(string(e.Value()), `"heartbeat_at"`) {
		t.Fatalf("key %q: %v %v", f.ID(), e, err)
	}
}

// While NATS restarts nobody is counted out (a process that cannot hear its
// own heartbeats does not trust the silence of the others); afterwards the
// heartbeats and the watch carry on, so a process joining then is seen.
func TestMembershipSurvivesNATSRestart(t *testing.T) {
	s := testinfra.StartEmbeddedNATS(t) // its own, whatever NATS_URL says
	url := s.URL
	freshBucket(t, connect(t, url))

	logs := &testinfra.LogBuffer{}
	o := Options{Heartbeat: 100 * time.Millisecond, StaleAfter: 500 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil))}
	oa := o
	oa.ID = "a"
	a := join(t, connect(t, url), oa)
	ob := o
	ob.ID = "b"
	b := join(t, connect(t, url), ob)
	waitSize(t, a, 2, time.Second)

	s.Stop()
	down := time.Now()
	testinfra.WaitFor(t, 5*time.Second, "an outage of twice StaleAfter", func() bool {
		if a.Size() != 2 || b.Size() != 2 {
			t.Fatalf("%s into the outage a counts %d, b %d; want 2 each", time.Since(down), a.Size(), b.Size())
		}
		return time.Since(down) > 2*o.StaleAfter
	})
	if !logs.Contains("fleet heartbeat failed") || !logs.Contains("does not hear its own heartbeats") {
		t.Fatalf("the outage was not logged:\n%s", logs)
	}

	s.Start()
	restarted := time.Now()
	oc := o
	oc.ID = "c"
	c := join(t, connect(t, url), oc)
	waitSize(t, c, 3, 5*time.Second)
	waitSize(t, a, 3, 30*time.Second)
	t.Logf("a saw c %s after the restart", time.Since(restarted).Round(time.Millisecond))
	waitSize(t, b, 3, 30*time.Second)
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitSize(t, a, 2, 5*time.Second)
	if !logs.Contains("fleet heartbeat recovered") {
		t.Errorf("no recovery logged:\n%s", logs)
	}
}
