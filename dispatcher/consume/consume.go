// Package consume pulls messages from a durable JetStream consumer shared by
// every dispatcher process, hands them to the flow scheduler, and settles
// each message from the handler's typed outcome in one place.
package consume

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/blazelock/webhooks/dispatcher/flow"
)

// Slot is the attempt's place in its endpoint's concurrency limit. The
// handler says when the HTTP request starts (what came before, the config
// read, is the dispatcher's time, not the endpoint's) and gives the slot
// back, with what the endpoint did, as soon as the request has ended.
type Slot interface {
	Sending()
	Done(flow.Outcome)
	// Held is how long the message has been in this process: since the
	// pull delivered it.
	Held() time.Duration
}

// Handler processes one message. Its error decides the settlement:
// nil → Ack (delivered, scheduled, dead, skipped or rejected: all recorded);
// *Retry → NakWithDelay (nothing was decided, try again later);
// *Terminate → Term (never redeliver);
// any other error → NakWithDelay(DefaultRetryDelay).
type Handler func(ctx context.Context, msg jetstream.Msg, slot Slot) error

// Parker moves a message out of JetStream's ack window for at least delay
// (into the retry lane); the caller then acknowledges it.
type Parker func(ctx context.Context, msg jetstream.Msg, delay time.Duration) error

// Retry asks JetStream to redeliver the message after Delay. It is for
// infrastructure trouble (KV or NATS unavailable), not for failed webhook
// attempts, which are scheduled durably by the pipeline.
type Retry struct {
	Err   error
	Delay time.Duration
}

func (r *Retry) Error() string { return "retry later: " + r.Err.Error() }
func (r *Retry) Unwrap() error { return r.Err }

// Terminate stops redelivery of a message that can never be processed.
type Terminate struct{ Reason string }

func (t *Terminate) Error() string { return "terminate: " + t.Reason }

// DefaultRetryDelay is used for unexpected handler errors.
const DefaultRetryDelay = 5 * time.Second

// Pull requests: a pull waits at the consumer's leader for at most
// pullExpiry, which sends a heartbeat every pullHeartbeat while it waits.
// A pull can be lost without an answer: its consumer's leader died or was
// cut off, or the pull reached a consumer between two leaders (a new
// leader does not know the pulls its predecessor held). The client only
// notices by the missing heartbeats, after 2 × pullHeartbeat, and then
// pulls again; until then this process receives nothing on that lane.
// nats.go's defaults (30 s expiry, 15 s heartbeat) made that a 30 s stall
// after a NATS cluster failover (reliability: TestClusterNodePartitioned),
// and on a single busy server too (the bench's max1: 28-29 s with every
// process idle, in 3 of 8 runs; the server no longer held the pull, the
// symptom of nats-io/nats.go#1622). These bound it to about 2 s, for a
// heartbeat every second per waiting pull.
const (
	pullExpiry    = 5 * time.Second
	pullHeartbeat = time.Second
)

// Options configure a Runner.
type Options struct {
	// Scheduler runs the attempts; it is shared by both lanes.
	Scheduler *flow.Scheduler
	// Key names a message's integration (its queue) from its subject.
	Key func(subject string) string
	// Park moves a message out of the ack window when the scheduler asks
	// for it; nil hands it back to the consumer instead.
	Park Parker
	// PullBatch is how many messages the client buffers ahead.
	PullBatch int
	// ShutdownTimeout bounds how long Run waits for the pull to drain.
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
	// Name labels log lines ("events" or "retries").
	Name string
	// Watchdog, when set, is told whether this lane's pulls are answered.
	Watchdog *Watchdog
}

