package consume_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/blazelock/webhooks/dispatcher/consume"
	"github.com/blazelock/webhooks/dispatcher/flow"
	"github.com/blazelock/webhooks/internal/testinfra"
)

// The tests run consume.Run against a real JetStream (an embedded
// nats-server per test, see testinfra) and a real flow.Scheduler, wired as
// dispatcher/run.go wires them, and judge what the server saw: acks (the
// consumer's ack floor), naks and terms (the server's advisories) and
// redeliveries (the handler being called again).

const (
	streamName    = "CONSUME_TEST"
	consumerName  = "consume-test"
	subjectPrefix = "consume.test."
)

type fixtureOptions struct {
	ackWait     time.Duration // default 30 s: far beyond every wait below
	concurrency int           // default 4
	queueMax    int           // default 100
}

type fixture struct {
	t     *testing.T
	nc    *nats.Conn
	js    jetstream.JetStream
	cons  jetstream.Consumer
	sched *flow.Scheduler
	o     fixtureOptions
	// watchdog, when set before run, watches the lane.
	watchdog *consume.Watchdog
}

func newFixture(t *testing.T, o fixtureOptions) *fixture {
	t.Helper()
	return newFixtureOn(t, testinfra.StartNATS(t).Connect(t), o)
}

// newFixtureOn is newFixture on a connection of the test's own.
func newFixtureOn(t *testing.T, nc *nats.Conn, o fixtureOptions) *fixture {
	t.Helper()
	if o.ackWait == 0 {
		o.ackWait = 30 * time.Second
	}
	if o.concurrency == 0 {
		o.concurrency = 4
	}
	if o.queueMax == 0 {
		o.queueMax = 100
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, nc: nc, js: js, cons: provision(t, js, o.ackWait), o: o}
}

// provision creates the test's stream and durable consumer, deleted at
// cleanup.
func provision(t *testing.T, js jetstream.JetStream, ackWait time.Duration) jetstream.Consumer {
	t.Helper()
	ctx := context.Background()
	_ = js.DeleteStream(ctx, streamName) // an external NATS_URL server may hold one from an earlier run
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: streamName, Subjects: []string{subjectPrefix + ">"}, Storage: jetstream.MemoryStorage,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), streamName) })
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: consumerName, AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait,
	})
	if err != nil {
		t.Fatal(err)
	}
	return cons
}

// run starts the scheduler and consume.Run as run.go does (the scheduler
// outlives the lane's context) and returns a func that cancels the lane
// and returns Run's error once it has returned. Cleanup stops both.
func (f *fixture) run(handle consume.Handler, park consume.Parker, shutdownTimeout time.Duration) (stop func() error) {
	f.t.Helper()
	if shutdownTimeout == 0 {
		shutdownTimeout = 5 * time.Second
	}
	schedCtx, stopSched := context.WithCancel(context.Background())
	f.sched = flow.New(flow.Options{
		Concurrency: f.o.concurrency, EndpointMax: 64, QueueMax: f.o.queueMax,
		AttemptTimeout: 15 * time.Second, KeepAliveEvery: f.o.ackWait / 3,
	})
	f.sched.Start(schedCtx)
	laneCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- consume.Run(laneCtx, f.cons, handle, consume.Options{
			Scheduler: f.sched, Key: func(subject string) string { return strings.TrimPrefix(subject, subjectPrefix) },
			Park: park, PullBatch: 10, ShutdownTimeout: shutdownTimeout,
			Logger: slog.New(slog.DiscardHandler), Name: "test", Watchdog: f.watchdog,
		})
	}()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(shutdownTimeout + 10*time.Second):
				runErr = errors.New("consume.Run did not return")
			}
		})
		return runErr
	}
	f.t.Cleanup(func() {
		if err := stop(); err != nil {
			f.t.Error(err)
		}
		ctx, cancelShutdown := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancelShutdown()
		_ = f.sched.Shutdown(ctx)
		stopSched()
	})
	return stop
}

// publish stores a message for key and returns its stream sequence.
func (f *fixture) publish(key, data string) uint64 {
	f.t.Helper()
	ack, err := f.js.Publish(context.Background(), subjectPrefix+key, []byte(data))
	if err != nil {
		f.t.Fatal(err)
	}
	return ack.Sequence
}

