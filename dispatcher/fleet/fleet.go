// Package fleet tells each dispatcher process how many dispatchers are live
// right now, so that a per-integration concurrency cap holds across the
// whole deployment: each process allows its share, budget ÷ Size().
//
// Every process keeps a key in the natsinfra.FleetBucket KV bucket, re-put
// every Heartbeat, and watches the whole bucket. A process learns that
// another joined within milliseconds (the watch delivers the new key), so
// the window in which the deployment can exceed a cap is bounded by the
// attempts already in flight at that moment. A process that leaves through
// Close deletes its key and the others raise their share at once; one that
// crashed is forgotten StaleAfter (plus at most one Heartbeat) after its
// last heartbeat, and its key leaves the bucket with the bucket's TTL.
//
// Staleness is judged on the server's timestamps only (entry.Created()): a
// peer is counted out when this process's own heartbeat comes back through
// the watch more than StaleAfter after the peer's last one. The watch
// delivers in stream order, so by then the peer's later heartbeats would
// have arrived had there been any. Clock skew between hosts does not
// matter, and while a process does not hear its own heartbeats (NATS
// unreachable, the watch being re-established) it counts nobody out: a peer
// that merely went unheard keeps its place, erring towards a smaller share
// rather than an exceeded cap.
package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/blazelock/webhooks/internal/natsinfra"
)

// Options configure a process's membership.
type Options struct {
	// ID is this process's key in the bucket; empty means
	// hostname-pid-<random hex>. Keys allow [-/_=.a-zA-Z0-9].
	ID string
	// Heartbeat is how often the key is re-put (default 2s).
	Heartbeat time.Duration
	// StaleAfter is how long a peer may go unheard before it is no longer
	// counted (default 3×Heartbeat), measured on the server's clock against
	// this process's own last heartbeat. It must exceed Heartbeat and stay
	// below natsinfra.FleetTTL.
	StaleAfter time.Duration
	Logger     *slog.Logger
	// OnChange, when set, is called with the new Size whenever it changes
	// after Join returned; calls come from one goroutine, never
	// concurrently. It must not block for long.
	OnChange func(size int)
	// Now is the local clock (default time.Now), used for the value's
	// timestamps and to notice that our own heartbeats stopped coming back.
	Now func() time.Time
}

// Fleet is this process's membership; Size is safe for concurrent use.
type Fleet struct {
	o    Options
	kv   jetstream.KeyValue
	nc   *nats.Conn
	size atomic.Int64

	started  time.Time
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once

	// Owned by the watch goroutine.
	seen    map[string]time.Time // peer key → server time of its last put
	ownLast time.Time            // server time of our last put the watch delivered
	heard   time.Time            // local time the watch delivered it
	deaf    bool                 // heard is more than StaleAfter ago
}

// member is the value of a process's key; only its timestamps in the stream
// count, the value is for operators (`nats kv get`).
type member struct {
	StartedAt   time.Time `json:"started_at"`
	HeartbeatAt time.Time `json:"heartbeat_at"`
}

// Join puts this process's key, watches the bucket and returns once the
// bucket's current keys are known, so Size is right from the start. ctx
// bounds joining only; the membership lasts until Close.
func Join(ctx context.Context, js jetstream.JetStream, o Options) (*Fleet, error) {
	if o.Heartbeat <= 0 {
		o.Heartbeat = 2 * time.Second
	}
	if o.StaleAfter <= 0 {
		o.StaleAfter = 3 * o.Heartbeat
	}
	if o.StaleAfter <= o.Heartbeat || o.StaleAfter >= natsinfra.FleetTTL {
		return nil, fmt.Errorf("fleet: stale-after %s must exceed the heartbeat %s and stay below the bucket TTL %s",
			o.StaleAfter, o.Heartbeat, natsinfra.FleetTTL)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ID == "" {
		o.ID = randomID()
	}
	kv, err := js.KeyValue(ctx, natsinfra.FleetBucket)
	if err != nil {
		return nil, fmt.Errorf("fleet: open KV bucket %s (is NATS provisioned?): %w", natsinfra.FleetBucket, err)
	}
	f := &Fleet{o: o, kv: kv, nc: js.Conn(), started: o.Now(), seen: map[string]time.Time{}}
	f.o.Logger = o.Logger.With("dispatcher_id", o.ID)
	f.size.Store(1)
	if err := f.put(ctx); err != nil {
		return nil, fmt.Errorf("fleet: put key %q: %w", o.ID, err)
	}
	// The watch's subscription ends when the context given to WatchAll does,
	// so it gets the membership's context, not the caller's.
	life, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f.cancel = cancel
	w, err := kv.WatchAll(life)
	if err != nil {
		cancel()
		return nil, errors.Join(fmt.Errorf("fleet: watch %s: %w", natsinfra.FleetBucket, err), f.kv.Delete(ctx, o.ID))
	}
	ready := make(chan struct{})
	f.wg.Add(2)
	go func() { defer f.wg.Done(); f.watch(life, w, ready) }()
	go func() { defer f.wg.Done(); f.heartbeat(life) }()
	select {
	case <-ready:
		return f, nil
	case <-ctx.Done():
		f.stop()
		return nil, errors.Join(fmt.Errorf("fleet: waiting for the bucket's current keys: %w", ctx.Err()),
			f.kv.Delete(context.WithoutCancel(ctx), o.ID))
	}
}

// ID is this process's key in the bucket.
func (f *Fleet) ID() string { return f.o.ID }

// Size is the number of live dispatchers, this one included (so at least 1).
// It is one atomic load.
func (f *Fleet) Size() int { return int(f.size.Load()) }

// Close stops the heartbeat and the watch and deletes this process's key,
// so the others raise their share at once.
func (f *Fleet) Close(ctx context.Context) error {
	f.stop()
	if err := f.kv.Delete(ctx, f.o.ID); err != nil {
		return fmt.Errorf("fleet: delete key %q: %w", f.o.ID, err)
	}
	return nil
}

// stop ends both goroutines and leaves the key behind, as a crash would.
func (f *Fleet) stop() {
	f.stopOnce.Do(func() {
		f.cancel()
		f.wg.Wait()
	})
}

func (f *Fleet) put(ctx context.Context) error {
	v, _ := json.Marshal(member{StartedAt: f.started, HeartbeatAt: f.o.Now()})
	_, err := f.kv.Put(ctx, f.o.ID, v)
	return err
}

// heartbeat re-puts the key every Heartbeat. A failing put (NATS restarting)
// is logged once per streak of failures; the next tick tries again.
func (f *Fleet) heartbeat(ctx context.Context) {
	t := time.NewTicker(f.o.Heartbeat)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		putCtx, cancel := context.WithTimeout(ctx, f.o.Heartbeat)
		err := f.put(putCtx)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil && !failing:
			failing = true
			f.o.Logger.Warn("fleet heartbeat failed; retrying every heartbeat", "err", err)
		case err == nil && failing:
			failing = false
			f.o.Logger.Info("fleet heartbeat recovered")
		}
	}
}