// Run consumes until ctx ends, then stops pulling and hands back messages
// that were buffered but not submitted (Nak, so another dispatcher takes
// them at once). Waiting and running attempts belong to the scheduler,
// whose Shutdown ends them. Handlers run under a context that is NOT
// cancelled at shutdown, so an attempt in progress finishes and is settled
// instead of being cut off mid-request.
func Run(ctx context.Context, cons jetstream.Consumer, handle Handler, o Options) error {
	var stopping atomic.Bool
	parking := &parker{ctx: context.WithoutCancel(ctx), slots: make(chan struct{}, maxParking), o: o}
	var watch *laneWatch
	if o.Watchdog != nil {
		watch = o.Watchdog.lane(o.Name)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		if watch != nil {
			watch.message()
		}
		if stopping.Load() {
			_ = msg.Nak()
			return
		}
		// Submit blocks while the process holds its budget of waiting
		// messages: the next pull waits too (backpressure).
		o.Scheduler.Submit(flow.Task{
			Key:      o.Key(msg.Subject()),
			Received: time.Now(),
			Run: func(ctx context.Context, slot *flow.Slot) {
				settle(msg, handle(ctx, msg, slot), o.Logger)
			},
			Defer:     func(v flow.Verdict) { parking.settle(msg, v) },
			KeepAlive: func() { _ = msg.InProgress() },
		})
	},
		jetstream.PullMaxMessages(o.PullBatch),
		jetstream.PullExpiry(pullExpiry),
		jetstream.PullHeartbeat(pullHeartbeat),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if watch != nil {
				watch.pullError(time.Now(), err)
			}
			if !errors.Is(err, jetstream.ErrNoHeartbeat) || ctx.Err() == nil {
				o.Logger.Warn("consumer pull problem", "lane", o.Name, "err", err)
			}
		}))
	if err != nil {
		return err
	}
	<-ctx.Done()
	stopping.Store(true)
	cc.Drain()
	select {
	case <-cc.Closed():
	case <-time.After(o.ShutdownTimeout):
	}
	parking.wg.Wait()
	return nil
}

// maxParking bounds the parkings in flight per lane. Parking is a publish
// awaited from the server; run one after another on the pull's callback,
// they would hold up every other integration's messages behind a hanging
// endpoint's (hundreds of milliseconds at a few hundred parkings a second).
const maxParking = 64

// parker settles the messages the scheduler did not run, parking them on
// goroutines of their own.
type parker struct {
	ctx   context.Context
	slots chan struct{}
	wg    sync.WaitGroup
	o     Options
}

func (p *parker) settle(msg jetstream.Msg, v flow.Verdict) {
	if !v.Park || p.o.Park == nil {
		p.handBack(msg, v)
		return
	}
	select {
	case p.slots <- struct{}{}:
		p.wg.Add(1)
		go func() {
			defer func() { <-p.slots; p.wg.Done() }()
			if err := p.o.Park(p.ctx, msg, v.Delay); err != nil {
				p.o.Logger.Warn("parking a message failed; handed back instead", "lane", p.o.Name, "subject", msg.Subject(), "err", err)
				p.handBack(msg, v)
				return
			}
			p.check(msg, msg.Ack())
		}()
	default:
		// Parking is behind: hand the message back for the same delay.
		p.handBack(msg, v)
	}
}

// handBack returns a message to JetStream: at once at shutdown (another
// dispatcher takes it), else after the verdict's delay. It counts no
// attempt: its redelivery is a first try again.
func (p *parker) handBack(msg jetstream.Msg, v flow.Verdict) {
	if v.Reason == flow.ReasonShutdown {
		p.check(msg, msg.Nak())
		return
	}
	p.check(msg, msg.NakWithDelay(v.Delay))
}

func (p *parker) check(msg jetstream.Msg, err error) {
	if err != nil {
		p.o.Logger.Warn("settling a deferred message failed; JetStream redelivers it after AckWait", "lane", p.o.Name, "subject", msg.Subject(), "err", err)
	}
}

func settle(msg jetstream.Msg, err error, logger *slog.Logger) {
	var retry *Retry
	var term *Terminate
	var settleErr error
	switch {
	case err == nil:
		settleErr = msg.Ack()
	case errors.As(err, &term):
		settleErr = msg.TermWithReason(term.Reason)
	case errors.As(err, &retry):
		settleErr = msg.NakWithDelay(retry.Delay)
		logger.Warn("message handed back for a later try", "subject", msg.Subject(), "delay", retry.Delay, "err", retry.Err)
	default:
		settleErr = msg.NakWithDelay(DefaultRetryDelay)
		logger.Error("unexpected handler error; message handed back", "subject", msg.Subject(), "err", err)
	}
	if settleErr != nil {
		// The message will be redelivered after AckWait: at-least-once.
		logger.Warn("settling message failed", "subject", msg.Subject(), "err", settleErr)
	}
}