func (f *fixture) info() *jetstream.ConsumerInfo {
	f.t.Helper()
	info, err := f.cons.Info(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return info
}

// waitAcked waits until the server has the message at seq, and every one
// before it, acknowledged (or terminated) and nothing else outstanding.
func (f *fixture) waitAcked(seq uint64) {
	f.t.Helper()
	testinfra.WaitFor(f.t, 5*time.Second, fmt.Sprintf("message %d to be settled for good", seq), func() bool {
		info := f.info()
		return info.AckFloor.Stream >= seq && info.NumAckPending == 0
	})
}

// advisory is the part of the server's nak and term advisories the tests read.
type advisory struct {
	StreamSeq uint64 `json:"stream_seq"`
	Reason    string `json:"reason"`
}

// advisories collects the server's advisories of one kind for the
// consumer: "MSG_NAKED" or "MSG_TERMINATED".
type advisories struct {
	mu   sync.Mutex
	list []advisory
}

func (f *fixture) watch(kind string) *advisories {
	f.t.Helper()
	a := &advisories{}
	sub, err := f.nc.Subscribe("$JS.EVENT.ADVISORY.CONSUMER."+kind+"."+streamName+"."+consumerName, func(m *nats.Msg) {
		var adv advisory
		if err := json.Unmarshal(m.Data, &adv); err != nil {
			f.t.Errorf("advisory %s: %v", m.Data, err)
			return
		}
		a.mu.Lock()
		a.list = append(a.list, adv)
		a.mu.Unlock()
	})
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.nc.Flush(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = sub.Unsubscribe() })
	return a
}

func (a *advisories) all() []advisory {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]advisory(nil), a.list...)
}

// call is one invocation of a test handler.
type call struct {
	subject   string
	data      string
	delivered uint64 // the server's delivery count
	started   time.Time
	returned  time.Time
	ctxErr    error // the handler context's error when the handler returned
}

// recorder is a handler that records its calls; outcome decides each
// call's result (nil: success).
type recorder struct {
	mu      sync.Mutex
	calls   []call
	outcome func(n int, msg jetstream.Msg, slot consume.Slot) error
}

func (r *recorder) handle(ctx context.Context, msg jetstream.Msg, slot consume.Slot) error {
	c := call{subject: msg.Subject(), data: string(msg.Data()), started: time.Now()}
	if meta, err := msg.Metadata(); err == nil {
		c.delivered = meta.NumDelivered
	}
	r.mu.Lock()
	n := len(r.calls)
	r.calls = append(r.calls, c)
	r.mu.Unlock()
	var err error
	if r.outcome != nil {
		err = r.outcome(n, msg, slot)
	}
	r.mu.Lock()
	r.calls[n].returned, r.calls[n].ctxErr = time.Now(), ctx.Err()
	r.mu.Unlock()
	return err
}

func (r *recorder) snapshot() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]call(nil), r.calls...)
}

func (r *recorder) waitCalls(t *testing.T, n int, timeout time.Duration) []call {
	t.Helper()
	testinfra.WaitFor(t, timeout, fmt.Sprintf("%d handler calls", n), func() bool { return len(r.snapshot()) >= n })
	return r.snapshot()
}

// gate blocks handlers until it is opened.
type gate struct {
	once sync.Once
	ch   chan struct{}
}

func newGate(t *testing.T) *gate {
	g := &gate{ch: make(chan struct{})}
	t.Cleanup(g.open) // never leave a handler blocked
	return g
}

func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }

// wait blocks until the gate opens, renewing msg's ack deadline as a
// long-running attempt does.
func (g *gate) wait(msg jetstream.Msg) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-g.ch:
			return
		case <-tick.C:
			_ = msg.InProgress()
		}
	}
}

