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

// DefaultStallAfter is how long every lane must have had its pulls go
// unanswered before the process counts as cut off: two pull lifetimes
// (2 × pullExpiry), five unanswered pulls in a row on every lane (nats.go
// pulls again after each 2 × pullHeartbeat without a heartbeat). A single
// lost pull on a healthy server (nats-io/nats.go#1622) costs one miss,
// and a consumer leader's election after a node crash kept a lane's pulls
// unanswered for at most 4 s in the cluster fault tests (reliability/);
// both stay well below it. Longer would only leave a cut-off process idle
// for longer: its messages go to the others after AckWait anyway.
const DefaultStallAfter = 2 * pullExpiry

// missGap: while a lane's pulls go unanswered, nats.go reports a missed
// heartbeat every 2 × pullHeartbeat (and pulls again). A gap of twice
// that (slack for a loaded machine's timers) between two misses means the
// pull in between was answered.
const missGap = 4 * pullHeartbeat

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
	var since time.Time // the latest start of a lane's unanswered pulls
	var names []string
	for _, l := range w.lanes {
		s := l.unansweredSince(now)
		if s.IsZero() {
			since = time.Time{}
			break
		}
		if s.After(since) {
			since = s
		}
		names = append(names, l.name)
	}
	if since.IsZero() || now.Sub(since) < w.o.StallAfter {
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
			"for", now.Sub(since).Round(time.Second), "lanes", strings.Join(names, ","), "nats", url, "known_servers", servers)
	}
	w.reason = fmt.Sprintf("JetStream has answered no pull of lanes %s since %s, although connected to NATS at %s",
		strings.Join(names, ", "), since.UTC().Format(time.RFC3339), url)
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
	if l.unansweredSinceLocked(now).IsZero() {
		l.firstMiss = now
	}
	l.lastMiss, l.messagesAtMiss = now, l.messages.Load()
}

// unansweredSince returns when the lane's current run of unanswered pulls
// began, or the zero time if its pulls are answered.
func (l *laneWatch) unansweredSince(now time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.unansweredSinceLocked(now)
}

func (l *laneWatch) unansweredSinceLocked(now time.Time) time.Time {
	if l.firstMiss.IsZero() || l.messages.Load() != l.messagesAtMiss || now.Sub(l.lastMiss) > missGap {
		return time.Time{}
	}
	return l.firstMiss
}
