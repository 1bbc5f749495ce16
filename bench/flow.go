package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/blazelock/webhooks/internal/natsinfra"
)

// The flow-control scenarios (-scenarios flow, or any of them by name).
// Each gets a fresh stack, as the others do.
//
//   - burstN (N = 1, 10, 20, 1000 integrations on one healthy receiver):
//     -burst-events events published round-robin over the N integrations
//     as fast as the asynchronous publisher goes, then the bench waits
//     until every one has arrived (-flow-wait). Drain time is first
//     publish → last arrival; drain rate is arrivals over it. Duplicates
//     are 2xx arrivals of an event already arrived (the tracker's count).
//   - slow: integration 0 on a receiver that holds every response for
//     -slow-delay, kept at -slow-backlog events published but not yet
//     delivered (it can never clear them); integration 1 on a fast
//     receiver at -slow-fast-rate events/s. Measured over -warmup and
//     -duration like the others; then the slow receiver is healed and the
//     bench waits for every event.
//   - recovery: one integration on a receiver started with -hang,
//     -recovery-events events published at once. After the last one is
//     stored the bench waits -recovery-settle (10 s: the dispatcher has
//     taken them by then, each of its attempts hanging until the attempt
//     timeout; the consumers' state at that moment is recorded), then heals
//     the receiver and measures from the heal.
//   - cap2: two dispatchers with DISPATCHER_ENDPOINT_MAX_CONCURRENCY=-cap,
//     one integration on a receiver that holds every response for
//     -cap-delay, kept at -cap-backlog events outstanding; the receiver's
//     concurrency high-water mark must stay at or under the cap.

// burstSizes are the burst scenarios' integration counts, in run order.
var burstSizes = []int{1, 10, 20, 1000}

// flowScenarios are the names -scenarios flow runs, in this order.
var flowScenarios = []string{"burst1", "burst10", "burst20", "burst1000", "slow", "recovery", "cap2"}

// flowSettings are the flow-control scenarios' knobs.
type flowSettings struct {
	wait            time.Duration // how long to wait for every event before counting the rest as lost
	burstEvents     int64
	slowDelay       time.Duration
	slowBacklog     int64
	slowFastRate    float64
	recoveryEvents  int64
	recoverySettle  time.Duration
	recoveryTimeout string // DISPATCHER_ATTEMPT_TIMEOUT
	cap             int
	capDelay        time.Duration
	capBacklog      int64
}

// shortRetries is the retry schedule of the scenarios with a failing
// endpoint (isolation, recovery): short, so that once the endpoint is
// healed every event still arrives within the wait and loss can be counted.
const shortRetries = "5s,5s,5s,5s,5s,5s,5s,5s,5s"

// runBurst publishes -burst-events events over n integrations at once and
// measures how the backlog drains.
func (b *bench) runBurst(ctx context.Context, sc scenario, n int) (*Result, error) {
	res := b.newResult(sc, n)
	st, receivers, err := b.startStack(ctx, sc, res, []receiverSpec{{name: "receiver"}})
	if err != nil {
		return nil, err
	}
	defer st.close()
	ints, err := st.configure(ctx, n, func(int) *proc { return receivers[0] })
	if err != nil {
		return nil, err
	}
	tf, err := startTraffic(ctx, ints, receivers, roundRobin(n))
	if err != nil {
		return nil, err
	}
	defer tf.close()
	tr := tf.tr
	events := uint64(b.flow.burstEvents)

	before := st.sampleAll()
	busy0, total0 := machineCPUBusy()
	start := time.Now()
	tr.publisherLoop(tf.loadCtx, st.js, tf.bods, func(i uint64) bool { return i < events })
	stored := time.Now()
	// The bodies are published: stop rebuilding them (1000 integrations'
	// worth every 250 ms would be load of the bench's own during the drain).
	tf.stopLoad()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	end, err := b.waitDrained(ctx, st, tf, tr, res, "every event")
	if err != nil {
		return nil, err
	}

	t0 := tr.published.get(0)
	if t0 == 0 {
		t0 = start.UnixNano()
	}
	bs := &BurstStats{Events: tr.sent.Load(), StoredSeconds: secondsSince(t0, stored.UnixNano())}
	if sent := tr.sent.Load(); sent > 0 {
		bs.PublishSeconds = secondsSince(t0, tr.published.get(uint64(sent-1)))
	}
	bs.DrainSeries, _ = arrivalSeries(tr, everyEvent, t0)
	bs.TimedOut = end.timedOut
	res.Burst = bs
	b.fillCounts(res, tr, time.Unix(0, t0), time.Unix(0, t0), seriesEnd(t0, bs.DrainSeries), bs.Rate)
	if bs.Seconds > 0 {
		bs.P99OverDrain = round3(res.Latency.P99 / 1000 / bs.Seconds)
	}
	end.record(res, st, before, busy0, total0, start, res.All.Delivered, "the last publish", b.flow.wait)
	return res, nil
}

