package consume_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/blazelock/webhooks/dispatcher/consume"
	"github.com/blazelock/webhooks/internal/testinfra"
)

// The watchdog tests run a lane against embedded servers of their own,
// reached through a testinfra.Proxy: cutting the proxy stalls the
// connection without closing it, as a server cut off from its cluster
// looks to its clients (nats.go's pings, every two minutes, do not notice
// within a test). stallAfter is shorter than production's
// DefaultStallAfter to keep the tests short, but needs more than one
// missed heartbeat (2 s of silence each).
const stallAfter = 5 * time.Second

// earliest is the soonest a stall can be reported after a cut: the
// silence counts from the last answer, which came at most a heartbeat
// (1 s) before the cut.
const earliest = stallAfter - time.Second

const (
	stalledLine = "JetStream has answered none of this process's pulls"
	movingLine  = "moving to another NATS server"
	againLine   = "JetStream answers this process's pulls again"
)

// watched starts a lane on nc, watched by a watchdog that logs to the
// returned buffer, and checks that one message is handled.
func watched(t *testing.T, nc *nats.Conn) (*fixture, *consume.Watchdog, *recorder, *testinfra.LogBuffer) {
	t.Helper()
	logs := &testinfra.LogBuffer{}
	f := newFixtureOn(t, nc, fixtureOptions{})
	f.watchdog = consume.NewWatchdog(consume.WatchdogOptions{
		StallAfter: stallAfter, Conn: nc, Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	r := &recorder{}
	f.run(r.handle, nil, 0)
	ctx, cancel := context.WithCancel(context.Background())
	go f.watchdog.Run(ctx)
	t.Cleanup(cancel)
	f.publish("k", "before")
	r.waitCalls(t, 1, 5*time.Second)
	return f, f.watchdog, r, logs
}

// TestWatchdogIdleLaneIsAnswered: an idle lane on a healthy server gets
// heartbeats and never counts as stalled, however long nothing arrives.
func TestWatchdogIdleLaneIsAnswered(t *testing.T) {
	t.Parallel()
	s := testinfra.StartEmbeddedNATS(t)
	nc := connect(t, s.URL)
	_, w, _, logs := watched(t, nc)
	holds(t, 3*stallAfter, "an idle lane on a healthy server is not stalled", func() bool { return w.Stalled() == "" })
	if logs.Contains(stalledLine) {
		t.Fatalf("watchdog logged a stall on a healthy server:\n%s", logs)
	}
}

// TestWatchdogCutOffSingleServer: the only server stops answering while
// the connection stays up. The watchdog reports a stall after
// stallAfter (one warning), never reconnects (there is nowhere to go),
// and reports recovery once the link is back and the lane delivers.
func TestWatchdogCutOffSingleServer(t *testing.T) {
	t.Parallel()
	s := testinfra.StartEmbeddedNATS(t)
	proxy := testinfra.StartProxy(t, strings.TrimPrefix(s.URL, "nats://"))
	nc := connect(t, "nats://"+proxy.Addr())
	f, w, r, logs := watched(t, nc)

	cut := time.Now()
	proxy.Cut()
	t.Cleanup(proxy.Heal) // before the stream is deleted through it
	testinfra.WaitFor(t, stallAfter+5*time.Second, "the watchdog to report a stall", func() bool { return w.Stalled() != "" })
	t.Logf("stall reported %s after the cut: %s", time.Since(cut).Round(100*time.Millisecond), w.Stalled())
	if d := time.Since(cut); d < earliest {
		t.Fatalf("stall reported %s after the cut, want at least %s", d, earliest)
	}
	holds(t, 2*stallAfter, "still stalled, connected to the one server", func() bool {
		return w.Stalled() != "" && nc.IsConnected()
	})
	if n := strings.Count(logs.String(), stalledLine); n != 1 {
		t.Fatalf("stall logged %d times, want once:\n%s", n, logs)
	}
	if logs.Contains(movingLine) || nc.Stats().Reconnects != 0 {
		t.Fatalf("watchdog reconnected (%d reconnects) with one server known:\n%s", nc.Stats().Reconnects, logs)
	}

	proxy.Heal()
	healed := time.Now()
	f.publish("k", "after")
	r.waitCalls(t, 2, 10*time.Second)
	testinfra.WaitFor(t, 5*time.Second, "the watchdog to report recovery", func() bool { return w.Stalled() == "" })
	t.Logf("recovery reported %s after the heal", time.Since(healed).Round(100*time.Millisecond))
	if n := strings.Count(logs.String(), againLine); n != 1 {
		t.Fatalf("recovery logged %d times, want once:\n%s", n, logs)
	}
}

// TestWatchdogMovesToAnotherServer: the connection knows two servers (two
// independent ones, each holding the stream and consumer) and the one it
// uses stops answering. The watchdog reports the stall, reconnects once,
// and the lane delivers from the other server; the stall clears.
func TestWatchdogMovesToAnotherServer(t *testing.T) {
	t.Parallel()
	s1 := testinfra.StartEmbeddedNATS(t)
	s2 := testinfra.StartEmbeddedNATS(t)
	other := newFixtureOn(t, connect(t, s2.URL), fixtureOptions{})
	proxy := testinfra.StartProxy(t, strings.TrimPrefix(s1.URL, "nats://"))
	// In this order: through the proxy first.
	nc := connect(t, "nats://"+proxy.Addr()+","+s2.URL, nats.DontRandomize())
	_, w, r, logs := watched(t, nc)

	cut := time.Now()
	proxy.Cut()
	t.Cleanup(proxy.Heal)
	testinfra.WaitFor(t, stallAfter+5*time.Second, "the connection to move to the other server", func() bool {
		return nc.IsConnected() && nc.ConnectedUrl() == s2.URL
	})
	moved := time.Since(cut)
	other.publish("k", "on the other server")
	r.waitCalls(t, 2, 10*time.Second)
	testinfra.WaitFor(t, 10*time.Second, "the watchdog to report recovery", func() bool { return w.Stalled() == "" })
	t.Logf("moved %s after the cut; delivering again %s after it", moved.Round(100*time.Millisecond), time.Since(cut).Round(100*time.Millisecond))
	if moved < earliest {
		t.Fatalf("moved %s after the cut, want at least %s", moved, earliest)
	}
	for _, line := range []string{stalledLine, movingLine, againLine} {
		if n := strings.Count(logs.String(), line); n != 1 {
			t.Fatalf("%q logged %d times, want once:\n%s", line, n, logs)
		}
	}
	if n := nc.Stats().Reconnects; n != 1 {
		t.Fatalf("%d reconnects, want 1", n)
	}
}

func connect(t *testing.T, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, append([]nats.Option{nats.Name(t.Name()), nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(fmt.Errorf("connect to %s: %w", url, err))
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestWatchdogReconnectsAtMostOncePerStallAfter: no server serves the
// lane (the one it used is cut off, the other has no such consumer), so
// the stall persists wherever the connection goes: the watchdog keeps
// trying, but not more than once per stallAfter.
func TestWatchdogReconnectsAtMostOncePerStallAfter(t *testing.T) {
	t.Parallel()
	s1 := testinfra.StartEmbeddedNATS(t)
	s2 := testinfra.StartEmbeddedNATS(t) // no stream
	proxy := testinfra.StartProxy(t, strings.TrimPrefix(s1.URL, "nats://"))
	nc := connect(t, "nats://"+proxy.Addr()+","+s2.URL, nats.DontRandomize())
	_, w, _, logs := watched(t, nc)

	proxy.Cut()
	t.Cleanup(proxy.Heal)
	testinfra.WaitFor(t, stallAfter+5*time.Second, "the first move", func() bool { return logs.Contains(movingLine) })
	first := time.Now()
	holds(t, 3*stallAfter+stallAfter/2, "still stalled", func() bool { return w.Stalled() != "" || !nc.IsConnected() })
	moves := movesIn(t, logs.String())
	t.Logf("%d moves in %s: %v", len(moves), time.Since(first).Round(100*time.Millisecond), moves)
	if len(moves) < 3 {
		t.Fatalf("%d moves in 3.5 × stallAfter, want it to keep trying (3 or 4)", len(moves))
	}
	// The lines are stamped, to the millisecond, a moment after the
	// decision, which is taken on a ticker: allow them a little slack.
	const slack = 100 * time.Millisecond
	for i := 1; i < len(moves); i++ {
		if d := moves[i].Sub(moves[i-1]); d < stallAfter-slack {
			t.Fatalf("moves %d and %d %s apart, want at least stallAfter %s", i, i+1, d, stallAfter)
		}
	}
}

// movesIn returns the times of the watchdog's "moving" lines.
func movesIn(t *testing.T, logs string) []time.Time {
	t.Helper()
	var moves []time.Time
	for line := range strings.Lines(logs) {
		if !strings.Contains(line, movingLine) {
			continue
		}
		field, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		at, err := time.Parse(time.RFC3339Nano, field)
		if err != nil {
			t.Fatalf("log line without a time: %s", line)
		}
		moves = append(moves, at)
	}
	return moves
}