// TestHandlerOutcomeDecidesSettlement: the handler's error is turned into
// exactly one settlement, in one place, whatever wraps it: nil acks,
// *Terminate terms with its reason, *Retry naks for its delay, anything
// else naks for DefaultRetryDelay.
func TestHandlerOutcomeDecidesSettlement(t *testing.T) {
	t.Parallel()
	const retryDelay = 400 * time.Millisecond
	cases := []struct {
		name string
		err  error
		// wantNak > 0: handed back, redelivered no sooner than this after
		// the handler returned (and not much later).
		wantNak    time.Duration
		wantTerm   string // the term reason; "" when not terminated
		wantNoNaks bool
	}{
		{name: "nil acks", err: nil, wantNoNaks: true},
		{name: "Terminate terms with its reason", err: &consume.Terminate{Reason: "undecodable"}, wantTerm: "undecodable", wantNoNaks: true},
		{name: "wrapped Terminate terms", err: fmt.Errorf("attempt: %w", &consume.Terminate{Reason: "stale"}), wantTerm: "stale", wantNoNaks: true},
		{name: "Retry naks for its delay", err: &consume.Retry{Err: errors.New("kv down"), Delay: retryDelay}, wantNak: retryDelay},
		{name: "wrapped Retry naks for its delay", err: fmt.Errorf("lookup: %w", &consume.Retry{Err: errors.New("kv down"), Delay: retryDelay}), wantNak: retryDelay},
		{name: "any other error naks for the default delay", err: errors.New("boom"), wantNak: consume.DefaultRetryDelay},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, fixtureOptions{})
			naks, terms := f.watch("MSG_NAKED"), f.watch("MSG_TERMINATED")
			r := &recorder{outcome: func(n int, _ jetstream.Msg, _ consume.Slot) error {
				if n == 0 {
					return tc.err
				}
				return nil // a redelivery succeeds
			}}
			f.run(r.handle, nil, 0)
			seq := f.publish("integration-a", "payload")

			first := r.waitCalls(t, 1, 5*time.Second)[0]
			if first.subject != subjectPrefix+"integration-a" || first.data != "payload" || first.delivered != 1 {
				t.Fatalf("handler got %+v", first)
			}
			if tc.wantNak > 0 {
				second := r.waitCalls(t, 2, tc.wantNak+5*time.Second)[1]
				if gap := second.started.Sub(first.returned); gap < tc.wantNak || gap > tc.wantNak+3*time.Second {
					t.Fatalf("redelivered %s after the handler returned, want %s (the nak's delay)", gap, tc.wantNak)
				}
				if second.delivered != 2 {
					t.Fatalf("redelivery has delivery count %d, want 2", second.delivered)
				}
				testinfra.WaitFor(t, 5*time.Second, "the nak advisory", func() bool { return len(naks.all()) == 1 })
			}
			f.waitAcked(seq)
			if tc.wantTerm != "" {
				testinfra.WaitFor(t, 5*time.Second, "the term advisory", func() bool { return len(terms.all()) == 1 })
				if got := terms.all()[0]; got.StreamSeq != seq || got.Reason != tc.wantTerm {
					t.Fatalf("term advisory %+v, want sequence %d with reason %q", got, seq, tc.wantTerm)
				}
			} else if got := terms.all(); len(got) > 0 {
				t.Fatalf("terminated: %+v", got)
			}
			if tc.wantNoNaks {
				// Settled for good: a nak would bring the message back.
				holds(t, 300*time.Millisecond, "no nak and a single handler call", func() bool {
					return len(naks.all()) == 0 && len(r.snapshot()) == 1
				})
			}
		})
	}
}

// TestWaitingMessagesAreKeptAliveAndAckedAfterTheirOutcome: messages the
// scheduler holds behind a long attempt stay with this consumer past
// AckWait (in-progress acks), are handed to the handler once each, with
// their integration as the scheduler's key, and are acknowledged only when
// their handler has returned.
func TestWaitingMessagesAreKeptAliveAndAckedAfterTheirOutcome(t *testing.T) {
	t.Parallel()
	const ackWait = time.Second
	f := newFixture(t, fixtureOptions{ackWait: ackWait, concurrency: 1})
	g := newGate(t)
	r := &recorder{outcome: func(_ int, msg jetstream.Msg, _ consume.Slot) error {
		if string(msg.Data()) == "long" {
			g.wait(msg)
		}
		return nil
	}}
	f.run(r.handle, nil, 0)
	f.publish("a", "long")
	f.publish("b", "short")
	last := f.publish("c", "short")

	testinfra.WaitFor(t, 5*time.Second, "one attempt running and two waiting", func() bool {
		st := f.sched.Stats()
		return st.Running == 1 && st.Queued == 2 && st.Keys == 3
	})
	// Longer than two ack waits: without in-progress acks the waiting
	// messages would be offered again meanwhile; and none is acked before
	// its handler has run.
	holds(t, 2*ackWait+500*time.Millisecond, "three messages pending, none redelivered, one handled", func() bool {
		info := f.info()
		return info.NumAckPending == 3 && info.NumRedelivered == 0 && len(r.snapshot()) == 1
	})
	g.open()
	f.waitAcked(last)
	calls := r.snapshot()
	if len(calls) != 3 {
		t.Fatalf("handler called %d times, want 3: %+v", len(calls), calls)
	}
	for _, c := range calls {
		if c.delivered != 1 {
			t.Errorf("%s handled at delivery %d, want 1", c.subject, c.delivered)
		}
	}
}