// watch applies the bucket's updates as they come; each of our own
// heartbeats coming back re-counts, so silent peers go stale. It closes
// ready after the watch's initial values.
//
// It watches again when the library gives up on its watch (the channel
// closes), and when this process, connected, has not heard its own heartbeat
// for StaleAfter: after a NATS restart the library re-creates the watch's
// consumer only once it has missed two of its 5 s idle heartbeats, which
// took 10-20 s in tests, and meanwhile nobody joining would be seen.
func (f *Fleet) watch(ctx context.Context, w jetstream.KeyWatcher, ready chan struct{}) {
	t := time.NewTicker(f.o.Heartbeat)
	defer t.Stop()
	defer func() { _ = w.Stop() }()
	updates := w.Updates()
	f.heard = f.o.Now()
	watched := f.heard
	initial := true
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-updates:
			if !ok {
				updates = nil
				f.o.Logger.Warn("fleet watch ended; watching again")
				continue
			}
			if e != nil {
				f.apply(e)
			}
			if initial {
				if e == nil { // the initial values are in
					initial = false
					f.count(false)
					close(ready)
				}
				continue
			}
			f.count(true)
		case <-t.C:
			silent := f.o.Now().Sub(f.heard) > f.o.StaleAfter
			if silent && !f.deaf {
				f.o.Logger.Warn("fleet does not hear its own heartbeats; counting nobody out meanwhile")
			}
			f.deaf = silent
			if updates == nil || silent && f.nc.IsConnected() && f.o.Now().Sub(watched) > f.o.StaleAfter {
				_ = w.Stop()
				updates = nil
				watched = f.o.Now()
				nw, err := f.kv.WatchAll(ctx)
				if err != nil {
					f.o.Logger.Warn("fleet watch could not be re-established", "err", err)
					continue
				}
				w, updates = nw, nw.Updates()
			}
		}
	}
}

func (f *Fleet) apply(e jetstream.KeyValueEntry) {
	switch {
	case e.Key() == f.o.ID:
		if e.Operation() == jetstream.KeyValuePut && e.Created().After(f.ownLast) {
			f.ownLast, f.heard = e.Created(), f.o.Now()
			if f.deaf {
				f.deaf = false
				f.o.Logger.Info("fleet hears its own heartbeats again")
			}
		}
	case e.Operation() != jetstream.KeyValuePut:
		delete(f.seen, e.Key())
	default:
		if last, ok := f.seen[e.Key()]; !ok || e.Created().After(last) {
			f.seen[e.Key()] = e.Created()
		}
	}
}

// count recomputes Size: this process plus every peer whose last heartbeat
// is less than StaleAfter older than our own last one.
func (f *Fleet) count(notify bool) {
	n := 1
	for key, last := range f.seen {
		if f.ownLast.Sub(last) > f.o.StaleAfter {
			delete(f.seen, key)
			continue
		}
		n++
	}
	if old := f.size.Swap(int64(n)); old != int64(n) && notify && f.o.OnChange != nil {
		f.o.OnChange(n)
	}
}

// randomID is hostname-pid-<8 hex>, with characters a key does not allow
// replaced.
func randomID() string {
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune("-_=.", r):
			return r
		}
		return '_'
	}, strings.Trim(host, "."))
	if host == "" {
		host = "dispatcher"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b)
}