// drainEnd is the end of a flow scenario: every event arrived (or the
// wait ran out), collecting stopped, the processes and the machine sampled.
type drainEnd struct {
	timedOut    bool
	at          time.Time
	after       map[string]procSample
	busy, total time.Duration
}

// waitDrained waits until every event has arrived, up to b.flow.wait.
func (b *bench) waitDrained(ctx context.Context, st *stack, tf *traffic, tr *tracker, res *Result, what string) (drainEnd, error) {
	drained := tr.drainCheck()
	timedOut := waitFor(ctx, b.flow.wait, what, func() bool { return drained("all", everyEvent) }) != nil
	if ctx.Err() != nil {
		return drainEnd{}, ctx.Err()
	}
	tf.finishCollect()
	e := drainEnd{timedOut: timedOut, at: time.Now(), after: st.sampleAll()}
	e.busy, e.total = machineCPUBusy()
	res.LoadAvgAfter = loadAvg()
	return e, nil
}

// record sets the CPU and machine figures from `from` to the end, and
// notes a drain that ran out of time.
func (e drainEnd) record(res *Result, st *stack, before map[string]procSample, busy0, total0 time.Duration, from time.Time, delivered int64, since string, wait time.Duration) {
	res.MachineBusyPercent = busyPercent(busy0, total0, e.busy, e.total)
	res.Processes = processStats(st, before, e.after, e.after, e.at.Sub(from).Seconds(), delivered)
	if e.timedOut {
		res.Notes = append(res.Notes, fmt.Sprintf("not every event arrived within %s of %s; the rest count as lost", wait, since))
	}
}

// fillCounts sets the counts of every event (All, and Healthy as the
// same) for a drain from `from` to just after its last arrival (to): the
// throughput is the drain's rate, and the latency is that of every event
// published since published (publish → arrival).
func (b *bench) fillCounts(res *Result, tr *tracker, published, from, to time.Time, rate float64) {
	res.PublishFailed = tr.failed.Load()
	res.UnknownArrivals = tr.unknown.Load()
	res.All = subsetStats(tr, everyEvent, from, to)
	if !published.Equal(from) {
		res.All.Latency = subsetStats(tr, everyEvent, published, to).Latency
	}
	res.All.Throughput = rate
	res.Healthy = res.All
	res.Throughput = rate
	res.Latency = res.All.Latency
	res.WindowSeconds = round3(to.Sub(from).Seconds())
}

// seriesEnd is the end of a drain's window: just after its last arrival,
// or now when nothing arrived.
func seriesEnd(from int64, s DrainSeries) time.Time {
	if s.Delivered == 0 {
		return time.Now()
	}
	return time.Unix(0, from+int64(s.Seconds*1e9)+int64(time.Millisecond))
}

func secondsSince(from, to int64) float64 { return round3(float64(to-from) / 1e9) }

