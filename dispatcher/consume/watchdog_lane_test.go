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
// unanswered pulls, when a run of them starts and ends, and how long the
// lane has then been silent (from 2 s before the run's first miss, when
// nats.go last saw an answer, to its last). The events are given at
// offsets in seconds from an arbitrary start; while pulls go unanswered
// nats.go reports a miss every 2 s.
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
		// want is the lane's silence, in seconds; 0: answered.
		want float64
	}{
		{"nothing happened", nil, 10, 0},
		{"a miss starts a run", []event{miss(1)}, 2, 2},
		{"a single miss ends after the gap", []event{miss(1)}, 1 + missGap.Seconds() + 0.1, 0},
		{"misses every 2 s continue the run", []event{miss(1), miss(3), miss(5), miss(7), miss(9), miss(11)}, 12, 12},
		{"the silence is counted to the last miss", []event{miss(1), miss(3)}, 3 + missGap.Seconds(), 4},
		{"a message ends the run", []event{miss(1), miss(3), {at: 4, message: true}}, 4.5, 0},
		{"a miss after a message starts a new run", []event{miss(1), miss(3), {at: 4, message: true}, miss(6)}, 7, 2},
		{"a miss after the gap starts a new run", []event{miss(1), miss(3), miss(3 + missGap.Seconds() + 1), miss(10)}, 10.5, 4},
		{"no responders counts as unanswered", []event{{at: 1, err: nats.ErrNoResponders}, miss(3)}, 4, 4},
		{"a leadership change is no miss", []event{{at: 1, err: jetstream.ErrConsumerLeadershipChanged}}, 2, 0},
		{"a closed connection is no miss", []event{{at: 1, err: jetstream.ErrConnectionClosed}}, 2, 0},
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
			if got, want := l.silence(at(tc.at)), time.Duration(tc.want*float64(time.Second)); got != want {
				t.Fatalf("silence %s, want %s (0: answered)", got, want)
			}
		})
	}
}

// TestWatchdogNeedsEveryLaneUnanswered: one lane whose pulls go
// unanswered is that consumer's trouble, which another server would not
// cure; only when every lane's pulls have gone unanswered for StallAfter
// does the process count as stalled, and one answer clears it. The lanes
// are fed pull outcomes directly, a miss every 2 s; the connection is
// real (one server: it is never asked to reconnect).
func TestWatchdogNeedsEveryLaneUnanswered(t *testing.T) {
	t.Parallel()
	s := testinfra.StartEmbeddedNATS(t)
	nc, err := nats.Connect(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	logs := &testinfra.LogBuffer{}
	w := NewWatchdog(WatchdogOptions{StallAfter: DefaultStallAfter, Conn: nc, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	events, retries := w.lane("events"), w.lane("retries")
	start := time.Now()
	at := func(s int) time.Time { return start.Add(time.Duration(s) * time.Second) }
	stalled := func(now int, want bool) {
		t.Helper()
		w.check(at(now))
		if got := w.Stalled(); (got != "") != want {
			t.Fatalf("at %ds: stalled = %q, want stalled %t", now, got, want)
		}
	}

	// events silent from -2 s on, retries from 9 s on.
	for s := 0; s <= 10; s += 2 {
		events.pullError(at(s), jetstream.ErrNoHeartbeat)
	}
	retries.pullError(at(11), jetstream.ErrNoHeartbeat)
	stalled(11, false)
	for s := 12; s <= 19; s++ {
		lane := map[bool]*laneWatch{true: events, false: retries}[s%2 == 0]
		lane.pullError(at(s), jetstream.ErrNoHeartbeat)
		stalled(s, false) // retries silent for 10 s at most
	}
	retries.pullError(at(21), jetstream.ErrNoHeartbeat)
	stalled(21, true)
	if r := w.Stalled(); !strings.Contains(r, "events, retries") || !strings.Contains(r, "12s") || !strings.Contains(r, nc.ConnectedUrlRedacted()) {
		t.Fatalf("stalled = %q, want the lanes, the silence and the server named", r)
	}
	retries.message()
	stalled(22, false)
	for line, want := range map[string]int{"answered none": 1, "answers this process's pulls again": 1, "moving to another": 0} {
		if n := strings.Count(logs.String(), line); n != want {
			t.Errorf("%q logged %d times, want %d:\n%s", line, n, want, logs)
		}
	}
}
