package natsinfra_test

import (
	"context"
	"testing"
	"time"

	"github.com/blazelock/webhooks/internal/natsinfra"
	"github.com/blazelock/webhooks/internal/testinfra"
	"github.com/nats-io/nats.go/jetstream"
)

func TestProvisionIsIdempotent(t *testing.T) {
	ctx := context.Background()
	nc := testinfra.StartNATS(t).Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := natsinfra.CheckServer(ctx, nc, js); err != nil {
		t.Fatalf("embedded server refused: %v", err)
	}
	opts := natsinfra.DefaultOptions()
	if err := natsinfra.Provision(ctx, js, opts); err != nil {
		t.Fatalf("first provision: %v", err)
	}
	before := snapshot(t, js)
	if err := natsinfra.Provision(ctx, js, opts); err != nil {
		t.Fatalf("second provision: %v", err)
	}
	after := snapshot(t, js)
	for name, b := range before {
		if a := after[name]; a != b {
			t.Errorf("%s changed on second provision:\n before %s\n after  %s", name, b, a)
		}
	}
}

// snapshot records what a no-op must leave unchanged: creation times,
// configs and the last sequence (a KV bucket update writes nothing either).
func snapshot(t *testing.T, js jetstream.JetStream) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for name := range js.StreamNames(ctx).Name() {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = info.Created.String() + " " + jsonOf(info.Config) + " last=" + itoa(info.State.LastSeq)
		for ci := range s.ListConsumers(ctx).Info() {
			out[name+"/"+ci.Name] = ci.Created.String() + " " + jsonOf(ci.Config)
		}
	}
	if len(out) < 5 {
		t.Fatalf("expected the events and retries streams and three KV buckets, got %v", out)
	}
	return out
}

// Every bucket Buckets lists exists after provisioning, stored as asked; the
// fleet bucket forgets a crashed dispatcher's key after FleetTTL.
func TestProvisionCreatesEveryBucket(t *testing.T) {
	ctx := context.Background()
	js, _ := jetstream.New(testinfra.StartNATS(t).Connect(t))
	opts := natsinfra.DefaultOptions()
	if err := natsinfra.Provision(ctx, js, opts); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, want := range opts.Buckets() {
		names[want.Bucket] = true
		kv, err := js.KeyValue(ctx, want.Bucket)
		if err != nil {
			t.Fatalf("bucket %s: %v", want.Bucket, err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.TTL() != want.TTL || st.History() != int64(want.History) {
			t.Errorf("bucket %s stored ttl=%s history=%d, asked %s %d", want.Bucket, st.TTL(), st.History(), want.TTL, want.History)
		}
	}
	for _, b := range []string{natsinfra.WebhooksBucket, natsinfra.DeliveriesBucket, natsinfra.FleetBucket, natsinfra.PortalBucket} {
		if !names[b] {
			t.Errorf("Buckets() lacks %s", b)
		}
	}
	kv, _ := js.KeyValue(ctx, natsinfra.FleetBucket)
	if st, _ := kv.Status(ctx); st.TTL() != 30*time.Second || st.History() != 1 {
		t.Errorf("fleet bucket ttl=%s history=%d, want 30s and 1", st.TTL(), st.History())
	}
}

func TestProvisionChangesStoredOptions(t *testing.T) {
	ctx := context.Background()
	nc := testinfra.StartNATS(t).Connect(t)
	js, _ := jetstream.New(nc)
	opts := natsinfra.DefaultOptions()
	if err := natsinfra.Provision(ctx, js, opts); err != nil {
		t.Fatal(err)
	}
	opts.DuplicateWindow *= 2
	if err := natsinfra.Provision(ctx, js, opts); err != nil {
		t.Fatalf("update duplicate window: %v", err)
	}
	s, _ := js.Stream(ctx, natsinfra.EventsStream)
	info, _ := s.Info(ctx)
	if info.Config.Duplicates != opts.DuplicateWindow {
		t.Fatalf("duplicate window = %s, want %s", info.Config.Duplicates, opts.DuplicateWindow)
	}
}

func TestVersionAtLeast(t *testing.T) {
	for _, tc := range []struct {
		have, want string
		ok         bool
	}{
		{"2.15.2", "2.12.0", true},
		{"2.12.0", "2.12.0", true},
		{"2.9.10", "2.12.0", false},
		{"2.11.99", "2.12.0", false},
		{"3.0.0", "2.12.0", true},
		{"v2.12.1-beta.1", "2.12.0", true},
		{"", "2.12.0", false},
	} {
		if got := natsinfra.VersionAtLeast(tc.have, tc.want); got != tc.ok {
			t.Errorf("VersionAtLeast(%q, %q) = %v", tc.have, tc.want, got)
		}
	}
}

func TestParseEventSubject(t *testing.T) {
	for _, tc := range []struct {
		subject, integration, event string
		ok                          bool
	}{
		{"blazelock.events.0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01.file_scan.completed", "0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01", "file_scan.completed", true},
		{natsinfra.EventSubject("abc", "file_scan.failed"), "abc", "file_scan.failed", true},
		{"blazelock.events.abc", "", "", false},
		{"blazelock.events..x", "", "", false},
		{"other.events.abc.x", "", "", false},
	} {
		i, e, ok := natsinfra.ParseEventSubject(tc.subject)
		if i != tc.integration || e != tc.event || ok != tc.ok {
			t.Errorf("ParseEventSubject(%q) = %q, %q, %v", tc.subject, i, e, ok)
		}
	}
}

// On a three-node cluster with three replicas, every bucket is read from
// its leader (no direct gets, see Options.LeaderReads), and provisioning
// again, as every dispatcher does when it starts, changes nothing.
func TestProvisionReplicatedBucketsReadFromTheirLeader(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := testinfra.StartNATSCluster(t)
	js, err := jetstream.New(c.Connect())
	if err != nil {
		t.Fatal(err)
	}
	opts := natsinfra.DefaultOptions()
	opts.Replicas = 3
	if !opts.LeaderReads() || natsinfra.DefaultOptions().LeaderReads() {
		t.Fatalf("LeaderReads: %v with 3 replicas, %v with 1; want true and false", opts.LeaderReads(), natsinfra.DefaultOptions().LeaderReads())
	}
	if err := natsinfra.Provision(ctx, js, opts); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, js)
	for _, b := range opts.Buckets() {
		s, err := js.Stream(ctx, "KV_"+b.Bucket)
		if err != nil {
			t.Fatal(err)
		}
		if cfg := s.CachedInfo().Config; cfg.AllowDirect || cfg.Replicas != 3 {
			t.Errorf("bucket %s: allow_direct=%v replicas=%d, want false and 3", b.Bucket, cfg.AllowDirect, cfg.Replicas)
		}
	}
	if err := natsinfra.Provision(ctx, js, opts); err != nil {
		t.Fatal(err)
	}
	for name, b := range snapshot(t, js) {
		if before[name] != b {
			t.Errorf("%s changed on second provision:\n before %s\n after  %s", name, before[name], b)
		}
	}
}