// arrivalSeries counts the first arrivals of the events the filter
// selects in every wall-clock second from `from` (unix ns) up to the last
// such arrival. It returns the arrivals before `from` apart.
func arrivalSeries(tr *tracker, filter func(uint64) bool, from int64) (DrainSeries, int64) {
	var ds DrainSeries
	var before, first, last int64
	n := uint64(tr.sent.Load())
	for i := uint64(0); i < n; i++ {
		if !filter(i) {
			continue
		}
		arr := tr.arrived.get(i)
		if arr == 0 {
			continue
		}
		if arr < from {
			before++
			continue
		}
		bin := int((arr - from) / int64(time.Second))
		for len(ds.PerSecond) <= bin {
			ds.PerSecond = append(ds.PerSecond, 0)
		}
		ds.PerSecond[bin]++
		ds.Delivered++
		if first == 0 || arr < first {
			first = arr
		}
		last = max(last, arr)
	}
	if ds.Delivered == 0 {
		return ds, before
	}
	ds.FirstSeconds = secondsSince(from, first)
	ds.Seconds = secondsSince(from, last)
	if ds.Seconds > 0 {
		ds.Rate = round3(float64(ds.Delivered) / (float64(last-from) / 1e9))
	}
	for _, c := range ds.PerSecond {
		if c == 0 {
			ds.ZeroSeconds++
		}
	}
	return ds, before
}

// delayedSpec is a scenario with one integration on a receiver that holds
// every response for delay: slow (plus a fast integration at fastRate) and
// cap2.
type delayedSpec struct {
	sc       scenario
	receiver string // the delayed receiver's process name
	delay    time.Duration
	backlog  int64   // events to the delayed integration kept published but not delivered
	fastRate float64 // events/s to a second integration on a fast receiver; 0: none
	cap      int     // cap2: the configured DISPATCHER_ENDPOINT_MAX_CONCURRENCY
}

// delayedSchedule decides, one event at a time, which integration the
// next event goes to and when: integration 1 (fast) gets fastRate events/s
// from start; integration 0 (delayed) is topped up to backlog events
// published but not yet arrived whenever it falls below. It is called by
// the publisher goroutine only; assigned is read by others for indexes
// already counted as sent.
type delayedSchedule struct {
	tr           *tracker
	assigned     timeLog // integration + 1 per event index
	backlog      int64
	fastRate     float64
	start, until time.Time
	delayedSent  int64
	fastSent     int64
}

func (s *delayedSchedule) integrationOf(i uint64) int { return int(s.assigned.get(i)) - 1 }

func (s *delayedSchedule) pace(ctx context.Context) func(uint64) bool {
	var interval float64
	if s.fastRate > 0 {
		interval = float64(time.Second) / s.fastRate
	}
	return func(i uint64) bool {
		for {
			now := time.Now()
			if !now.Before(s.until) {
				return false
			}
			wait := 2 * time.Millisecond
			if s.fastRate > 0 {
				due := s.start.Add(time.Duration(float64(s.fastSent) * interval))
				if !due.After(now) {
					s.assigned.set(i, 2)
					s.fastSent++
					return true
				}
				wait = min(wait, due.Sub(now))
			}
			if s.delayedSent-s.tr.perIntegration[0].Load() < s.backlog {
				s.assigned.set(i, 1)
				s.delayedSent++
				return true
			}
			select {
			case <-ctx.Done():
				return false
			case <-time.After(wait):
			}
		}
	}
}

