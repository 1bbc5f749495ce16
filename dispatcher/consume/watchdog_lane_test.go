package consume

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/blazelock/webhooks/internal/testinfra"
)

// TestLaneWatchCountsRunsOfUnansweredPulls: which pull errors count as
// unanswered pulls, and when a run of them starts and ends. The events
// are given at offsets in seconds from an arbitrary start; while pulls go
// unanswered nats.go reports a miss every 2 s.
func TestLaneWatchCountsRunsOfUnansweredPulls(t *testing.T) {
	t.Parallel()
	type event struct {
		at      float64
		err     error // a pull error, unless message
		message bool  // a message arrived
	}
	miss := func(at float64) event { return event{at: at, err: jetstream.ErrNoHeartbeat} }
	cases := []struct {
		name   string
		events []event
		at     float64
		// want is when the current run began, in seconds; -1: answered.
		want float64
	}{
		{"nothing happened", nil, 10, -1},
		{"a miss starts a run", []event{miss(1)}, 2, 1},
		{"a single miss ends after the gap", []event{miss(1)}, 1 + missGap.Seconds() + 0.1, -1},
		{"misses every 2 s continue the run", []event{miss(1), miss(3), miss(5), miss(7), miss(9), miss(11)}, 12, 1},
		{"a message ends the run", []event{miss(1), miss(3), {at: 4, message: true}}, 4.5, -1},
		{"a miss after a message starts a new run", []event{miss(1), miss(3), {at: 4, message: true}, miss(6)}, 7, 6},
		{"a miss after the gap starts a new run", []event{miss(1), miss(3), miss(3 + missGap.Seconds() + 1)}, 9, 3 + missGap.Seconds() + 1},
		{"no responders counts as unanswered", []event{{at: 1, err: nats.ErrNoResponders}, miss(3)}, 4, 1},
		{"a leadership change is no miss", []event{{at: 1, err: jetstream.ErrConsumerLeadershipChanged}}, 2, -1},
		{"a closed connection is no miss", []event{{at: 1, err: jetstream.ErrConnectionClosed}}, 2, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			at := func(s float64) time.Time { return start.Add(time.Duration(s * float64(time.Second))) }
			l := &laneWatch{name: "test"}
			for _, e := range tc.events {
				if e.message {
					l.message()
					continue
				}
				l.pullError(at(e.at), e.err)
			}
			got := l.unansweredSince(at(tc.at))
			switch {
			case tc.want < 0 && !got.IsZero():
				t.Fatalf("unanswered since %s, want answered", got.Sub(start))
			case tc.want >= 0 && !got.Equal(at(tc.want)):
				t.Fatalf("unanswered since %s (zero: answered), want since %.1fs", got.Sub(start), tc.want)
			}
		})
	}
}

// TestWatchdogNeedsEveryLaneUnanswered: one lane whose pulls go
// unanswered is that consumer's trouble, which another server would not
// cure; only when every lane's pulls have gone unanswered for StallAfter
// does the process count as stalled, and one answer clears it. The lanes
// are fed pull outcomes directly; the connection is real (one server: it
// is never asked to reconnect).
func TestWatchdogNeedsEveryLaneUnanswered(t *testing.T) {
	t.Parallel()
	s := testinfra.RunEmbeddedNATS(t, t.TempDir())
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	logs := &testinfra.LogBuffer{}
	const stallAfter = 10 * time.Second
	w := NewWatchdog(WatchdogOptions{StallAfter: stallAfter, Conn: nc, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	events, retries := w.lane("events"), w.lane("retries")
	start := time.Now()
	at := func(s int) time.Time { return start.Add(time.Duration(s) * time.Second) }

	for s := 0; s <= 12; s += 2 {
		events.pullError(at(s), jetstream.ErrNoHeartbeat)
	}
	retries.pullError(at(11), jetstream.ErrNoHeartbeat)
	w.check(at(12))
	if r := w.Stalled(); r != "" {
		t.Fatalf("stalled with one lane unanswered for 12 s and the other for 1 s: %s", r)
	}
	for s := 13; s <= 21; s += 2 {
		events.pullError(at(s), jetstream.ErrNoHeartbeat)
		retries.pullError(at(s), jetstream.ErrNoHeartbeat)
	}
	w.check(at(20))
	if r := w.Stalled(); r != "" {
		t.Fatalf("stalled with the retries lane unanswered for 9 s: %s", r)
	}
	w.check(at(21))
	r := w.Stalled()
	if !strings.Contains(r, "events, retries") || !strings.Contains(r, nc.ConnectedUrlRedacted()) {
		t.Fatalf("stalled = %q, want the lanes and the server named", r)
	}
	retries.message()
	w.check(at(22))
	if r := w.Stalled(); r != "" {
		t.Fatalf("still stalled after a message: %s", r)
	}
	for line, want := range map[string]int{"answered none": 1, "answers this process's pulls again": 1, "moving to another": 0} {
		if n := strings.Count(logs.String(), line); n != want {
			t.Errorf("%q logged %d times, want %d:\n%s", line, n, want, logs)
		}
	}
}