// TestDeferredMessagesAreParkedOrHandedBack: a message the scheduler will
// not run (its endpoint asked for a long pause) is parked and then acked;
// when parking fails or is not offered, it is handed back to JetStream for
// the verdict's delay instead, never acked and not offered again at once.
func TestDeferredMessagesAreParkedOrHandedBack(t *testing.T) {
	t.Parallel()
	const pause = time.Minute
	cases := []struct {
		name     string
		parkErr  error
		noParker bool
		wantAck  bool
	}{
		{name: "parked, then acked", wantAck: true},
		{name: "parking fails: handed back", parkErr: errors.New("retry lane unavailable")},
		{name: "no parker: handed back", noParker: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, fixtureOptions{})
			naks := f.watch("MSG_NAKED")
			// The first attempt's endpoint answers 429 with a Retry-After
			// of a minute: the integration's next messages are deferred,
			// with Park set.
			r := &recorder{outcome: func(_ int, _ jetstream.Msg, slot consume.Slot) error {
				slot.Done(flow.Outcome{Signal: flow.Overloaded, RetryAfter: pause})
				return nil
			}}
			type parking struct {
				subject string
				delay   time.Duration
			}
			var mu sync.Mutex
			var parked []parking
			var park consume.Parker = func(_ context.Context, msg jetstream.Msg, delay time.Duration) error {
				mu.Lock()
				defer mu.Unlock()
				parked = append(parked, parking{msg.Subject(), delay})
				return tc.parkErr
			}
			if tc.noParker {
				park = nil
			}
			f.run(r.handle, park, 0)
			f.waitAcked(f.publish("paused", "first"))
			seq := f.publish("paused", "second")

			if tc.wantAck {
				f.waitAcked(seq)
			} else {
				testinfra.WaitFor(t, 5*time.Second, "the hand-back", func() bool { return len(naks.all()) == 1 })
				if got := naks.all()[0].StreamSeq; got != seq {
					t.Fatalf("naked message %d, want %d", got, seq)
				}
			}
			// A hand-back without the delay would offer the message again
			// at once (and defer it again); the deferred message never runs.
			holds(t, time.Second, "one nak at most and a single handler call", func() bool {
				return len(naks.all()) <= 1 && len(r.snapshot()) == 1
			})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case tc.noParker && len(parked) != 0:
				t.Fatalf("parked without a parker: %+v", parked)
			case !tc.noParker && len(parked) != 1:
				t.Fatalf("parked %d times, want once: %+v", len(parked), parked)
			case !tc.noParker && (parked[0].subject != subjectPrefix+"paused" || parked[0].delay < pause-5*time.Second || parked[0].delay > pause):
				t.Fatalf("parked %+v, want the paused integration's message for about %s", parked[0], pause)
			}
			info := f.info()
			if tc.wantAck {
				if got := naks.all(); len(got) != 0 {
					t.Fatalf("a parked message was also handed back: %+v", got)
				}
				return
			}
			if got := naks.all(); len(got) != 1 {
				t.Fatalf("%d naks, want one", len(got))
			}
			if info.NumAckPending != 1 || info.AckFloor.Stream != seq-1 {
				t.Fatalf("handed-back message settled: %d pending acks, ack floor %d", info.NumAckPending, info.AckFloor.Stream)
			}
		})
	}
}

