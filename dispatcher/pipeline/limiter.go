package pipeline

import (
	"context"
	"sync"
	"time"
)

// limiter decides how many attempts an integration may have in flight in
// this process, so that slow endpoints cannot take every worker.
//
//   - A healthy integration may have up to max attempts in flight. An
//     attempt that finds it at the cap waits up to the caller's wait for a
//     slot: a fast endpoint frees one within milliseconds.
//   - An integration is slow when one of its attempts took slowAttempt or
//     longer (timeouts included), or when an attempt had to wait and found
//     the oldest one in flight already that old. It stays slow for slowFor
//     after the last such sign. A slow integration may have slowMax attempts
//     in flight, all slow integrations together slowBudget, and an attempt
//     that finds no room is refused at once, without waiting.
//   - Under pressure (pressure attempts or more in flight in the process),
//     an integration whose oldest attempt in flight has run overdueAttempt
//     is held to the same limits for its new attempts, without being marked
//     slow. This catches endpoints that have just started hanging within a
//     fraction of a second instead of slowAttempt: in that time a burst of
//     new attempts to them could otherwise take every worker, and the
//     workers they hold cannot be taken back until the attempts time out.
//     Without pressure, an endpoint that answers in a second is not limited.
//
// A refused attempt is deferred by the caller. So however many endpoints
// hang, they hold a bounded share of the workers and the rest of the
// process keeps delivering.
type limiter struct {
	max, slowMax, slowBudget, pressure   int
	slowAttempt, slowFor, overdueAttempt time.Duration
	now                                  func() time.Time

	mu           sync.Mutex
	slots        map[string]*slot
	slowUntil    map[string]time.Time
	slowInFlight int
	inFlight     int
}

type slot struct {
	sem chan struct{}
	// starts holds the start time of each attempt in flight, to tell how
	// long the oldest has been running.
	starts []time.Time
	users  int // holders and waiters; the slot is dropped at zero
}

// lease is one attempt's permission; give it back with release.
type lease struct {
	start time.Time
	slow  bool // counted in the slow budget
	// knownSlow, on a refusal, says the integration is marked slow: its
	// attempts take seconds, so the caller puts this one off for longer.
	knownSlow bool
}

// newLimiter returns a limiter; pressure 0 turns the overdue rule off.
func newLimiter(perIntegration, slowBudget, pressure int) *limiter {
	return &limiter{
		max: perIntegration, slowMax: min(2, perIntegration), slowBudget: max(1, slowBudget), pressure: pressure,
		slowAttempt: 2 * time.Second, slowFor: time.Minute, overdueAttempt: 250 * time.Millisecond, now: time.Now,
		slots: map[string]*slot{}, slowUntil: map[string]time.Time{},
	}
}

func (l *limiter) acquire(ctx context.Context, id string, wait time.Duration) (lease, bool) {
	l.mu.Lock()
	s := l.slot(id)
	now := l.now()
	if knownSlow := l.isSlow(id, now); knownSlow || l.overdueUnderPressure(s, now) {
		ok := len(s.sem) < l.slowMax && l.slowInFlight < l.slowBudget
		if ok {
			select {
			case s.sem <- struct{}{}:
			default: // a waiter from before the integration turned slow took it
				ok = false
			}
		}
		if ok {
			l.slowInFlight++
			l.inFlight++
			s.starts = append(s.starts, now)
		} else {
			l.leaveLocked(id, s)
		}
		l.mu.Unlock()
		return lease{start: now, slow: true, knownSlow: knownSlow}, ok
	}
	l.mu.Unlock()

	select {
	case s.sem <- struct{}{}:
		return l.started(s), true
	default:
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case s.sem <- struct{}{}:
		return l.started(s), true
	case <-timer.C:
	case <-ctx.Done():
	}
	l.mu.Lock()
	if len(s.starts) > 0 && l.now().Sub(oldest(s.starts)) >= l.slowAttempt {
		l.slowUntil[id] = l.now().Add(l.slowFor)
	}
	l.leaveLocked(id, s)
	l.mu.Unlock()
	return lease{}, false
}

// release gives a lease back. tookLong reports that the attempt took
// slowAttempt or longer, or timed out: the integration is slow for a while.
func (l *limiter) release(id string, le lease, tookLong bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.slots[id]
	<-s.sem
	for i, t := range s.starts {
		if t.Equal(le.start) {
			s.starts = append(s.starts[:i], s.starts[i+1:]...)
			break
		}
	}
	if le.slow {
		l.slowInFlight--
	}
	l.inFlight--
	if tookLong || l.now().Sub(le.start) >= l.slowAttempt {
		l.slowUntil[id] = l.now().Add(l.slowFor)
	}
	l.leaveLocked(id, s)
}

func (l *limiter) started(s *slot) lease {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	s.starts = append(s.starts, now)
	l.inFlight++
	return lease{start: now}
}

// overdueUnderPressure reports whether the process is under pressure and
// the integration's oldest attempt in flight has run overdueAttempt. mu is
// held.
func (l *limiter) overdueUnderPressure(s *slot, now time.Time) bool {
	return l.pressure > 0 && l.inFlight >= l.pressure &&
		len(s.starts) > 0 && now.Sub(oldest(s.starts)) >= l.overdueAttempt
}

// slot returns the integration's slot, counting the caller as a user. mu is held.
func (l *limiter) slot(id string) *slot {
	s, ok := l.slots[id]
	if !ok {
		s = &slot{sem: make(chan struct{}, l.max)}
		l.slots[id] = s
	}
	s.users++
	return s
}

// isSlow reports whether the integration is marked slow, forgetting
// expired marks. mu is held.
func (l *limiter) isSlow(id string, now time.Time) bool {
	until, ok := l.slowUntil[id]
	if ok && !now.Before(until) {
		delete(l.slowUntil, id)
		return false
	}
	return ok
}

// leaveLocked drops the caller from the slot's users. mu is held.
func (l *limiter) leaveLocked(id string, s *slot) {
	if s.users--; s.users == 0 {
		delete(l.slots, id)
	}
}

func oldest(ts []time.Time) time.Time {
	o := ts[0]
	for _, t := range ts[1:] {
		if t.Before(o) {
			o = t
		}
	}
	return o
}