// runDelayed runs slow or cap2: warm-up and window as the other scenarios,
// the delayed receiver's concurrency high-water mark read at the window's
// edges, then the delayed receiver healed and every event waited for.
func (b *bench) runDelayed(ctx context.Context, d delayedSpec) (*Result, error) {
	specs := []receiverSpec{{name: d.receiver, args: []string{"-delay", d.delay.String()}}}
	if d.fastRate > 0 {
		specs = append(specs, receiverSpec{name: "receiver"})
	}
	res := b.newResult(d.sc, len(specs))
	st, receivers, err := b.startStack(ctx, d.sc, res, specs)
	if err != nil {
		return nil, err
	}
	defer st.close()
	slowRecv := receivers[0]
	ints, err := st.configure(ctx, len(specs), func(i int) *proc { return receivers[i] })
	if err != nil {
		return nil, err
	}
	sched := &delayedSchedule{backlog: d.backlog, fastRate: d.fastRate}
	tf, err := startTraffic(ctx, ints, receivers, sched.integrationOf)
	if err != nil {
		return nil, err
	}
	defer tf.close()
	tr := tf.tr
	sched.tr = tr

	start := time.Now()
	ws, we := start.Add(b.warmup), start.Add(b.warmup+b.measure)
	sched.start, sched.until = start, we
	published := make(chan struct{})
	go func() { tr.publisherLoop(tf.loadCtx, st.js, tf.bods, sched.pace(tf.loadCtx)); close(published) }()

	sleepUntil(ctx, ws)
	warm, errW := receiverConcurrency(ctx, slowRecv, true)
	before := st.sampleAll()
	busy0, total0 := machineCPUBusy()
	sleepUntil(ctx, we)
	after := st.sampleAll()
	busy1, total1 := machineCPUBusy()
	win, errE := receiverConcurrency(ctx, slowRecv, false)
	<-published
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	tf.stopLoad()
	for _, err := range []error{errW, errE} {
		if err != nil {
			res.Notes = append(res.Notes, "receiver concurrency: "+err.Error())
		}
	}

	// The backlog left would take minutes at the delay: heal the endpoint
	// and wait for every event, so loss can be counted.
	heal(ctx, slowRecv)
	healAt := time.Now()
	drained := tr.drainCheck()
	if err := waitFor(ctx, b.flow.wait, "every event", func() bool { return drained("all", everyEvent) }); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		res.Notes = append(res.Notes, fmt.Sprintf("after the window the %s receiver was healed; not every event arrived within %s, the rest count as lost", d.delay, b.flow.wait))
	} else {
		res.Notes = append(res.Notes, fmt.Sprintf("after the window the %s receiver was healed; the rest of its backlog arrived within %.0fs", d.delay, time.Since(healAt).Seconds()))
	}
	res.DrainSeconds = time.Since(healAt).Seconds()
	tf.finishCollect()
	end := st.sampleAll()
	res.LoadAvgAfter = loadAvg()

	window := we.Sub(ws)
	res.WarmupSeconds, res.WindowSeconds = b.warmup.Seconds(), window.Seconds()
	res.PublishFailed = tr.failed.Load()
	res.UnknownArrivals = tr.unknown.Load()
	isDelayed := func(i uint64) bool { return sched.integrationOf(i) == 0 }
	res.All = subsetStats(tr, everyEvent, ws, we)
	ds := &DelayedStats{Delay: d.delay.String(), Backlog: d.backlog, Cap: d.cap, FastOfferedRate: d.fastRate,
		Delayed:              subsetStats(tr, isDelayed, ws, we),
		MaxConcurrency:       max(warm.Max, win.Max),
		MaxConcurrencyWindow: win.Max,
	}
	if errW == nil && errE == nil {
		ds.RequestsPerSecond = round3(float64(win.Requests-warm.Requests) / window.Seconds())
	}
	if d.cap > 0 && d.delay > 0 {
		ds.IdealPerSecond = round3(float64(d.cap) / d.delay.Seconds())
	}
	res.Delayed = ds
	if d.fastRate > 0 {
		res.Healthy = subsetStats(tr, func(i uint64) bool { return !isDelayed(i) }, ws, we)
	} else {
		res.Healthy = ds.Delayed
	}
	res.Throughput = res.Healthy.Throughput
	res.Latency = res.Healthy.Latency
	res.MachineBusyPercent = busyPercent(busy0, total0, busy1, total1)
	res.Processes = processStats(st, before, after, end, window.Seconds(), res.All.InWindow)
	return res, nil
}

