// Package flow decides when each attempt may start: it is the dispatcher's
// flow control, between the consumers that pull messages and the pipeline
// that makes attempts.
//
// Messages wait in bounded per-integration queues in the process (kept
// alive with in-progress acks, never counted as attempts). A fixed number
// of attempts run at once in the process; they are handed out round robin
// over the integrations that have work and room, so one integration's
// backlog never delays another's first event, and a healthy endpoint's
// backlog flows at that endpoint's speed.
//
// How many attempts one integration may have in flight follows its
// endpoint (see limit): it grows while answers come back at a flat
// latency, shrinks on timeouts, 5xx, 429, resets and a clear rise in
// latency, and never exceeds EndpointMax divided by the number of live
// dispatchers, so the cap holds for the whole deployment. An endpoint
// whose oldest attempt is overdue and that has not answered since is
// stalled (it hangs): it gets one probe every probeInterval, all stalled
// endpoints together at most StalledBudget attempts, so however many
// endpoints hang the rest of the process keeps delivering, and a healed
// endpoint is noticed within seconds. A Retry-After on 429 or 503 pauses
// the endpoint's new attempts.
//
// What does not fit in a queue is deferred (see Verdict): handed back to
// JetStream for a short delay computed from the endpoint's own drain rate
// while it is healthy, and only for an endpoint that hangs or asked for a
// long pause, parked in the retry lane, whose schedules hold no ack slot.
package flow

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Options configure a Scheduler.
type Options struct {
	// Concurrency bounds attempts in flight in this process.
	Concurrency int
	// EndpointMax bounds attempts in flight to one integration's endpoint
	// across the deployment.
	EndpointMax int
	// FleetSize returns the number of live dispatchers (nil: 1). Each
	// process allows an endpoint EndpointMax / FleetSize() attempts.
	FleetSize func() int
	// QueueMax bounds the messages held in this process, waiting for
	// their turn (the memory budget: about one event body each).
	QueueMax int
	// AttemptTimeout is the limit of one HTTP attempt; an endpoint is
	// stalled at the latest after a third of it.
	AttemptTimeout time.Duration
	// KeepAliveEvery is how often a waiting message's in-progress ack is
	// renewed: a fraction of the consumers' AckWait.
	KeepAliveEvery time.Duration
	// StalledBudget bounds the attempts in flight to stalled endpoints
	// together (0: Concurrency/4).
	StalledBudget int
	// StalledBacklog bounds the messages of stalled endpoints this process
	// has handed back to JetStream and not yet seen again: they hold ack
	// slots, and a full ack window stops every integration's deliveries.
	// Beyond it they are parked. Keep it a fraction of the consumers' max
	// ack pending (0: QueueMax/8).
	StalledBacklog int
	// OnDefer, if set, is called for every deferred task (metrics).
	OnDefer func(Verdict)
	// Logger gets a debug line when an endpoint's limit changes and an
	// info line when it asks for a pause (nil: no logs).
	Logger *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Task is one message waiting for its turn.
type Task struct {
	// Key is the integration id; each key has its queue and its limit.
	Key string
	// Run makes the attempt on its own goroutine. It calls slot.Done as
	// soon as the request has ended; the scheduler does so with NoSample
	// if Run returns without.
	Run func(ctx context.Context, slot *Slot)
	// Defer settles a task that will not run in this process now.
	Defer func(Verdict)
	// KeepAlive renews the message's in-progress ack.
	KeepAlive func()
	// Received is when the message reached the process (zero: unknown);
	// Slot.Held counts from it.
	Received time.Time
}

// Verdict says what to do with a task that is not queued.
type Verdict struct {
	Reason string // one of the Reason constants
	// Delay is how long the message should wait before it is offered again.
	Delay time.Duration
	// Park asks for the message to leave JetStream's ack window (the
	// retry lane); otherwise it is handed back to the consumer.
	Park bool
}

// Reasons a task is deferred.
const (
	ReasonQueueFull = "queue_full" // a healthy endpoint's queue is full
	ReasonStalled   = "stalled"    // the endpoint hangs
	ReasonPaused    = "paused"     // the endpoint asked for a pause (Retry-After)
	ReasonShutdown  = "shutdown"   // the process is stopping
)

// Tuning. See the package comment for the model.
const (
	// minQueue is the queue every key may fill; beyond it a healthy key
	// may fill the budget but for a reserve (a quarter of QueueMax) kept
	// for keys with short queues.
	minQueue = 256
	// A queue-full deferral comes back when the key's queue should have
	// room for it at the key's measured rate (see verdict), within these
	// bounds; before a rate is measured, unknownRate is assumed.
	minRequeueDelay = 250 * time.Millisecond
	maxRequeueDelay = 2 * time.Second
	unknownRate     = 1000
	// A stalled key keeps at most stalledQueue messages; the rest are
	// handed back for stalledDelay, or parked once this process has more
	// than StalledBacklog of those outstanding (they hold ack slots).
	stalledQueue = 32
	stalledDelay = 5 * time.Second
	parkDelay    = 15 * time.Second
	// probeInterval spaces the attempts to a stalled endpoint.
	probeInterval = 2 * time.Second
	minStallAfter = time.Second
	// stallFactor: an attempt is overdue after this many typical latencies.
	stallFactor = 8
	// A pause longer than parkPauseOver parks the key's messages; it is
	// never longer than maxPause.
	parkPauseOver = 10 * time.Second
	maxPause      = time.Hour
	// sweepEvery: keep-alives, rates, re-admission of paused and stalled
	// keys. forgetAfter: an idle key's limit is forgotten.
	sweepEvery  = 250 * time.Millisecond
	forgetAfter = 10 * time.Minute
	// rateEvery and rateWeight: a key's throughput is measured over each
	// rateEvery and smoothed with this weight per measurement.
	rateEvery  = 500 * time.Millisecond
	rateWeight = 0.3
)

// Scheduler queues tasks per key and runs them fairly. Safe for
// concurrent use.
type Scheduler struct {
	o   Options
	now func() time.Time
	ctx context.Context
	wg  sync.WaitGroup

	// jobs hands attempts to idle workers (workers.go); quit, closed by
	// Shutdown, ends the idle ones.
	jobs        chan job
	quit        chan struct{}
	idleWorkers int // guarded by mu

	mu       sync.Mutex
	space    *sync.Cond // signalled when queued falls below QueueMax or on stop
	keys     map[string]*key
	ready    fifo[*key] // round-robin order of keys that may start an attempt
	queued   int
	running  int
	stopping bool
	// stalledInFlight counts attempts to stalled keys (refreshed each
	// sweep, raised by each probe).
	stalledInFlight int
	// unprovenInFlight counts attempts to keys that never answered;
	// unproven holds, in order, keys waiting for that budget.
	unprovenInFlight int
	unproven         fifo[*key]
	lastRates        time.Time
	naks             expiring // stalled keys' messages handed back, not yet due
	// typical is the long-term latency of every answer in the process.
	typical ewma
}

type key struct {
	id          string
	q           fifo[waiting]
	inReady     bool        // in s.ready
	inUnproven  bool        // in s.unproven
	starts      []time.Time // start times of the attempts in flight
	lim         limit
	pausedUntil time.Time
	// proven: the endpoint has answered since the key was created.
	proven      bool
	lastAnswer  time.Time
	lastTimeout time.Time
	lastStart   time.Time
	lastActive  time.Time
	done        int      // attempts ended since the last rate update
	rate        float64  // attempts ended per second, smoothed
	requeued    expiring // handed back for a full queue, not yet due
}

type waiting struct {
	t     Task
	alive time.Time // last delivery or keep-alive
}

// New returns a Scheduler; Start runs its housekeeping.
func New(o Options) *Scheduler {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.StalledBudget <= 0 {
		o.StalledBudget = max(1, o.Concurrency/4)
	}
	if o.StalledBacklog <= 0 {
		o.StalledBacklog = max(1, o.QueueMax/8)
	}
	if o.FleetSize == nil {
		o.FleetSize = func() int { return 1 }
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Scheduler{o: o, now: o.Now, ctx: context.Background(), keys: map[string]*key{},
		jobs: make(chan job, o.Concurrency), quit: make(chan struct{})}
	s.space = sync.NewCond(&s.mu)
	s.lastRates = s.now()
	return s
}

// Start runs the housekeeping until ctx ends. Attempts run under a context
// that ctx's end does not cancel: Shutdown bounds them instead.
func (s *Scheduler) Start(ctx context.Context) {
	s.ctx = context.WithoutCancel(ctx)
	go func() {
		t := time.NewTicker(sweepEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.sweep()
			}
		}
	}()
}

// Submit queues t, or defers it at once if its key has no room. It blocks
// while the process holds QueueMax messages: that is the consumers'
// backpressure.
func (s *Scheduler) Submit(t Task) {
	s.mu.Lock()
	for s.queued >= s.o.QueueMax && !s.stopping {
		s.space.Wait()
	}
	if s.stopping {
		s.mu.Unlock()
		s.deferTasks([]Task{t}, Verdict{Reason: ReasonShutdown})
		return
	}
	now := s.now()
	k := s.key(t.Key, now)
	if k.q.len() >= s.room(k, now) {
		v := s.verdict(k, now)
		s.mu.Unlock()
		s.deferTasks([]Task{t}, v)
		return
	}
	k.q.push(waiting{t: t, alive: now})
	s.queued++
	s.offer(k, now)
	s.pump(now)
	s.mu.Unlock()
}

// Shutdown stops starting attempts, defers every waiting task with
// ReasonShutdown and waits for running attempts until ctx ends.
func (s *Scheduler) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.stopping {
		close(s.quit)
	}
	s.stopping = true
	s.space.Broadcast()
	var left []Task
	for _, k := range s.keys {
		for _, w := range k.q.takeAll() {
			left = append(left, w.t)
		}
	}
	s.queued = 0
	s.mu.Unlock()
	s.deferTasks(left, Verdict{Reason: ReasonShutdown})

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Slot is a running attempt's place in its endpoint's limit.
type Slot struct {
	s        *Scheduler
	k        *key
	start    time.Time
	received time.Time // Task.Received
	unproven bool      // counted in unprovenInFlight
	ended    bool      // guarded by s.mu
}

// Held is how long the attempt's message has been in the process (0 if
// its task did not say when it arrived).
func (sl *Slot) Held() time.Duration {
	if sl.received.IsZero() {
		return 0
	}
	return sl.s.now().Sub(sl.received)
}

// Sending says that the attempt's request to the endpoint starts now.
// Whether an attempt is overdue is judged from here: the time before it
// (waiting for the config store, for a CPU) is the dispatcher's, and a
// saturated dispatcher must not take its own delays for a hanging endpoint.
func (sl *Slot) Sending() {
	s := sl.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if sl.ended {
		return
	}
	now := s.now()
	if i := slices.Index(sl.k.starts, sl.start); i >= 0 {
		sl.k.starts[i] = now
	}
	sl.start = now
}

// Done gives the slot back with the attempt's outcome. Later calls do
// nothing.
func (sl *Slot) Done(o Outcome) {
	s := sl.s
	s.mu.Lock()
	if sl.ended {
		s.mu.Unlock()
		return
	}
	sl.ended = true
	now := s.now()
	k := sl.k
	inUse := len(k.starts)
	if i := slices.Index(k.starts, sl.start); i >= 0 {
		k.starts = slices.Delete(k.starts, i, i+1)
	}
	share := s.share()
	before := k.lim.current(share)
	k.lim.observe(o, inUse, share)
	after := k.lim.current(share)
	k.done++
	k.lastActive = now
	if sl.unproven {
		s.unprovenInFlight--
	}
	switch o.Signal {
	case Answered:
		k.lastAnswer, k.proven = now, true
		s.typical.add(o.Latency)
	case TimedOut:
		k.lastTimeout = now
	}
	var evicted []Task
	var v Verdict
	var pausedUntil time.Time
	if o.RetryAfter > 0 {
		if until := now.Add(min(o.RetryAfter, maxPause)); until.After(k.pausedUntil) {
			k.pausedUntil, pausedUntil = until, until
		}
		if k.pausedUntil.Sub(now) > parkPauseOver {
			evicted, v = s.evict(k, 0), s.verdict(k, now)
		}
	}
	s.offer(k, now)
	s.pump(now)
	s.mu.Unlock()
	s.deferTasks(evicted, v)
	if after != before {
		s.o.Logger.LogAttrs(s.ctx, slog.LevelDebug, "flow.limit",
			slog.String("integration_id", k.id), slog.Int("limit", after), slog.Int("was", before),
			slog.Int("share", share), slog.Int("signal", int(o.Signal)), slog.Duration("latency", o.Latency))
	}
	if !pausedUntil.IsZero() {
		s.o.Logger.LogAttrs(s.ctx, slog.LevelInfo, "flow.paused",
			slog.String("integration_id", k.id), slog.Time("until", pausedUntil), slog.Int("parked", len(evicted)))
	}
}

// key returns the state of id, creating it. mu is held.
func (s *Scheduler) key(id string, now time.Time) *key {
	k, ok := s.keys[id]
	if !ok {
		k = &key{id: id, lim: newLimit(), lastAnswer: now}
		s.keys[id] = k
	}
	k.lastActive = now
	return k
}

// share is this process's part of EndpointMax.
func (s *Scheduler) share() int {
	return max(1, s.o.EndpointMax/max(1, s.o.FleetSize()))
}

// stallAfter is the age at which an attempt to k is overdue: stallFactor
// times the endpoint's typical latency, or the process's when that is
// longer (a dispatcher short of CPU slows every answer at once).
func (s *Scheduler) stallAfter(k *key) time.Duration {
	upper := max(minStallAfter, s.o.AttemptTimeout/3)
	typical := max(k.lim.typicalLatency(), s.typical.long)
	return min(max(minStallAfter, stallFactor*typical), upper)
}

// overdue counts k's attempts in flight that are overdue. mu is held.
func (s *Scheduler) overdue(k *key, now time.Time) int {
	n, after := 0, s.stallAfter(k)
	for _, t := range k.starts {
		if now.Sub(t) >= after {
			n++
		}
	}
	return n
}

// stalled reports whether k hangs: nothing was answered for stallAfter,
// and an attempt is overdue or the last one ended in a timeout. mu is held.
func (s *Scheduler) stalled(k *key, now time.Time) bool {
	if now.Sub(k.lastAnswer) < s.stallAfter(k) {
		return false
	}
	return k.lastTimeout.After(k.lastAnswer) || s.overdue(k, now) > 0
}

// admission is whether a key may start an attempt now.
type admission int

const (
	refused admission = iota
	admitted
	// unprovenFull: only the budget of endpoints that never answered is
	// in the way; the key waits in line for it (s.unproven).
	unprovenFull
)

// admits says whether k may start an attempt now. mu is held.
func (s *Scheduler) admits(k *key, now time.Time) admission {
	if now.Before(k.pausedUntil) || s.stopping {
		return refused
	}
	hard := s.share()
	inFlight := len(k.starts)
	switch {
	case inFlight >= hard:
		return refused
	case s.stalled(k, now):
		if now.Sub(k.lastStart) >= probeInterval && s.stalledInFlight < s.o.StalledBudget {
			return admitted
		}
		return refused
	case inFlight-s.overdue(k, now) >= k.lim.current(hard):
		// Overdue attempts are not counted against the adaptive limit:
		// after a stall ends they may hang on until their timeout while
		// the healed endpoint answers new attempts at once.
		return refused
	case !k.proven && s.unprovenInFlight >= s.unprovenBudget():
		// Endpoints that never answered (new ones, or ones that hang from
		// their first attempt, before they count as stalled) share half
		// the process: a thousand new endpoints that all hang cannot take
		// every attempt slot before the first of them is overdue.
		return unprovenFull
	}
	return admitted
}

func (s *Scheduler) unprovenBudget() int { return max(1, s.o.Concurrency/2) }

// offer puts k, if it has work, in the round when it may start an
// attempt, or in line for the unproven budget. mu is held.
func (s *Scheduler) offer(k *key, now time.Time) {
	if k.inReady || k.inUnproven || k.q.len() == 0 {
		return
	}
	switch s.admits(k, now) {
	case admitted:
		k.inReady = true
		s.ready.push(k)
	case unprovenFull:
		k.inUnproven = true
		s.unproven.push(k)
	}
}

// room is how many messages k may hold waiting. mu is held.
func (s *Scheduler) room(k *key, now time.Time) int {
	reserve := s.o.QueueMax / 4
	switch {
	case now.Before(k.pausedUntil):
		if k.pausedUntil.Sub(now) > parkPauseOver {
			return 0
		}
		return minQueue
	case s.stalled(k, now):
		return stalledQueue
	case s.queued >= s.o.QueueMax-reserve:
		// The reserve is for keys with short queues.
		return minQueue
	}
	// Holding is cheaper than handing back: a handed-back message stays
	// in the consumers' ack window all the same, and costs a redelivery.
	return s.o.QueueMax
}

// verdict says how to defer a task of k that has no room. mu is held.
func (s *Scheduler) verdict(k *key, now time.Time) Verdict {
	switch {
	case now.Before(k.pausedUntil):
		d := k.pausedUntil.Sub(now)
		return Verdict{Reason: ReasonPaused, Delay: d, Park: d > parkPauseOver}
	case s.stalled(k, now):
		if s.naks.count(now) < s.o.StalledBacklog {
			s.naks.add(now.Add(stalledDelay))
			return Verdict{Reason: ReasonStalled, Delay: stalledDelay}
		}
		return Verdict{Reason: ReasonStalled, Delay: parkDelay, Park: true}
	}
	// Each message handed back takes the next place behind the queue and
	// the messages handed back before it, so they come back spread at the
	// rate the queue drains instead of all at once (which would refill the
	// queue in a burst, hand most back again, and leave the endpoint idle
	// in between). Half the queue: it must not run dry first, and the
	// measured rate lags behind an endpoint that is speeding up.
	rate := k.rate
	if rate < 1 {
		rate = unknownRate
	}
	ahead := 0.5*float64(k.q.len()) + float64(k.requeued.count(now))
	d := min(max(time.Duration(ahead/rate*float64(time.Second)), minRequeueDelay), maxRequeueDelay)
	k.requeued.add(now.Add(d))
	return Verdict{Reason: ReasonQueueFull, Delay: d}
}

// evict takes k's waiting tasks beyond keep out of its queue. mu is held.
func (s *Scheduler) evict(k *key, keep int) []Task {
	var out []Task
	for k.q.len() > keep {
		out = append(out, k.q.popBack().t)
		s.queued--
	}
	s.space.Broadcast()
	return out
}

// pump starts attempts while the process has room. mu is held.
func (s *Scheduler) pump(now time.Time) {
	// Keys in line for the unproven budget join the round, in order, as
	// far as the budget has room (and all that have answered meanwhile).
	room := s.unprovenBudget() - s.unprovenInFlight
	for s.unproven.len() > 0 && room > 0 {
		k := s.unproven.pop()
		k.inUnproven = false
		if !k.proven {
			room--
		}
		s.offer(k, now)
	}
	for s.running < s.o.Concurrency && s.ready.len() > 0 {
		k := s.ready.pop()
		k.inReady = false
		if k.q.len() == 0 {
			continue
		}
		if a := s.admits(k, now); a != admitted {
			if a == unprovenFull {
				s.offer(k, now)
			}
			continue
		}
		if s.stalled(k, now) {
			s.stalledInFlight++
		}
		w := k.q.pop()
		if s.queued--; s.queued == s.o.QueueMax-1 {
			// Both lanes may wait in Submit: wake them all.
			s.space.Broadcast()
		}
		k.starts = append(k.starts, now)
		k.lastStart = now
		s.running++
		slot := &Slot{s: s, k: k, start: now, received: w.t.Received, unproven: !k.proven}
		if slot.unproven {
			s.unprovenInFlight++
		}
		s.offer(k, now)
		s.startAttempt(job{w.t, slot})
	}
}

// sweep renews keep-alives, updates rates, sheds stalled keys' queues,
// re-admits keys whose pause or probe interval has passed, and forgets
// idle keys.
func (s *Scheduler) sweep() {
	var keepAlive []func()
	type shed struct {
		tasks []Task
		v     Verdict
	}
	var sheds []shed
	s.mu.Lock()
	now := s.now()
	elapsed := now.Sub(s.lastRates)
	updateRates := elapsed >= rateEvery
	if updateRates {
		s.lastRates = now
	}
	s.stalledInFlight = 0
	for id, k := range s.keys {
		if updateRates {
			if sample := float64(k.done) / elapsed.Seconds(); k.rate == 0 {
				k.rate = sample
			} else {
				k.rate = (1-rateWeight)*k.rate + rateWeight*sample
			}
			k.done = 0
		}
		stalled := s.stalled(k, now)
		if stalled {
			s.stalledInFlight += len(k.starts)
			if k.q.len() > stalledQueue {
				sheds = append(sheds, shed{s.evict(k, stalledQueue), s.verdict(k, now)})
			}
		}
		waiting := k.q.all()
		for i := range waiting {
			if now.Sub(waiting[i].alive) >= s.o.KeepAliveEvery {
				waiting[i].alive = now
				keepAlive = append(keepAlive, waiting[i].t.KeepAlive)
			}
		}
		switch {
		case k.q.len() > 0:
			s.offer(k, now)
		case len(k.starts) == 0 && !k.inReady && !k.inUnproven && now.Sub(k.lastActive) >= forgetAfter && !now.Before(k.pausedUntil):
			delete(s.keys, id)
		}
	}
	s.pump(now)
	s.mu.Unlock()
	for _, f := range keepAlive {
		if f != nil {
			f()
		}
	}
	for _, sh := range sheds {
		s.deferTasks(sh.tasks, sh.v)
	}
}

func (s *Scheduler) deferTasks(ts []Task, v Verdict) {
	for _, t := range ts {
		if s.o.OnDefer != nil {
			s.o.OnDefer(v)
		}
		t.Defer(v)
	}
}

// Stats is a snapshot for metrics: totals and the spread over keys, never
// one value per key (bounded cardinality).
type Stats struct {
	Queued, Running, Keys, Stalled, Paused int
	// QueueDepths and Limits hold one value per key with work waiting or
	// in flight, for quantiles.
	QueueDepths, Limits []int
}

// Stats returns a snapshot.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	st := Stats{Queued: s.queued, Running: s.running, Keys: len(s.keys)}
	share := s.share()
	for _, k := range s.keys {
		depth := k.q.len()
		if depth == 0 && len(k.starts) == 0 {
			continue
		}
		st.QueueDepths = append(st.QueueDepths, depth)
		st.Limits = append(st.Limits, k.lim.current(share))
		if s.stalled(k, now) {
			st.Stalled++
		}
		if now.Before(k.pausedUntil) {
			st.Paused++
		}
	}
	return st
}

// expiring counts events that each end at a time. Expired ends are taken
// from the front only: stalled keys' ends are a constant delay after now,
// so in order; a queue-full key's are nearly so (a delay that grows with
// what is ahead), and one out of order only makes the count a little high
// for a moment, never low.
type expiring struct{ ends fifo[time.Time] }

func (e *expiring) add(end time.Time) { e.ends.push(end) }

func (e *expiring) count(now time.Time) int {
	for e.ends.len() > 0 && !e.ends.front().After(now) {
		e.ends.pop()
	}
	return e.ends.len()
}
