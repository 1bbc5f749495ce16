package consume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A process whose NATS server is cut off from the rest of a cluster keeps
// its connection: nats.go neither reconnects elsewhere nor reports
// anything but missed pull heartbeats, and the process would deliver
// nothing, yet look ready, until the partition heals. The watchdog
// notices: a healthy server answers every waiting pull with a heartbeat
// each pullHeartbeat, even when there is nothing to deliver, so a lane
// whose pulls get neither messages nor heartbeats is talking to a server
// (or consumer leader) that does not answer.

// DefaultStallAfter is how long every lane's pulls must have gone
// unanswered before the process counts as cut off: six unanswered pulls
// in a row on every lane (nats.go reports a miss, and pulls again, after
// each 2 × pullHeartbeat without an answer), the first missed 2 s after
// the last answer, the sixth 10 s after the first. A single lost pull on a
// healthy server (nats-io/nats.go#1622) costs one miss. A consumer
// leader's election after a node crash paused the cluster fault tests'
// deliveries (reliability/) for at most 8.4 s, and its misses spanned at
// most 6 s: fewer than six misses, so elections do not count. Longer would
// only leave a cut-off process idle for longer; what it holds goes to the
// others after AckWait anyway.
const DefaultStallAfter = 12 * time.Second

// missedAfter is how long after a pull's last answer nats.go reports its
// heartbeat missed.
const missedAfter = 2 * pullHeartbeat

// missGap: while a lane's pulls go unanswered, a miss comes every
// missedAfter. A gap of twice that (slack for a loaded machine's timers)
// after the last miss means the pull made then was answered.
const missGap = 2 * missedAfter

// Conn is what the watchdog needs of the NATS connection (*nats.Conn).
type Conn interface {
	IsConnected() bool
	ConnectedUrlRedacted() string
	// Servers lists the servers the connection knows, configured and
	// discovered, the current one included.
	Servers() []string
	ForceReconnect() error
}

// WatchdogOptions configure a Watchdog.
type WatchdogOptions struct {
	// StallAfter is how long every lane's pulls must go unanswered,
	// while the connection is up, before the process counts as cut off
	// (DefaultStallAfter in production).
	StallAfter time.Duration
	Conn       Conn
	Logger     *slog.Logger
}

// Watchdog tells whether JetStream still answers this process's pulls.
// When every lane's pulls have gone unanswered for StallAfter while the
// connection is up, Stalled names the reason (readiness turns it into a
// 503), a warning is logged once, and, if the connection knows another
// server, it is made to reconnect to one (at most once per StallAfter),
// so the process moves to a node that can serve it. On a single server
// it only reports. Lanes are watched by passing the watchdog to Run.
type Watchdog struct {
	o WatchdogOptions

	mu     sync.Mutex
	lanes  []*laneWatch
	reason string    // "" while the pulls are answered
	moved  time.Time // the last forced reconnect
}

// NewWatchdog returns a watchdog with no lane; Run drives it.
func NewWatchdog(o WatchdogOptions) *Watchdog {
	return &Watchdog{o: o}
}

// Stalled returns why this process's pulls count as unanswered, or "".
func (w *Watchdog) Stalled() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reason
}

// Run checks the lanes every pullHeartbeat until ctx ends.
func (w *Watchdog) Run(ctx context.Context) {
	tick := time.NewTicker(pullHeartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			w.check(now)
		}
	}
}

// check looks at the lanes as of now and acts on a change.
func (w *Watchdog) check(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.o.Conn.IsConnected() {
		// Reconnecting: readiness says so already, and nats.go watches no
		// heartbeat meanwhile. The verdict waits for the new connection.
		return
	}
	var silence time.Duration // the shortest silence of a lane
	var names []string
	for i, l := range w.lanes {
		s := l.silence(now)
		if i == 0 || s < silence {
			silence = s
		}
		names = append(names, l.name)
	}
	if len(w.lanes) == 0 || silence < w.o.StallAfter {
		if w.reason != "" {
			w.reason = ""
			w.o.Logger.Info("JetStream answers this process's pulls again: ready", "nats", w.o.Conn.ConnectedUrlRedacted())
		}
		return
	}
	url := w.o.Conn.ConnectedUrlRedacted()
	servers := len(w.o.Conn.Servers())
	if w.reason == "" {
		w.o.Logger.Warn("JetStream has answered none of this process's pulls for a while although NATS is connected: not ready",
			"for", silence.Round(time.Second), "lanes", strings.Join(names, ","), "nats", url, "known_servers", servers)
	}
	w.reason = fmt.Sprintf("JetStream has answered no pull of lanes %s for %s, although connected to NATS at %s",
		strings.Join(names, ", "), silence.Round(time.Second), url)
	if servers > 1 && (w.moved.IsZero() || now.Sub(w.moved) >= w.o.StallAfter) {
		w.moved = now
		w.o.Logger.Warn("moving to another NATS server", "from", url, "known_servers", servers)
		if err := w.o.Conn.ForceReconnect(); err != nil {
			w.o.Logger.Warn("NATS reconnect refused", "err", err)
		}
	}
}

// lane starts watching a lane called name.
func (w *Watchdog) lane(name string) *laneWatch {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := &laneWatch{name: name}
	w.lanes = append(w.lanes, l)
	return l
}

// laneWatch is one lane's record of answered and unanswered pulls.
type laneWatch struct {
	name string
	// messages counts the messages received: each one is an answer.
	messages atomic.Uint64

	mu sync.Mutex
	// firstMiss and lastMiss bound the current run of misses;
	// messagesAtMiss is messages at lastMiss.
	firstMiss, lastMiss time.Time
	messagesAtMiss      uint64
}

// message records an answered pull; it runs for every message.
func (l *laneWatch) message() { l.messages.Add(1) }

// pullError records a pull error: a missed heartbeat, or no server to
// answer (nats-server's 503 for a pull nobody subscribes to, once the
// routes to the consumer's leader are gone), counts as unanswered.
func (l *laneWatch) pullError(now time.Time, err error) {
	if !errors.Is(err, jetstream.ErrNoHeartbeat) && !errors.Is(err, nats.ErrNoResponders) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.missingLocked(now) {
		l.firstMiss = now
	}
	l.lastMiss, l.messagesAtMiss = now, l.messages.Load()
}

// silence returns how long the lane's pulls had gone unanswered at its
// last miss, or 0 if they are answered now: from missedAfter before the
// first miss of the current run to its last.
func (l *laneWatch) silence(now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.missingLocked(now) {
		return 0
	}
	return l.lastMiss.Sub(l.firstMiss) + missedAfter
}

// missingLocked reports whether a run of misses is current: no message
// since its last miss, and that miss recent enough for the pull made then
// to be still unanswered.
func (l *laneWatch) missingLocked(now time.Time) bool {
	return !l.firstMiss.IsZero() && l.messages.Load() == l.messagesAtMiss && now.Sub(l.lastMiss) <= missGap
}