// TestShutdownFinishesInFlightAndHandsBackTheRest: cancelling the lane stops
// the pull; the scheduler's shutdown hands back the waiting messages at once
// (Nak, no delay: another dispatcher takes them) while the running attempt
// finishes under a context that was not cancelled, and is acked.
func TestShutdownFinishesInFlightAndHandsBackTheRest(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOptions{concurrency: 1})
	g := newGate(t)
	r := &recorder{outcome: func(_ int, msg jetstream.Msg, _ consume.Slot) error {
		if string(msg.Data()) == "long" {
			g.wait(msg)
		}
		return nil
	}}
	stop := f.run(r.handle, nil, 0)
	first := f.publish("a", "long")
	f.publish("b", "waiting")
	f.publish("c", "waiting")
	testinfra.WaitFor(t, 5*time.Second, "one attempt running and two waiting", func() bool {
		st := f.sched.Stats()
		return st.Running == 1 && st.Queued == 2
	})

	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdown <- f.sched.Shutdown(ctx)
	}()
	handedBack := fetchAll(t, f.cons, 2)
	for _, m := range handedBack {
		meta, _ := m.Metadata()
		if string(m.Data()) != "waiting" || meta.NumDelivered != 2 {
			t.Fatalf("fetched %q at delivery %d, want a waiting message at its second delivery", m.Data(), meta.NumDelivered)
		}
	}
	select {
	case err := <-shutdown:
		t.Fatalf("scheduler shutdown returned (%v) while an attempt was still running", err)
	default:
	}
	g.open()
	if err := <-shutdown; err != nil {
		t.Fatalf("scheduler shutdown: %v", err)
	}
	calls := r.snapshot()
	if len(calls) != 1 || calls[0].ctxErr != nil {
		t.Fatalf("handler calls %+v, want the running attempt alone, its context never cancelled", calls)
	}
	testinfra.WaitFor(t, 5*time.Second, "the running attempt to be acked", func() bool {
		return f.info().AckFloor.Stream >= first
	})
}

// TestShutdownTimeoutBoundsRun: when the pull callback is blocked (the
// scheduler's budget is full), Run still returns after ShutdownTimeout;
// nothing it had pulled is lost: every message not attempted comes back
// at once once the scheduler shuts down.
func TestShutdownTimeoutBoundsRun(t *testing.T) {
	t.Parallel()
	const shutdownTimeout = 500 * time.Millisecond
	f := newFixture(t, fixtureOptions{concurrency: 1, queueMax: 1})
	g := newGate(t)
	r := &recorder{outcome: func(_ int, msg jetstream.Msg, _ consume.Slot) error {
		g.wait(msg)
		return nil
	}}
	stop := f.run(r.handle, nil, shutdownTimeout)
	for i := range 5 {
		f.publish(fmt.Sprintf("k%d", i), "event")
	}
	// One running, one waiting, and the third blocks the pull in Submit.
	testinfra.WaitFor(t, 5*time.Second, "the scheduler's budget to fill", func() bool {
		st := f.sched.Stats()
		return st.Running == 1 && st.Queued == 1
	})
	testinfra.WaitFor(t, 5*time.Second, "every message to be pulled", func() bool {
		return f.info().NumAckPending == 5
	})

	start := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if took := time.Since(start); took < shutdownTimeout || took > shutdownTimeout+3*time.Second {
		t.Fatalf("Run returned after %s, want about the shutdown timeout %s", took, shutdownTimeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shutdown := make(chan error, 1)
	go func() { shutdown <- f.sched.Shutdown(ctx) }()
	for _, m := range fetchAll(t, f.cons, 4) {
		if meta, _ := m.Metadata(); meta.NumDelivered != 2 {
			t.Fatalf("message %d fetched at delivery %d, want 2", meta.Sequence.Stream, meta.NumDelivered)
		}
	}
	g.open()
	if err := <-shutdown; err != nil {
		t.Fatalf("scheduler shutdown: %v", err)
	}
	if calls := r.snapshot(); len(calls) != 1 {
		t.Fatalf("handler called %d times, want once", len(calls))
	}
}

// holds checks cond every 50 ms for d and fails the test as soon as it
// does not hold: the negative counterpart of testinfra.WaitFor, for what
// must not happen.
func holds(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if !cond() {
			t.Fatalf("no longer true: %s", what)
		}
	}
}

// fetchAll fetches n messages from cons, which must be available at once
// (not after AckWait), and leaves them unacknowledged.
func fetchAll(t *testing.T, cons jetstream.Consumer, n int) []jetstream.Msg {
	t.Helper()
	var got []jetstream.Msg
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < n && time.Now().Before(deadline) {
		batch, err := cons.Fetch(n-len(got), jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			got = append(got, m)
		}
	}
	if len(got) != n {
		t.Fatalf("fetched %d handed-back messages, want %d", len(got), n)
	}
	return got
}