// runRecovery lets a hanging endpoint collect a backlog, heals it and
// measures how soon and how fast the backlog arrives.
func (b *bench) runRecovery(ctx context.Context, sc scenario) (*Result, error) {
	res := b.newResult(sc, 1)
	st, receivers, err := b.startStack(ctx, sc, res, []receiverSpec{{name: "receiver-hanging", args: []string{"-hang"}}})
	if err != nil {
		return nil, err
	}
	defer st.close()
	hangingRecv := receivers[0]
	ints, err := st.configure(ctx, 1, func(int) *proc { return hangingRecv })
	if err != nil {
		return nil, err
	}
	ints[0].hanging = true
	tf, err := startTraffic(ctx, ints, receivers, roundRobin(1))
	if err != nil {
		return nil, err
	}
	defer tf.close()
	tr := tf.tr
	events := uint64(b.flow.recoveryEvents)

	start := time.Now()
	tr.publisherLoop(tf.loadCtx, st.js, tf.bods, func(i uint64) bool { return i < events })
	stored := time.Now()
	tf.stopLoad()
	if !sleepUntil(ctx, stored.Add(b.flow.recoverySettle)) {
		return nil, ctx.Err()
	}
	rs := &RecoveryStats{Events: tr.sent.Load(), StoredSeconds: round3(stored.Sub(start).Seconds()), SettleSeconds: b.flow.recoverySettle.Seconds(),
		ConsumersAtHeal: consumerStates(ctx, st.js)}
	if c, err := receiverConcurrency(ctx, hangingRecv, false); err == nil {
		rs.RequestsBeforeHeal, rs.HeldAtHeal = c.Requests, c.Now
	} else {
		res.Notes = append(res.Notes, "receiver concurrency: "+err.Error())
	}
	before := st.sampleAll()
	busy0, total0 := machineCPUBusy()
	healAt := time.Now()
	heal(ctx, hangingRecv)
	end, err := b.waitDrained(ctx, st, tf, tr, res, "every event after the heal")
	if err != nil {
		return nil, err
	}

	rs.DrainSeries, rs.ArrivedBeforeHeal = arrivalSeries(tr, everyEvent, healAt.UnixNano())
	rs.TimedOut = end.timedOut
	res.Recovery = rs
	b.fillCounts(res, tr, start, healAt, seriesEnd(healAt.UnixNano(), rs.DrainSeries), rs.Rate)
	end.record(res, st, before, busy0, total0, healAt, rs.Delivered, "the heal", b.flow.wait)
	return res, nil
}

// receiverConcurrency reads a receiver child's in-flight POST counter and
// its high-water mark (GET /bench/concurrency); reset restarts the mark.
func receiverConcurrency(ctx context.Context, p *proc, reset bool) (concurrency, error) {
	var c concurrency
	url := "http://" + p.addr + "/bench/concurrency"
	if reset {
		url += "?reset=1"
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return c, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c, fmt.Errorf("GET /bench/concurrency: HTTP %d", resp.StatusCode)
	}
	return c, json.NewDecoder(resp.Body).Decode(&c)
}

// consumerStates lists the consumers of the events and retries streams:
// how many messages each has yet to hand out and how many it has handed
// out without an ack.
func consumerStates(ctx context.Context, js jetstream.JetStream) []ConsumerState {
	var out []ConsumerState
	for _, name := range []string{natsinfra.EventsStream, natsinfra.RetriesStream} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			continue
		}
		msgs := s.CachedInfo().State.Msgs
		l := s.ListConsumers(ctx)
		for ci := range l.Info() {
			out = append(out, ConsumerState{Stream: name, StreamMessages: msgs, Consumer: ci.Name,
				NumPending: ci.NumPending, NumAckPending: ci.NumAckPending, NumRedelivered: ci.NumRedelivered})
		}
	}
	return out
}
