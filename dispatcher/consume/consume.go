// Package consume pulls messages from a durable JetStream consumer shared by
// every dispatcher process, runs a bounded number of handlers at once, and
// settles each message from the handler's typed outcome in one place.
package consume

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Handler processes one message. Its error decides the settlement:
// nil → Ack (delivered, scheduled, dead, skipped or rejected: all recorded);
// *Retry → NakWithDelay (nothing was decided, try again later);
// *Terminate → Term (never redeliver);
// any other error → NakWithDelay(DefaultRetryDelay).
type Handler func(ctx context.Context, msg jetstream.Msg) error

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

// Options configure a Runner.
type Options struct {
	// Concurrency bounds handlers running at once in this process.
	Concurrency int
	// ShutdownTimeout bounds how long Run waits for in-flight handlers
	// after its context ends.
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
	// Name labels log lines ("events" or "retries").
	Name string
}

// Run consumes until ctx ends, then stops pulling, hands back messages that
// were buffered but not started (Nak, so another dispatcher takes them at
// once), and waits for in-flight handlers up to ShutdownTimeout. Handlers
// run under a context that is NOT cancelled at shutdown, so an attempt in
// progress finishes and is settled instead of being cut off mid-request.
func Run(ctx context.Context, cons jetstream.Consumer, handle Handler, o Options) error {
	sem := make(chan struct{}, o.Concurrency)
	var inFlight sync.WaitGroup
	var stopping atomic.Bool
	handlerCtx := context.WithoutCancel(ctx)

	cc, err := cons.Consume(func(msg jetstream.Msg) {
		if stopping.Load() {
			_ = msg.Nak()
			return
		}
		sem <- struct{}{} // backpressure: the next pull waits for a free slot
		inFlight.Add(1)
		go func() {
			defer func() { <-sem; inFlight.Done() }()
			settle(msg, handle(handlerCtx, msg), o.Logger)
		}()
	},
		// Keep the client-side buffer near the worker count: buffered
		// messages are already "delivered" and their AckWait is running.
		jetstream.PullMaxMessages(o.Concurrency),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
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
	done := make(chan struct{})
	go func() { inFlight.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(o.ShutdownTimeout):
		o.Logger.Warn("in-flight attempts still running at shutdown; JetStream redelivers them after AckWait", "lane", o.Name)
		return nil
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
